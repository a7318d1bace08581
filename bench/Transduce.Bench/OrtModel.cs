using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Transduce.Bench;

/// <summary>
/// The two graphs bench/pytorch/export_onnx.py writes (encoder/encoder.onnx: source → every decoder layer's cross-attention keys and
/// values; decoder/decoder.onnx: one step with the self-attention cache in and out) in ONNX Runtime sessions on the CPU provider,
/// all graph optimisations on, <c>threads</c> intra-op threads (ours), sequential execution.
/// </summary>
internal sealed class OrtModel : IDisposable
{
    private readonly SessionOptions options, decoderOptions;

    /// <summary>
    /// Opens <paramref name="folder"/>'s graphs and reads the cache shapes from the decoder's inputs. With
    /// <paramref name="profilePrefix"/> the decoder session records ONNX Runtime's profile (<c>EnableProfiling</c>) into
    /// <paramref name="profilePrefix"/>_DATE.json, written by <see cref="InferenceSession.EndProfiling"/>.
    /// </summary>
    public OrtModel(string folder, int threads, string? profilePrefix = null)
    {
        foreach (string file in Graphs)
            if (!File.Exists(Path.Combine(folder, file)))
                throw new InvalidDataException($"{Path.Combine(folder, file)}: not found (bench/pytorch/export_onnx.py writes it)");
        options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        decoderOptions = options;
        if (profilePrefix is not null)
        {
            decoderOptions = new SessionOptions
            {
                GraphOptimizationLevel = options.GraphOptimizationLevel, IntraOpNumThreads = threads, InterOpNumThreads = 1,
                ExecutionMode = options.ExecutionMode, ProfileOutputPathPrefix = profilePrefix,
            };
            decoderOptions.EnableProfiling = true;
        }
        Encoder = new InferenceSession(Path.Combine(folder, Graphs[0]), options);
        Decoder = new InferenceSession(Path.Combine(folder, Graphs[1]), decoderOptions);
        Layers = Decoder.InputMetadata.Keys.Count(k => k.StartsWith("past_key_", StringComparison.Ordinal));
        var past = Decoder.InputMetadata.GetValueOrDefault("past_key_0")?.Dimensions;
        var logits = Decoder.OutputMetadata.GetValueOrDefault("logits")?.Dimensions;
        if (Layers == 0 || past is not { Length: 4 } || logits is not { Length: 2 } || past[1] <= 0 || past[3] <= 0 || logits[1] <= 0)
            throw new InvalidDataException($"{folder}/{Graphs[1]}: inputs past_key_i (rows, heads, past, head size) and output logits (rows, vocabulary) expected");
        Heads = past[1];
        HeadSize = past[3];
        Vocabulary = logits[1];
    }

    /// <summary>The graphs' files in an export folder (a folder each: weights past 2 GB are files beside their graph).</summary>
    public static IReadOnlyList<string> Graphs { get; } = ["encoder/encoder.onnx", "decoder/decoder.onnx"];

    public InferenceSession Encoder { get; }

    public InferenceSession Decoder { get; }

    /// <summary>Decoder layers (each with its own cache and cross-attention keys/values).</summary>
    public int Layers { get; }

    public int Heads { get; }

    public int HeadSize { get; }

    public int Vocabulary { get; }

    /// <summary>The ONNX Runtime version, e.g. "ONNX Runtime 1.32.0".</summary>
    public static string Version => $"ONNX Runtime {OrtEnv.Instance().GetVersionString()}";

