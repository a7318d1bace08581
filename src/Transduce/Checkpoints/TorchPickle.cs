using System.IO.Compression;
using static TorchSharp.torch;

namespace Transduce.Checkpoints;

/// <summary>
/// Reads a PyTorch state dict saved by <c>torch.save</c> in its zip format (Hugging Face's <c>pytorch_model.bin</c>)
/// without running any of the file's code: a small pickle machine that knows the opcodes <c>torch.save</c> writes and
/// builds only strings, numbers, tuples, lists, dicts and tensors, from an allow-list of four kinds of globals
/// (<c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor*</c>, <c>torch._utils._rebuild_parameter*</c> and
/// the typed storages <c>torch.FloatStorage</c>, …). Anything else is refused.
/// </summary>
/// <remarks>
/// Every size is checked before memory is taken: the archive's entries must fit in the file together, a storage's
/// element count × element size must equal the length of its data entry, which must be stored uncompressed as
/// <c>torch.save</c> writes it (so the storages never take more memory than the file's size), a tensor view must lie
/// inside its storage (checked arithmetic), and all storages together must stay under a cap. <c>data.pkl</c> is at most
/// 64 MiB, and what its program may build is bounded too (values, stack, memo and nesting; see <see cref="Machine"/>).
/// A storage shared by several tensors (tied embeddings) is read once, and those tensors come back as views of that one
/// buffer.
/// </remarks>
internal static partial class TorchPickle
{
    /// <summary>One storage of the archive: its key (the entry <c>data/KEY</c>), element type and length.</summary>
    internal sealed record Storage(string Key, ScalarType DType, long Elements);

    /// <summary>A tensor as <c>_rebuild_tensor_v2</c> describes it: a strided view of a storage.</summary>
    internal sealed record View(Storage Storage, long Offset, long[] Shape, long[] Stride);

    /// <summary>The largest total of storage bytes read from one file by default (16 GiB).</summary>
    internal const long DefaultMaxBytes = 16L << 30;

    /// <summary>The largest <c>data.pkl</c> read (64 MiB): a state dict's structure takes some 100 bytes per tensor.</summary>
    internal const long MaxProgramBytes = 64L << 20;

    /// <summary>True when the file starts like a zip archive (what <c>torch.save</c> writes since PyTorch 1.6).</summary>
    internal static bool LooksLikeZip(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using var stream = File.OpenRead(path);
        return stream.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && head.SequenceEqual("PK\u0003\u0004"u8);
    }

    /// <summary>Parses the state dict's structure (names, storages, views) and checks it against the archive, reading no tensor data.</summary>
    internal static Dictionary<string, View> ReadIndex(string path, long maxBytes = DefaultMaxBytes)
    {
        using var archive = OpenArchive(path);
        return Index(path, archive, maxBytes).Views;
    }

