using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.IO;
using Transduce.Checkpoints;
using static TorchSharp.torch;

namespace Transduce.Data;

/// <summary>What a shard folder's <c>shards.json</c> says.</summary>
/// <param name="Pairs">Sentence pairs over all shards.</param>
/// <param name="SourceVocabularySize">Every source id is below this.</param>
/// <param name="TargetVocabularySize">Every target id is below this.</param>
/// <param name="SourceTokens">Source ids over all shards.</param>
/// <param name="TargetTokens">Target ids over all shards.</param>
/// <param name="Shards">The shard files in order, with their pair counts; a relative path is relative to the manifest's folder.</param>
/// <param name="Corpora">When the pairs come from several corpora (<c>data.corpora</c>), the pairs of each, in order; else null.</param>
internal sealed record TokenShardsInfo(long Pairs, int SourceVocabularySize, int TargetVocabularySize, long SourceTokens, long TargetTokens,
    IReadOnlyList<(string File, int Pairs)> Shards, IReadOnlyList<int>? Corpora = null);

/// <summary>
/// Token ids of a corpus as sharded binary files that any process can memory-map, the data side of <c>transduce prepare</c>.
/// <para>
/// A shard folder holds <c>shards.json</c> (the manifest) and shard files <c>shard-00000.safetensors</c>, … Each shard is a
/// safetensors file (an 8-byte little-endian header length, a JSON header, raw little-endian data) with four tensors:
/// <c>source_ids</c> and <c>target_ids</c> (int32, every pair's ids one after the other, <em>without</em> <c>&lt;eos&gt;</c>
/// or any other special token) and <c>source_offsets</c> and <c>target_offsets</c> (int64, pairs + 1 entries): pair
/// <c>i</c> of a shard is <c>source_ids[source_offsets[i] .. source_offsets[i+1]]</c> and the same on the target side.
/// Pairs keep corpus order; global pair numbers run across shards in the manifest's order. The manifest:
/// <code>{"format": "transduce-token-shards", "version": 1, "pairs": N, "source_vocab_size": S, "target_vocab_size": T,
///  "source_tokens": …, "target_tokens": …, "shards": [{"file": "shard-00000.safetensors", "pairs": n}, …]}</code>
/// and, when the pairs come from several corpora, <c>"corpora": [n₀, n₁, …]</c>: the pairs of each, one corpus after the other.
/// A shard's file may be an absolute path (a checkpoint trained elsewhere points at the shards it was trained on).
/// </para>
/// </summary>
internal static class TokenShards
{
    /// <summary>The manifest's file name.</summary>
    public const string ManifestFile = "shards.json";

    /// <summary>The manifest's <c>format</c> tag.</summary>
    public const string FormatTag = "transduce-token-shards";