    /// <summary>
    /// Runs check.json (the torch module's outputs on a small case, written by export_onnx.py at other shapes than the
    /// trace's) through both graphs; returns the largest difference relative to max(1, |expected|) and throws when it exceeds
    /// <paramref name="tolerance"/>, naming the graph and output.
    /// </summary>
    public double Check(string folder, double tolerance = 1e-4)
    {
        string path = Path.Combine(folder, "check.json");
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        double worst = 0;
        foreach (var (name, session) in new[] { ("encoder", Encoder), ("decoder", Decoder) })
        {
            var graph = document.RootElement.GetProperty(name);
            var inputNames = new List<string>();
            var inputs = new List<OrtValue>();
            try
            {
                foreach (var input in graph.GetProperty("inputs").EnumerateObject())
                {
                    long[] shape = input.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    var data = input.Value.GetProperty("data");
                    inputNames.Add(input.Name);
                    inputs.Add(session.InputMetadata[input.Name].ElementDataType == TensorElementType.Int64
                        ? OrtValue.CreateTensorValueFromMemory(data.EnumerateArray().Select(e => e.GetInt64()).ToArray(), shape)
                        : OrtValue.CreateTensorValueFromMemory(data.EnumerateArray().Select(e => e.GetSingle()).ToArray(), shape));
                }
                var expected = graph.GetProperty("outputs").EnumerateObject().ToList();
                using var runOptions = new RunOptions();
                using var outputs = session.Run(runOptions, inputNames, inputs, expected.Select(e => e.Name).ToArray());
                for (int i = 0; i < expected.Count; i++)
                {
                    long[] shape = expected[i].Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    long[] actualShape = outputs[i].GetTensorTypeAndShape().Shape;
                    if (!shape.SequenceEqual(actualShape))
                        throw new InvalidDataException($"{path}: {name} output {expected[i].Name} has shape ({string.Join(", ", actualShape)}), the torch module ({string.Join(", ", shape)})");
                    var actual = outputs[i].GetTensorDataAsSpan<float>();
                    int j = 0;
                    foreach (var e in expected[i].Value.GetProperty("data").EnumerateArray())
                    {
                        double want = e.GetDouble();
                        worst = Math.Max(worst, Math.Abs(actual[j++] - want) / Math.Max(1, Math.Abs(want)));
                    }
                    if (worst > tolerance)
                        throw new InvalidDataException($"{path}: {name} output {expected[i].Name} differs from the torch module by {worst:G3} (tolerance {tolerance:G3})");
                }
            }
            finally
            {
                foreach (var value in inputs) value.Dispose();
            }
        }
        return worst;
    }

    public void Dispose()
    {
        Encoder.Dispose();
        Decoder.Dispose();
        if (!ReferenceEquals(decoderOptions, options)) decoderOptions.Dispose();
        options.Dispose();
    }
}

/// <summary>
/// Native memory that ONNX Runtime reads from and writes into in place (bound through <see cref="OrtIoBinding"/>), allocated
/// once per decoding mode at the largest size it needs: pages are only resident once a step has touched them.
/// </summary>
internal sealed unsafe class NativeBuffer<T> : IDisposable where T : unmanaged
{
    private readonly TensorElementType type;

    public NativeBuffer(long capacity)
    {
        Capacity = Math.Max(1, capacity);
        Pointer = (T*)NativeMemory.AlignedAlloc((nuint)(Capacity * sizeof(T)), 64);
        type = typeof(T) == typeof(float) ? TensorElementType.Float : typeof(T) == typeof(long) ? TensorElementType.Int64
            : throw new NotSupportedException(typeof(T).Name);
    }

    public T* Pointer { get; private set; }

    public long Capacity { get; }

    public Span<T> Span(long count) => new(Pointer, checked((int)count));

    /// <summary>A tensor of <paramref name="shape"/> over the start of the buffer (no copy).</summary>
    public OrtValue View(params long[] shape)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (count > Capacity) throw new InvalidOperationException($"tensor of {count} elements over a buffer of {Capacity}");
        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type, shape, (IntPtr)Pointer, count * sizeof(T));
    }

    /// <summary>Row i of the result is row <paramref name="rows"/>[i] of this buffer's <paramref name="rowSize"/>-element rows.</summary>
    public void GatherInto(NativeBuffer<T> target, ReadOnlySpan<int> rows, long rowSize)
    {
        long bytes = rowSize * sizeof(T);
        for (int i = 0; i < rows.Length; i++)
            Buffer.MemoryCopy(Pointer + rows[i] * rowSize, target.Pointer + i * rowSize, bytes, bytes);
    }

    public void Dispose()
    {
        if (Pointer is not null) NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}
