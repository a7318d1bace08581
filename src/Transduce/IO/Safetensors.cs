using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.IO;
using static TorchSharp.torch;

namespace Transduce.IO;

/// <summary>
/// Reads and writes the safetensors format (an 8-byte little-endian header length, a JSON header
/// naming each tensor's dtype, shape and byte range, then the raw little-endian data), the format
/// Hugging Face and Marian checkpoints are published in.
/// </summary>
internal static class Safetensors
{
    private static readonly Dictionary<ScalarType, string> DTypeNames = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float64] = "F64", [ScalarType.Float16] = "F16",
        [ScalarType.BFloat16] = "BF16", [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32",
        [ScalarType.Int16] = "I16", [ScalarType.Int8] = "I8", [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };

    private const long MaxHeaderBytes = 100L * 1024 * 1024;

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically (temporary file, then rename).
    /// </summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) meta[k] = v;
            header["__metadata__"] = meta;
        }
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        long offset = 0;
        foreach (var name in names)
        {
            var t = tensors[name];
            if (!DTypeNames.TryGetValue(t.dtype, out var dtype))
                throw new NotSupportedException($"safetensors: tensor '{name}' has unsupported dtype {t.dtype}");
            long bytes = t.NumberOfElements * t.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (headerBytes.Length + 7) / 8 * 8;   // keep the data 8-byte aligned, padded with spaces as the spec allows
        var headerPadded = new byte[padded];
        Array.Fill(headerPadded, (byte)' ');
        headerBytes.CopyTo(headerPadded, 0);

        AtomicFile.Write(path, stream =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
            stream.Write(len);
            stream.Write(headerPadded);
            // Each tensor goes straight from its (contiguous, CPU) storage to the file: no managed copy of the model, and
            // the scope disposes every intermediate view, which would otherwise wait for the finalizer (one per save).
            foreach (var name in names)
            {
                using var scope = NewDisposeScope();
                stream.Write(tensors[name].detach().cpu().contiguous().bytes);
            }
        });
    }

    /// <summary>A tensor's entry in the header: element type, shape and byte range within the data section.</summary>
    internal sealed record Entry(ScalarType DType, long[] Shape, long Start, long End);

    /// <summary>
    /// Reads and checks the header of a safetensors file without reading tensor data: the header length must fit the
    /// file, every dtype must be known, every dimension non-negative, and each tensor's byte count (computed with
    /// checked arithmetic) must equal its byte range, which must lie inside the file. Problems throw
    /// <see cref="InvalidDataException"/> naming the file.
    /// </summary>
    internal static (Dictionary<string, Entry> Tensors, Dictionary<string, string> Metadata, long DataStart) ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: weights file not found", path);
        using var stream = File.OpenRead(path);
        long fileLength = stream.Length;
        Span<byte> lenBytes = stackalloc byte[8];
        if (stream.ReadAtLeast(lenBytes, 8, throwOnEndOfStream: false) != 8)
            throw new InvalidDataException($"{path}: not a safetensors file (shorter than its 8-byte header length)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLength == 0 || headerLength > (ulong)Math.Min(MaxHeaderBytes, fileLength - 8))
            throw new InvalidDataException($"{path}: not a safetensors file (header length {headerLength} does not fit a {fileLength}-byte file)");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        JsonObject header;
        try
        {
            header = JsonNode.Parse(headerBytes)?.AsObject() ?? throw new InvalidDataException($"{path}: empty safetensors header");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: safetensors header is not valid JSON ({ErrorText.OneLine(e.Message)})", e);
        }

        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        var meta = new Dictionary<string, string>();
        var tensors = new Dictionary<string, Entry>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, node) in header)
            {
                if (name == "__metadata__")
                {
                    if (node is JsonObject m)
                        foreach (var (k, v) in m) meta[k] = v?.GetValue<string>() ?? "";
                    continue;
                }
                var entry = node as JsonObject ?? throw new InvalidDataException($"{path}: tensor '{name}' has no descriptor");
                string dtypeName = entry["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{path}: tensor '{name}' has no dtype");
                var dtype = DTypeNames.FirstOrDefault(kv => kv.Value == dtypeName);
                if (dtype.Value is null) throw new InvalidDataException($"{path}: tensor '{name}' has unsupported dtype '{dtypeName}'");
                long[] shape = Integers(entry["shape"], $"{path}: tensor '{name}' shape")
                    ?? throw new InvalidDataException($"{path}: tensor '{name}' has no shape");
                if (shape.Any(d => d < 0)) throw new InvalidDataException($"{path}: tensor '{name}' has a negative dimension in [{string.Join(", ", shape)}]");
                var offsets = Integers(entry["data_offsets"], $"{path}: tensor '{name}' data_offsets");
                if (offsets is not { Length: 2 } || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
                    throw new InvalidDataException($"{path}: tensor '{name}' has data offsets outside the file (truncated?)");
                long expected;
                try
                {
                    expected = shape.Aggregate(ElementSize(dtype.Key), (n, d) => checked(n * d));
                }
                catch (OverflowException)
                {
                    throw new InvalidDataException($"{path}: tensor '{name}' has shape [{string.Join(", ", shape)}], too large to address");
                }
                if (offsets[1] - offsets[0] != expected)
                    throw new InvalidDataException($"{path}: tensor '{name}' holds {offsets[1] - offsets[0]} bytes, its shape needs {expected}");
                tensors[name] = new Entry(dtype.Key, shape, offsets[0], offsets[1]);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new InvalidDataException($"{path}: malformed safetensors header ({e.Message})", e);
        }
        // The format's own rule (the safetensors library enforces it): the tensors' byte ranges follow one another from the
        // start of the data to the end of the file, without gaps or overlaps. Overlaps matter here: loaded weights are views
        // of the file's bytes (SafetensorsReader), so two tensors over the same bytes would become one weight.
        long expectedStart = 0;
        string? previousName = null;
        foreach (var (name, entry) in tensors.OrderBy(kv => kv.Value.Start).ThenBy(kv => kv.Value.End))
        {
            if (entry.Start != expectedStart)
                throw new InvalidDataException(entry.Start < expectedStart
                    ? $"{path}: tensors '{previousName}' and '{name}' overlap in the file (data offsets of '{name}' start at {entry.Start}, before {expectedStart})"
                    : $"{path}: {entry.Start - expectedStart} bytes before tensor '{name}' belong to no tensor (data offsets must follow one another)");
            (expectedStart, previousName) = (entry.End, name);
        }
        if (expectedStart != dataLength)
            throw new InvalidDataException($"{path}: the tensors cover {expectedStart} of the file's {dataLength} data bytes (data offsets must reach the end of the file)");
        return (tensors, meta, dataStart);
    }

    /// <summary>
    /// The integers of a header array (null when the field is absent); an element that is null, a string, a fraction or
    /// anything else is an <see cref="InvalidDataException"/> starting with <paramref name="what"/>.
    /// </summary>
    private static long[]? Integers(JsonNode? node, string what)
    {
        if (node is null) return null;
        if (node is not JsonArray array) throw new InvalidDataException($"{what} must be an array of integers");
        var values = new long[array.Count];
        for (int i = 0; i < values.Length; i++)
            values[i] = array[i] is JsonValue v && v.TryGetValue(out long n) ? n
                : throw new InvalidDataException($"{what}[{i}] must be an integer, not {array[i]?.ToJsonString() ?? "null"}");
        return values;
    }

    internal static long ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>
    /// Reads every tensor of a safetensors file. Errors (truncated file, bad header, out-of-range
    /// offsets, unknown dtype, sizes that do not add up) throw <see cref="InvalidDataException"/> naming the file,
    /// before any tensor memory is taken.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        var (entries, meta, dataStart) = ReadHeader(path);
        using var stream = File.OpenRead(path);
        var result = new Dictionary<string, Tensor>();
        try
        {
            foreach (var (name, entry) in entries)
            {
                long bytes = entry.End - entry.Start;
                if (bytes > int.MaxValue)
                    throw new InvalidDataException($"{path}: tensor '{name}' holds {bytes} bytes; tensors over 2 GiB are not supported");
                var t = empty(entry.Shape, entry.DType);
                result[name] = t;
                if (bytes == 0) continue;
                var data = new byte[bytes];
                stream.Position = dataStart + entry.Start;
                stream.ReadExactly(data);
                t.bytes = data;
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        metadata = meta;
        return result;
    }
}