    /// <summary>Pairs per shard unless told otherwise.</summary>
    public const int DefaultShardPairs = 1_000_000;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>True when <paramref name="directory"/> holds a shard manifest.</summary>
    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, ManifestFile));

    /// <summary>
    /// Writes <paramref name="pairs"/> as shards of at most <paramref name="shardPairs"/> pairs into <paramref name="directory"/>
    /// (created if needed), streaming: one shard is held in memory at a time. Every file is written atomically and the
    /// manifest last, so a folder with a manifest is complete.
    /// </summary>
    /// <param name="directory">The shard folder.</param>
    /// <param name="pairs">Encoded pairs, in corpus order.</param>
    /// <param name="sourceVocabularySize">Source vocabulary size (ids are checked against it).</param>
    /// <param name="targetVocabularySize">Target vocabulary size (ids are checked against it).</param>
    /// <param name="shardPairs">Most pairs per shard.</param>
    /// <param name="corpora">Asked once every pair is written: the pairs of each corpus, when there are several.</param>
    public static TokenShardsInfo Write(string directory, IEnumerable<EncodedPair> pairs, int sourceVocabularySize, int targetVocabularySize,
        int shardPairs = DefaultShardPairs, Func<IReadOnlyList<int>>? corpora = null)
    {
        if (shardPairs < 1) throw new ArgumentOutOfRangeException(nameof(shardPairs), "a shard holds at least one pair");
        Directory.CreateDirectory(directory);
        var shards = new List<(string File, int Pairs)>();
        long total = 0, sourceTokens = 0, targetTokens = 0;
        var source = new ShardSide(sourceVocabularySize, "source");
        var target = new ShardSide(targetVocabularySize, "target");
        void Flush()
        {
            string name = $"shard-{shards.Count:D5}.safetensors";
            using var scope = NewDisposeScope();
            var tensors = new Dictionary<string, Tensor>();
            source.AddTo(tensors);
            target.AddTo(tensors);
            Safetensors.Save(Path.Combine(directory, name), tensors, new Dictionary<string, string> { ["format"] = FormatTag });
            shards.Add((name, source.Pairs));
            source.Clear();
            target.Clear();
        }
        foreach (var pair in pairs)
        {
            source.Add(pair.Source, total);
            target.Add(pair.Target, total);
            total++;
            sourceTokens += pair.Source.Length;
            targetTokens += pair.Target.Length;
            if (source.Pairs == shardPairs) Flush();
        }
        if (source.Pairs > 0 || shards.Count == 0) Flush();

        var counts = corpora?.Invoke();
        if (counts is not null && counts.Sum(c => (long)c) != total)
            throw new ArgumentException($"the corpora's pair counts add up to {counts.Sum(c => (long)c)}, {total} pairs were written");
        var info = new TokenShardsInfo(total, sourceVocabularySize, targetVocabularySize, sourceTokens, targetTokens, shards, counts);
        var manifest = new JsonObject
        {
            ["format"] = FormatTag,
            ["version"] = 1,
            ["pairs"] = total,
            ["source_vocab_size"] = sourceVocabularySize,
            ["target_vocab_size"] = targetVocabularySize,
            ["source_tokens"] = sourceTokens,
            ["target_tokens"] = targetTokens,
            ["shards"] = new JsonArray(shards.Select(s => (JsonNode)new JsonObject { ["file"] = s.File, ["pairs"] = s.Pairs }).ToArray()),
        };
        if (counts is not null) manifest["corpora"] = new JsonArray(counts.Select(c => (JsonNode)c).ToArray());
        AtomicFile.WriteAllText(Path.Combine(directory, ManifestFile), manifest.ToJsonString(Indented));
        return info;
    }

    /// <summary>Reads and checks the manifest of the shard folder <paramref name="directory"/>.</summary>
    /// <exception cref="InvalidDataException">The manifest is missing fields, foreign or inconsistent (the message names the file).</exception>
    public static TokenShardsInfo ReadInfo(string directory)
    {
        string path = Path.Combine(directory, ManifestFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found — '{directory}' holds no token shards", path);
        try
        {
            var root = JsonNode.Parse(Text.StrictUtf8.ReadText(path))?.AsObject() ?? throw new InvalidDataException($"{path}: empty");
            string? format = root["format"]?.GetValue<string>();
            if (format != FormatTag) throw new InvalidDataException($"{path}: not a token-shard manifest (format '{format ?? "missing"}', expected '{FormatTag}')");
            int version = root["version"]?.GetValue<int>() ?? -1;
            if (version != 1) throw new InvalidDataException($"{path}: unsupported version {version} (this build reads version 1)");
            long Long(string key) => root[key]?.GetValue<long>() is long v and >= 0 ? v : throw new InvalidDataException($"{path}: '{key}' missing or negative");
            int Size(string key) => root[key]?.GetValue<int>() is int v and > 0 ? v : throw new InvalidDataException($"{path}: '{key}' missing or not positive");
            var shards = (root["shards"] as JsonArray ?? throw new InvalidDataException($"{path}: 'shards' missing"))
                .Select((s, i) =>
                {
                    string file = s?["file"]?.GetValue<string>() is { Length: > 0 } f ? f : throw new InvalidDataException($"{path}: shard {i} has no 'file'");
                    int pairs = s?["pairs"]?.GetValue<int>() is int p and >= 0 ? p : throw new InvalidDataException($"{path}: shard {i} has no 'pairs'");
                    return (File: Path.IsPathRooted(file) ? file : Path.Combine(directory, file), Pairs: pairs);
                }).ToList();
            List<int>? corpora = null;
            if (root["corpora"] is { } listed)
            {
                var array = listed as JsonArray ?? throw new InvalidDataException($"{path}: 'corpora' must be a list of pair counts");
                if (array.Count is 0 or > 4096) throw new InvalidDataException($"{path}: 'corpora' lists {array.Count} corpora (1 to 4096)");
                corpora = [.. array.Select((c, i) => c?.GetValue<int>() is int n and >= 0 ? n : throw new InvalidDataException($"{path}: 'corpora[{i}]' must be a pair count"))];
            }
            var info = new TokenShardsInfo(Long("pairs"), Size("source_vocab_size"), Size("target_vocab_size"), Long("source_tokens"), Long("target_tokens"), shards, corpora);
            if (corpora is not null && corpora.Sum(c => (long)c) != info.Pairs)
                throw new InvalidDataException($"{path}: the corpora hold {corpora.Sum(c => (long)c)} pairs, the manifest says {info.Pairs}");
            if (shards.Sum(s => (long)s.Pairs) != info.Pairs)
                throw new InvalidDataException($"{path}: the shards hold {shards.Sum(s => (long)s.Pairs)} pairs, the manifest says {info.Pairs}");
            return info;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid manifest ({e.Message})", e);
        }
    }

    /// <summary>
    /// Reads every pair of the shard folder <paramref name="directory"/>, checking each shard against the manifest:
    /// tensor names, types and shapes, offsets that rise from 0 to the id count, and ids inside the vocabularies.
    /// </summary>
    /// <exception cref="InvalidDataException">A shard does not match (the message names the file and the problem).</exception>
    public static IReadOnlyList<EncodedPair> Read(string directory)
    {
        using var pairs = ShardPairs.Open(directory);
        return pairs.ToList();
    }

    /// <summary>One side (source or target) of a shard being written: ids one after the other and the offsets between pairs.</summary>
    private sealed class ShardSide(int vocabularySize, string name)
    {
        private readonly List<int> ids = [];
        private readonly List<long> offsets = [0];

        public int Pairs => offsets.Count - 1;

        public void Add(int[] pair, long number)
        {
            foreach (int id in pair)
                if ((uint)id >= (uint)vocabularySize)
                    throw new ArgumentException($"pair {number}: {name} id {id} is outside the {name} vocabulary (size {vocabularySize})");
            ids.AddRange(pair);
            offsets.Add(ids.Count);
        }

        public void AddTo(Dictionary<string, Tensor> tensors)
        {
            tensors[$"{name}_ids"] = tensor(ids.ToArray(), ScalarType.Int32);
            tensors[$"{name}_offsets"] = tensor(offsets.ToArray(), ScalarType.Int64);
        }

        public void Clear()
        {
            ids.Clear();
            offsets.Clear();
            offsets.Add(0);
        }
    }
}