    /// <summary>Reads every tensor of the state dict (see the class remarks for what is checked first).</summary>
    internal static Dictionary<string, Tensor> Load(string path, long maxBytes = DefaultMaxBytes)
    {
        using var archive = OpenArchive(path);
        var (views, entries) = Index(path, archive, maxBytes);
        var storages = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, view) in views)
            {
                if (!storages.TryGetValue(view.Storage.Key, out var storage))
                {
                    storage = ReadStorage(path, entries[view.Storage.Key], view.Storage);
                    storages[view.Storage.Key] = storage;
                }
                result[name] = storage.as_strided(view.Shape, view.Stride, view.Offset);
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        finally
        {
            // The views keep the storage memory alive; the storage handles themselves are not needed any more.
            foreach (var s in storages.Values) s.Dispose();
        }
        return result;
    }

    private static ZipArchive OpenArchive(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: weights file not found", path);
        if (!LooksLikeZip(path))
            throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save (not a zip archive; files from PyTorch before 1.6 must be re-saved)");
        try
        {
            return ZipFile.OpenRead(path);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save (broken zip archive: {e.Message})", e);
        }
    }

    private static (Dictionary<string, View> Views, Dictionary<string, ZipArchiveEntry> Entries) Index(string path, ZipArchive archive, long maxBytes)
    {
        CheckEntriesFit(path, archive);
        var pkl = archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
            ?? throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save (no data.pkl in the archive)");
        string root = pkl.FullName[..^"data.pkl".Length];
        if (archive.GetEntry(root + "byteorder") is { } order)
        {
            if (order.Length > 16) throw new InvalidDataException($"{path}: {order.FullName} is {order.Length} bytes, not 'little' or 'big'");
            string text = System.Text.Encoding.UTF8.GetString(ReadEntry(path, order, order.FullName)).Trim();
            if (text != "little") throw new InvalidDataException($"{path}: tensors are stored '{text}'-endian; only little-endian files are supported");
        }
        if (pkl.Length > MaxProgramBytes)
            throw new InvalidDataException($"{path}: {pkl.FullName} is {pkl.Length} bytes, more than a state dict's structure needs ({MaxProgramBytes} at most)");
        byte[] program = ReadEntry(path, pkl, pkl.FullName);

        object top;
        try
        {
            top = new Machine(program).Run();
        }
        catch (PickleException e)
        {
            throw new InvalidDataException($"{path}: {pkl.FullName} is not a state dict saved with torch.save ({e.Message})", e);
        }
        if (top is not Dictionary<object, object?> dict)
            throw new InvalidDataException($"{path}: holds a {Machine.Describe(top)}, not a state dict (a dict of name → tensor)");

        var views = new Dictionary<string, View>(StringComparer.Ordinal);
        var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
        long total = 0;
        foreach (var (key, value) in dict)
        {
            if (key is not string name) throw new InvalidDataException($"{path}: a state dict key is a {Machine.Describe(key)}, not a name");
            if (value is not View view) throw new InvalidDataException($"{path}: entry '{name}' is a {Machine.Describe(value)}, not a tensor");
            if (!entries.ContainsKey(view.Storage.Key))
            {
                var entry = archive.GetEntry($"{root}data/{view.Storage.Key}")
                    ?? throw new InvalidDataException($"{path}: tensor '{name}' refers to storage '{view.Storage.Key}', which the archive lacks");
                long bytes = CheckedBytes(path, name, view.Storage);
                if (entry.Length != bytes)
                    throw new InvalidDataException($"{path}: storage '{view.Storage.Key}' of tensor '{name}' declares {bytes} bytes but its data holds {entry.Length}");
                if (entry.CompressedLength != entry.Length)
                    throw new InvalidDataException(
                        $"{path}: storage '{view.Storage.Key}' of tensor '{name}' is compressed in the archive ({entry.CompressedLength} bytes for {entry.Length}); torch.save stores tensor data uncompressed");
                total += bytes;
                if (total > maxBytes)
                    throw new InvalidDataException($"{path}: its storages hold more than {maxBytes} bytes, the limit for one weights file");
                entries[view.Storage.Key] = entry;
            }
            CheckView(path, name, view);
            views[name] = view;
        }
        return (views, entries);
    }

    /// <summary>
    /// The entries of a zip archive never share bytes, so together (each with its local header of at least 30 bytes and
    /// its name) they cannot take more than the file: this bounds what the central directory's lengths (untrusted) can make
    /// us allocate before a read would find the data missing. A stored storage's length is then at most the file's.
    /// </summary>
    private static void CheckEntriesFit(string path, ZipArchive archive)
    {
        long fileLength = new FileInfo(path).Length, total = 0;
        foreach (var entry in archive.Entries)
        {
            long header = 30 + System.Text.Encoding.UTF8.GetByteCount(entry.FullName);
            if (entry.Length < 0 || entry.CompressedLength < 0 || entry.CompressedLength > fileLength - total - header)
                throw new InvalidDataException(
                    $"{path}: zip entry '{entry.FullName}' claims {entry.CompressedLength} bytes, more than the file's {fileLength} bytes hold beside the other entries");
            total += header + entry.CompressedLength;
        }
    }

    /// <summary>Reads an entry whole, exactly the length the archive declares for it (checked by the caller).</summary>
    private static byte[] ReadEntry(string path, ZipArchiveEntry entry, string what)
    {
        var bytes = new byte[entry.Length];
        try
        {
            using var stream = entry.Open();
            stream.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            throw new InvalidDataException($"{path}: {what} is truncated or corrupt: it holds less than the {entry.Length} bytes the archive declares or cannot be decompressed ({e.Message})", e);
        }
    }

    private static long CheckedBytes(string path, string name, Storage storage)
    {
        try
        {
            return checked(storage.Elements * ElementSize(storage.DType));
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: storage of tensor '{name}' declares {storage.Elements} elements, too many to address");
        }
    }

    /// <summary>A view must lie inside its storage and hold no more elements than it (state dicts never broadcast).</summary>
    private static void CheckView(string path, string name, View view)
    {
        if (view.Shape.Length != view.Stride.Length)
            throw new InvalidDataException($"{path}: tensor '{name}' has {view.Shape.Length} sizes but {view.Stride.Length} strides");
        if (view.Offset < 0 || view.Shape.Any(d => d < 0) || view.Stride.Any(s => s < 0))
            throw new InvalidDataException($"{path}: tensor '{name}' has a negative size, stride or offset");
        try
        {
            long elements = 1, last = view.Offset;
            for (int i = 0; i < view.Shape.Length; i++)
            {
                elements = checked(elements * view.Shape[i]);
                if (view.Shape[i] > 0) last = checked(last + checked((view.Shape[i] - 1) * view.Stride[i]));
            }
            if (elements > 0 && (last >= view.Storage.Elements || elements > view.Storage.Elements))
                throw new InvalidDataException(
                    $"{path}: tensor '{name}' of shape [{string.Join(", ", view.Shape)}] reaches beyond its storage of {view.Storage.Elements} elements");
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: tensor '{name}' has shape [{string.Join(", ", view.Shape)}], too large to address");
        }
    }

    private static Tensor ReadStorage(string path, ZipArchiveEntry entry, Storage storage)
    {
        long bytes = storage.Elements * ElementSize(storage.DType); // equal to entry.Length, which fits in the file
        if (bytes > Array.MaxLength)
            throw new InvalidDataException($"{path}: storage '{storage.Key}' holds {bytes} bytes; storages over 2 GiB are not supported");
        // The data is read before the tensor is made, so a storage whose bytes are missing takes no tensor memory.
        var buffer = ReadEntry(path, entry, $"storage '{storage.Key}'");
        var t = empty([storage.Elements], storage.DType);
        try
        {
            if (bytes > 0) t.bytes = buffer;
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    private static long ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };
}
