using static TorchSharp.torch;
using Transduce.IO;

namespace Transduce.Checkpoints;

/// <summary>What a weights file holds, read from its header alone: each tensor's shape, and how many elements the file really stores.</summary>
/// <param name="Path">The file.</param>
/// <param name="Shapes">Tensor name → shape.</param>
/// <param name="StoredElements">Elements the file stores (tensors that share a storage counted once).</param>
internal sealed record WeightsIndex(string Path, IReadOnlyDictionary<string, long[]> Shapes, long StoredElements);

/// <summary>
/// Weights files of either kind a model folder may hold: safetensors, or a PyTorch state dict written by
/// <c>torch.save</c> (<c>pytorch_model.bin</c>, read by our own restricted reader). The kind is told by content.
/// Both are untrusted input: every size is checked against the file before memory is taken.
/// </summary>
internal static class WeightFiles
{
    /// <summary>Describes <paramref name="path"/> from its header (no tensor data is read).</summary>
    public static WeightsIndex Describe(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: weights file not found", path);
        if (TorchPickle.LooksLikeZip(path))
        {
            var views = TorchPickle.ReadIndex(path);
            long stored = views.Values.Select(v => v.Storage).DistinctBy(s => s.Key).Sum(s => s.Elements);
            return new WeightsIndex(path, views.ToDictionary(kv => kv.Key, kv => kv.Value.Shape, StringComparer.Ordinal), stored);
        }
        var (entries, _, _) = Safetensors.ReadHeader(path);
        long elements = 0;
        foreach (var e in entries.Values) elements += e.Shape.Aggregate(1L, (n, d) => n * d); // bounded by the file's size
        return new WeightsIndex(path, entries.ToDictionary(kv => kv.Key, kv => kv.Value.Shape, StringComparer.Ordinal), elements);
    }

    /// <summary>
    /// Reads every tensor of <paramref name="path"/>. Tensors that share one storage in a PyTorch file (tied
    /// embeddings) come back as views of one buffer, read once.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: weights file not found", path);
        return TorchPickle.LooksLikeZip(path) ? TorchPickle.Load(path) : Safetensors.Load(path, out _);
    }
}

/// <summary>
/// The tensors of one or more weights files (a model's shards), read one at a time by name: from a safetensors file a view of
/// its mapping where possible (<see cref="SafetensorsReader"/>), from a PyTorch file a view of the state dict read once.
/// </summary>
internal sealed class WeightReader : IDisposable
{
    private readonly Func<string, string> fileOf;
    private readonly Dictionary<string, SafetensorsReader> safetensors = [];
    private readonly Dictionary<string, Dictionary<string, Tensor>> pickles = [];

    /// <summary>Reads from the files <paramref name="fileOf"/> names for each tensor (all from one file, or by a shard map).</summary>
    public WeightReader(Func<string, string> fileOf) => this.fileOf = fileOf;

    /// <summary>The tensor <paramref name="name"/> (it must be in its file), owned by the caller.</summary>
    public Tensor Read(string name)
    {
        string path = fileOf(name);
        if (pickles.TryGetValue(path, out var dict)) return dict[name].alias();
        if (safetensors.TryGetValue(path, out var reader)) return reader.Read(name);
        if (TorchPickle.LooksLikeZip(path))
        {
            pickles[path] = dict = TorchPickle.Load(path);
            return dict[name].alias();
        }
        safetensors[path] = reader = SafetensorsReader.Open(path);
        return reader.Read(name);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var r in safetensors.Values) r.Dispose();
        foreach (var d in pickles.Values)
            foreach (var t in d.Values) t.Dispose();
        safetensors.Clear();
        pickles.Clear();
    }
}