/// <summary>
/// The tensors of one safetensors file, each read on demand: a view of the file mapped copy-on-write
/// (<see cref="MappedFile"/>) where its bytes are aligned for its type, else a copy read from the file. The header is checked
/// by <see cref="Safetensors.ReadHeader"/> when the file is opened, before any tensor memory is taken.
/// </summary>
internal sealed class SafetensorsReader : IDisposable
{
    private readonly long dataStart, fileLength;
    private readonly Dictionary<ScalarType, Tensor> maps = [];

    private SafetensorsReader(string path, Dictionary<string, Safetensors.Entry> entries, long dataStart, long fileLength)
    {
        Path = path;
        Entries = entries;
        this.dataStart = dataStart;
        this.fileLength = fileLength;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Tensor name → dtype, shape and byte range.</summary>
    public IReadOnlyDictionary<string, Safetensors.Entry> Entries { get; }

    /// <summary>Opens <paramref name="path"/>; a missing or malformed file throws as <see cref="Safetensors.ReadHeader"/> does.</summary>
    public static SafetensorsReader Open(string path)
    {
        var (entries, _, dataStart) = Safetensors.ReadHeader(path);
        return new SafetensorsReader(path, entries, dataStart, new FileInfo(path).Length);
    }

    /// <summary>The tensor called <paramref name="name"/> (which must be in <see cref="Entries"/>), owned by the caller.</summary>
    public Tensor Read(string name)
    {
        var e = Entries[name];
        long bytes = e.End - e.Start;
        if (bytes == 0) return empty(e.Shape, e.DType);
        long size = Safetensors.ElementSize(e.DType), offset = dataStart + e.Start;
        if (MappedFile.Supported && offset % size == 0)
        {
            if (!maps.TryGetValue(e.DType, out var map))
                maps[e.DType] = map = MappedFile.Map(Path, e.DType, fileLength / size);
            using var flat = map.narrow(0, offset / size, bytes / size);
            return flat.view(e.Shape);
        }
        if (bytes > int.MaxValue)
            throw new InvalidDataException($"{Path}: tensor '{name}' holds {bytes} bytes at an unaligned offset; such tensors over 2 GiB are not supported");
        var data = new byte[bytes];
        using (var stream = File.OpenRead(Path))
        {
            stream.Position = offset;
            stream.ReadExactly(data);
        }
        var t = empty(e.Shape, e.DType);
        t.bytes = data;
        return t;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var map in maps.Values) map.Dispose(); // views handed out keep their mapping alive
        maps.Clear();
    }
}
