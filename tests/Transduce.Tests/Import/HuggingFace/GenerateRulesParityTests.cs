using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Import.Marian;
using Transduce.Inference;
using Transduce.Tests.Import.Marian;
using Transduce.Translation;
using static TorchSharp.torch;

namespace Transduce.Tests.Import.HuggingFace;

/// <summary>
/// Every decoding rule of a folder's <c>generation_config.json</c>, token for token in float32, against
/// <c>generate-rules.json</c>: what <c>python/reference/generate_rules.py</c> (an independent PyTorch re-implementation of
/// MarianMT and of transformers' <c>generate</c> with its logits processors, checked against the folder's
/// <c>expected.json</c> first) computed on <c>../shared/testdata/marian-tiny</c>. Each case writes the settings into a
/// copy's <c>generation_config.json</c>, so the reader, the settings and the rules are all on the path.
/// </summary>
public sealed class GenerateRulesParityTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), $"gen-rules-{Guid.NewGuid():N}");

    private static readonly Lazy<JsonElement> s_vectors = new(() => JsonDocument.Parse(File.ReadAllText(
        Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "HuggingFace", "generate-rules.json"))).RootElement);

    private static readonly Lazy<JsonElement> s_expected = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(MarianFolders.Shipped, "expected.json"))).RootElement);

    public static TheoryData<string> Cases() => new(s_vectors.Value.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("name").GetString()!));

    private static JsonElement Case(string name) =>
        s_vectors.Value.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    private static Tensor Matrix(string name)
    {
        var rows = s_expected.Value.GetProperty(name).EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();
        return tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);
    }

    private static int[][] Outputs(JsonElement c, string key) =>
        c.GetProperty(key).EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();

    /// <summary>A copy of marian-tiny whose generation_config.json holds the case's settings.</summary>
    private string FolderFor(string name) => MarianFolders.CopyTo(Path.Combine(dir, name), folder =>
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), Case(name).GetProperty("generation_config").GetRawText()),
        "pytorch_model.bin");

    private static void AssertSame(int[][] expected, IReadOnlyList<int[]> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Count);
        for (int s = 0; s < expected.Length; s++)
            Assert.True(expected[s].SequenceEqual(actual[s]),
                $"{what}, sentence {s}: expected [{string.Join(' ', expected[s])}], got [{string.Join(' ', actual[s])}]");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyEqualsTheReference(string name)
    {
        using var marian = MarianImport.Load(FolderFor(name));
        using var scope = NewDisposeScope();
        var outputs = marian.Greedy(Matrix("input_ids"), Matrix("attention_mask"));
        AssertSame(Outputs(Case(name), "greedy"), outputs, $"{name} greedy");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Beam4EqualsTheReferenceInEachEarlyStoppingMode(string name)
    {
        using var marian = MarianImport.Load(FolderFor(name));
        using var scope = NewDisposeScope();
        foreach (var (mode, key) in new[] { (EarlyStopping.WhenFull, "beam4_true"), (EarlyStopping.Heuristic, "beam4_false"), (EarlyStopping.Never, "beam4_never") })
        {
            var outputs = marian.Beam(Matrix("input_ids"), Matrix("attention_mask"), numBeams: 4, earlyStopping: mode);
            AssertSame(Outputs(Case(name), key), outputs.Select(n => n[0].Tokens).ToArray(), $"{name} {key}");
        }
    }

    [Fact]
    public void TheRulesChangeTheOutputs()
    {
        // The vectors are worth comparing only if each rule changed what plain decoding gives (expected.json). A penalty
        // of 1.3 leaves this model's greedy choice alone (a large positive logit divided by 1.3 stays the largest) but
        // changes every beam, where it scales log-probabilities; 3 changes greedy search too.
        int[][] Plain(string key) => s_expected.Value.GetProperty(key).EnumerateArray()
            .Select(r => r.EnumerateArray().Skip(1).Select(x => x.GetInt32()).TakeWhile(x => x != 0).ToArray()).ToArray();
        var (greedy, beam) = (Plain("greedy_ids"), Plain("beam4_ids"));
        foreach (var name in new[] { "no_repeat_ngram_2", "no_repeat_ngram_3", "repetition_penalty_3", "bad_words_multi", "forced_bos_17_penalty_1.3" })
            Assert.All(Enumerable.Range(0, greedy.Length), s => Assert.False(greedy[s].SequenceEqual(Outputs(Case(name), "greedy")[s]), $"{name}, sentence {s}"));
        Assert.All(Enumerable.Range(0, beam.Length), s => Assert.False(beam[s].SequenceEqual(Outputs(Case("repetition_penalty_1.3"), "beam4_true")[s])));
    }

    [Fact]
    public void TranslationOptionsApplyTheRulesToAConvertedFolder()
    {
        // The same rules chosen per call on the converted checkpoint (our vocabulary layout), compared piece by piece.
        string folder = MarianFolders.CopyTo(Path.Combine(dir, "plain"), leaveOut: "pytorch_model.bin");
        using var translator = Translator.Load(folder);
        var pieces = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "vocab.json")))!.AsObject()
            .ToDictionary(kv => kv.Value!.GetValue<int>(), kv => kv.Key);
        var sentences = s_expected.Value.GetProperty("sentences").EnumerateArray().Select(x => x.GetString()!).ToArray();
        foreach (var (name, options) in new[]
        {
            ("no_repeat_ngram_2", new TranslationOptions { NoRepeatNgramSize = 2, MaxNewTokens = 24 }),
            ("repetition_penalty_1.3", new TranslationOptions { RepetitionPenalty = 1.3, MaxNewTokens = 24 }),
        })
        {
            var expected = Outputs(Case(name), "greedy").Select(r => r.Select(id => pieces[id]).ToArray()).ToArray();
            var ours = translator.TranslateTokens(sentences, options);
            for (int s = 0; s < sentences.Length; s++) Assert.Equal(expected[s], ours[s]);
            var beams = translator.TranslateTokens(sentences, options with { Beam = 4 });
            var expectedBeams = Outputs(Case(name), "beam4_false").Select(r => r.Select(id => pieces[id]).ToArray()).ToArray();
            for (int s = 0; s < sentences.Length; s++) Assert.Equal(expectedBeams[s], beams[s]);
        }
    }

    [Fact]
    public void AConvertedCheckpointKeepsItsRulesThroughSaveAndLoad()
    {
        string folder = FolderFor("forced_bos_17_penalty_1.3");
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), """
            {"decoder_start_token_id": 1074, "eos_token_id": 0, "pad_token_id": 1074, "forced_eos_token_id": 0,
             "no_repeat_ngram_size": 2, "repetition_penalty": 1.3, "min_length": 4, "bad_words_ids": [[1074], [5, 6]], "forced_bos_token_id": 17}
            """);
        using var converted = Transduce.Checkpoints.Checkpoint.Load(folder);
        string saved = Path.Combine(dir, "saved");
        converted.Save(saved);
        using var loaded = Transduce.Checkpoints.Checkpoint.Load(saved);
        var (a, b) = (converted.Generation, loaded.Generation);
        Assert.Equal((2, 1.3, 3), (b.NoRepeatNgramSize, b.RepetitionPenalty, b.MinLength));
        Assert.Equal(a.ForcedBosTokenId, b.ForcedBosTokenId);
        Assert.NotNull(b.ForcedBosTokenId);
        Assert.Equal(a.BannedTokens, b.BannedTokens);
        Assert.Equal(a.BannedSequences.Select(q => string.Join(' ', q)), b.BannedSequences.Select(q => string.Join(' ', q)));
        Assert.Single(b.BannedSequences);
    }

    [Fact]
    public void WithoutForcedEosAConvertedFolderStopsAtTheLimitThroughSaveAndLoad()
    {
        // generation_config.json without forced_eos_token_id: the converted checkpoint (our vocabulary layout) decodes up to
        // max_new_tokens tokens with no forced end, through the translator, and keeps that rule when saved and loaded.
        const string name = "no_forced_eos_6";
        string folder = FolderFor(name);
        var pieces = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "vocab.json")))!.AsObject()
            .ToDictionary(kv => kv.Value!.GetValue<int>(), kv => kv.Key);
        var sentences = s_expected.Value.GetProperty("sentences").EnumerateArray().Select(x => x.GetString()!).ToArray();
        string saved = Path.Combine(dir, "saved-stop");
        using (var converted = Translator.Load(folder))
        {
            Assert.Equal(LengthLimitRule.Stop, converted.Checkpoint.Generation.LengthLimit);
            converted.Checkpoint.Save(saved);
        }
        using var translator = Translator.Load(saved);
        Assert.Equal(LengthLimitRule.Stop, translator.Checkpoint.Generation.LengthLimit);
        Assert.Equal(6, translator.MaxOutputLength(3, translator.DefaultOptions));
        foreach (var (key, beam) in new[] { ("greedy", 1), ("beam4_false", 4) })
        {
            var expected = Outputs(Case(name), key).Select(r => r.Select(id => pieces[id]).ToArray()).ToArray();
            var ours = translator.TranslateTokens(sentences, translator.DefaultOptions with { Beam = beam });
            for (int s = 0; s < sentences.Length; s++) Assert.Equal(expected[s], ours[s]);
        }
    }

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }
}
