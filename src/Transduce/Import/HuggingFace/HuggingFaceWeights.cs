using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using static TorchSharp.torch;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// The weights of a <see cref="HuggingFaceFolder"/>, as transformers finds them: <c>model.safetensors</c>, else
/// <c>model.safetensors.index.json</c> (shards), else <c>pytorch_model.bin</c>, else <c>pytorch_model.bin.index.json</c>.
/// An index's <c>weight_map</c> (tensor → shard file) must name files inside the folder, of the index's kind, and every
/// tensor must be where the map says, once. Each file is read by <see cref="WeightFiles"/> (safetensors or the restricted
/// PyTorch reader); the checks run on headers alone, before any tensor memory is taken.
/// </summary>
internal sealed class HuggingFaceWeights
{
    /// <summary>Weight file names transformers writes.</summary>
    public const string SafetensorsFile = "model.safetensors", SafetensorsIndexFile = "model.safetensors.index.json",
        PyTorchFile = "pytorch_model.bin", PyTorchIndexFile = "pytorch_model.bin.index.json";

    private const int MaxShards = 4096;

    private HuggingFaceWeights(string path, IReadOnlyList<string> files, IReadOnlyDictionary<string, string>? weightMap)
    {
        Path = path;
        Files = files;
        WeightMap = weightMap;
    }

    /// <summary>The single weights file, or the shard index.</summary>
    public string Path { get; }

    /// <summary>The files holding tensors (one, or the shards in index order).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Tensor name → shard path, for sharded weights; null for one file.</summary>
    public IReadOnlyDictionary<string, string>? WeightMap { get; }

    /// <summary>True for weights split into shards behind an index.</summary>
    public bool Sharded => WeightMap is not null;

    /// <summary>Finds the weights of <paramref name="folder"/>; none of the four files throws <see cref="FileNotFoundException"/> listing them.</summary>
    public static HuggingFaceWeights Find(HuggingFaceFolder folder)
    {
        foreach (var name in new[] { SafetensorsFile, SafetensorsIndexFile, PyTorchFile, PyTorchIndexFile })
        {
            string path = folder.File(name);
            if (!System.IO.File.Exists(path)) continue;
            return name.EndsWith(".index.json", StringComparison.Ordinal) ? FromIndex(folder, path, name == SafetensorsIndexFile) : new(path, [path], null);
        }
        string first = System.IO.Path.Combine(folder.Directory, SafetensorsFile);
        throw new FileNotFoundException(
            $"{first}: not found — a {folder.Family} folder needs its weights as {SafetensorsFile}, {SafetensorsIndexFile}, {PyTorchFile} or {PyTorchIndexFile}", first);
    }

    private static HuggingFaceWeights FromIndex(HuggingFaceFolder folder, string indexPath, bool safetensors)
    {
        var index = new HfJsonFile(indexPath, required: true);
        if (index.Node("weight_map") is not JsonObject map || map.Count == 0)
            throw index.Error("'weight_map' must be an object of tensor name → shard file");
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        var files = new List<string>();
        foreach (var (tensor, node) in map)
        {
            if (node is not JsonValue v || !v.TryGetValue<string>(out var shard))
                throw index.Error($"'weight_map': '{tensor}' must name a shard file (got {node?.ToJsonString() ?? "null"})");
            string field = $"{indexPath}: 'weight_map' '{tensor}'";
            string path = folder.File(shard, field);
            if (!weightMap.ContainsValue(path))
            {
                string expected = safetensors ? ".safetensors" : ".bin";
                if (!shard.EndsWith(expected, StringComparison.Ordinal))
                    throw new InvalidDataException($"{field}: '{shard}' is not a {expected} shard");
                if (!System.IO.File.Exists(path))
                    throw new InvalidDataException($"{field}: shard '{shard}' not found");
                if (safetensors == TorchPickle.LooksLikeZip(path))
                    throw new InvalidDataException($"{field}: shard '{shard}' is not a {(safetensors ? "safetensors" : "PyTorch")} file");
                files.Add(path);
                if (files.Count > MaxShards) throw index.Error($"'weight_map' names more than {MaxShards} shards");
            }
            weightMap[tensor] = path;
        }
        return new(indexPath, files, weightMap);
    }

    /// <summary>
    /// Every tensor's shape and the elements stored, from the headers; for shards, checks that each shard holds exactly
    /// the tensors the index gives it (a tensor the map misses, puts elsewhere, or that two shards hold throws
    /// <see cref="InvalidDataException"/> naming the shard and the tensor).
    /// </summary>
    public WeightsIndex Describe()
    {
        if (WeightMap is null) return WeightFiles.Describe(Files[0]);
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        long stored = 0;
        foreach (var file in Files)
        {
            var part = WeightFiles.Describe(file);
            foreach (var (name, shape) in part.Shapes)
            {
                if (!WeightMap.TryGetValue(name, out var mapped))
                    throw new InvalidDataException($"{file}: tensor '{name}' is not in the 'weight_map' of {System.IO.Path.GetFileName(Path)}");
                if (mapped != file)
                    throw new InvalidDataException(
                        $"{file}: tensor '{name}' is mapped to {System.IO.Path.GetFileName(mapped)} by {System.IO.Path.GetFileName(Path)}" +
                        (shapes.ContainsKey(name) ? " and stored in two shards" : ""));
                shapes.Add(name, shape);
            }
            stored += part.StoredElements;
        }
        var absent = WeightMap.Keys.FirstOrDefault(name => !shapes.ContainsKey(name));
        if (absent is not null)
            throw new InvalidDataException($"{WeightMap[absent]}: tensor '{absent}' is missing ({System.IO.Path.GetFileName(Path)}'s 'weight_map' puts it there)");
        return new WeightsIndex(Path, shapes, stored);
    }

    /// <summary>A reader of the tensors by name, across the shards (call <see cref="Describe"/> first: it checks them).</summary>
    public WeightReader Open() => WeightMap is null ? new WeightReader(_ => Files[0]) : new WeightReader(name => WeightMap[name]);

    /// <summary>Reads every tensor (all shards), after <see cref="Describe"/>'s checks. The caller disposes them.</summary>
    public Dictionary<string, Tensor> Load()
    {
        if (WeightMap is null) return WeightFiles.Load(Files[0]);
        Describe();
        var all = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var file in Files)
                foreach (var (name, tensor) in WeightFiles.Load(file)) all.Add(name, tensor);
        }
        catch
        {
            foreach (var t in all.Values) t.Dispose();
            throw;
        }
        return all;
    }
}
