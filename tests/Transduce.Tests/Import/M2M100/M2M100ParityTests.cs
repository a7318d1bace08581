using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Import.M2M100;
using Transduce.Inference;
using static TorchSharp.torch;

namespace Transduce.Tests.Import.M2M100;

/// <summary>
/// Parity with transformers on tiny NLLB folders (<c>testdata/</c>, written by <c>python/reference/m2m100_reference.py</c>,
/// an independent PyTorch re-implementation of <c>M2M100ForConditionalGeneration</c>, <c>NllbTokenizer</c> and
/// <c>generate</c> from transformers' source): input ids, encoder output, first-step logits, greedy and beam 4 with the
/// target language forced, and the decoded text.
/// </summary>
public sealed class M2M100ParityTests
{
    internal static string Folder => Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "M2M100", "testdata", "nllb-tiny");

    internal static string ShardsFolder => Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "M2M100", "testdata", "nllb-tiny-shards");

    /// <summary>The M2M100 flavour: <c>vocab.json</c>, <c>__en__</c> tokens, 3 decoder blocks, untied <c>lm_head</c>, safetensors shards.</summary>
    internal static string M2M100Folder => Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "M2M100", "testdata", "m2m100-tiny");

    private static string FolderOf(string name) => name == "nllb-tiny" ? Folder : M2M100Folder;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, JsonElement> s_expected = new();

    private static JsonElement ExpectedOf(string name) =>
        s_expected.GetOrAdd(name, n => JsonDocument.Parse(File.ReadAllText(Path.Combine(FolderOf(n), "expected.json"))).RootElement);

    private static JsonElement Expected => ExpectedOf("nllb-tiny");

    private static long[][] Ints(JsonElement rows) => rows.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();

    private static Tensor Matrix(long[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);

    /// <summary>A reference output without the trailing <c>&lt;/s&gt;</c> (our searches return the tokens before it).</summary>
    private static int[] WithoutEos(long[] row) => row.Select(x => (int)x).TakeWhile(x => x != NllbTokenizer.EosId).ToArray();

    private static (Tensor Ids, Tensor Mask) Inputs(JsonElement expected) =>
        (Matrix(Ints(expected.GetProperty("input_ids"))), Matrix(Ints(expected.GetProperty("attention_mask"))));

    [Fact]
    public void ConfigMapsOntoTheSpec()
    {
        using var m = M2M100Import.Load(Folder);
        var c = m.Config;
        Assert.Equal((16, 2, 2, 32, "relu", 128), (c.HiddenSize, c.Layers, c.Heads, c.FfnSize, c.Activation, c.TargetVocabSize));
        Assert.True(c.PreNorm && c.FinalNorm == true && c.ShareEmbeddings && c.TieEmbeddings && c.ScaleEmbedding && c.AttentionBias && !c.OutputBias);
        Assert.Equal(("fairseq", 2, 64), (c.PositionalLayout, c.PositionOffset, c.MaxPositions));
        Assert.Equal((1, 2, 2), (m.Ids.Pad, m.Ids.Bos, m.Ids.Eos));
        var spec = c.ToSpec();
        Assert.True(spec.FinalEncoderNorm && spec.FinalDecoderNorm && !spec.EmbeddingNorm);
    }

    [Fact]
    public void TokenizerGivesTransformersInputIds()
    {
        using var m = M2M100Import.Load(Folder);
        var sentences = Expected.GetProperty("sentences").EnumerateArray().Select(s => s.GetString()!).ToArray();
        var expected = Ints(Expected.GetProperty("input_ids"));
        for (int i = 0; i < sentences.Length; i++)
            Assert.Equal(expected[i].Where(x => x != NllbTokenizer.PadId).Select(x => (int)x), m.Tokenizer.EncodeSource(sentences[i], "eng_Latn"));
        Assert.Equal(Expected.GetProperty("mask_id").GetInt32(), Assert.IsType<NllbTokenizer>(m.Tokenizer).MaskId);
        foreach (var language in Expected.GetProperty("languages").EnumerateObject())
            Assert.Equal(language.Value.GetInt32(), m.Tokenizer.LanguageId(language.Name));

        // M2M100Tokenizer: vocab.json, __en__ after the vocabulary.
        using var m2m = M2M100Import.Load(M2M100Folder);
        Assert.IsType<M2M100Tokenizer>(m2m.Tokenizer);
        var reference = ExpectedOf("m2m100-tiny");
        var m2mIds = Ints(reference.GetProperty("input_ids"));
        for (int i = 0; i < sentences.Length; i++)
            Assert.Equal(m2mIds[i].Where(x => x != NllbTokenizer.PadId).Select(x => (int)x), m2m.Tokenizer.EncodeSource(sentences[i], "en"));
        Assert.Equal(reference.GetProperty("languages").GetProperty("fr").GetInt32(), m2m.Tokenizer.LanguageId("fr"));
        Assert.Contains("'__fr__'", Assert.Throws<ArgumentException>(() => m2m.Tokenizer.LanguageId("__fr__")).Message);

        // legacy_behaviour (and the classic id layout, without added_tokens_decoder): pieces </s> [src_lang].
        var legacy = NllbTokenizer.Load(new Transduce.Import.HuggingFace.HuggingFaceFolder(ShardsFolder, "test"));
        Assert.True(legacy.Legacy);
        var expectedLegacy = Ints(Expected.GetProperty("legacy_input_ids"));
        for (int i = 0; i < sentences.Length; i++)
            Assert.Equal(expectedLegacy[i].Select(x => (int)x), legacy.EncodeSource(sentences[i]));
    }

    [Theory]
    [InlineData("nllb-tiny", "model.safetensors")]
    [InlineData("nllb-tiny", "pytorch_model.bin")]
    [InlineData("m2m100-tiny", "model.safetensors.index.json")]
    public void EncoderOutputAndFirstStepLogitsMatch(string folder, string weights)
    {
        var Expected = ExpectedOf(folder);
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(FolderOf(folder)))
            // the chosen weights (shards, named model-*, come with their index), and everything that is not weights
            if (Path.GetFileName(file) is var name && name != "expected.json" && (name == weights || !name.StartsWith("model.") && !name.StartsWith("pytorch_model")))
                File.Copy(file, dir.File(name));
        using var m = M2M100Import.Load(dir.Path);
        using var scope = NewDisposeScope();
        var (ids, mask) = Inputs(Expected);
        var encoded = m.Encode(ids, mask);
        var expected = Expected.GetProperty("encoder_output_0").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();
        var ours = encoded[0].narrow(0, 0, expected.Length);
        var reference = tensor(expected.SelectMany(r => r).ToArray(), [expected.Length, expected[0].Length]);
        Assert.True(ours.allclose(reference, rtol: 0, atol: 1e-4), $"encoder output differs by {(ours - reference).abs().max().item<float>()}");

        var start = full(ids.shape[0], 1, (long)NllbTokenizer.EosId);
        var logits = m.Logits(ids, mask, start).select(1, 0);
        var firstRows = Expected.GetProperty("first_step_logits").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();
        var first = tensor(firstRows.SelectMany(r => r).ToArray(), [firstRows.Length, firstRows[0].Length]);
        Assert.True(logits.allclose(first, rtol: 0, atol: 1e-4), $"first-step logits differ by {(logits - first).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData("nllb-tiny")]
    [InlineData("m2m100-tiny")]
    public void GreedyWithTheTargetLanguageForcedMatchesTokenForToken(string folder)
    {
        var reference = ExpectedOf(folder);
        using var m = M2M100Import.Load(FolderOf(folder));
        using var scope = NewDisposeScope();
        var (ids, mask) = Inputs(reference);
        var settings = m.ForTarget(reference.GetProperty("target_lang").GetString()!);
        Assert.Equal(reference.GetProperty("forced_bos_token_id").GetInt32(), settings.ForcedBosTokenId);
        var ours = m.Greedy(ids, mask, settings: settings);
        var expected = Ints(reference.GetProperty("greedy")).Select(WithoutEos).ToArray();
        Assert.Equal(expected, ours);
        var texts = reference.GetProperty("greedy_text").EnumerateArray().Select(t => t.GetString()).ToArray();
        Assert.Equal(texts, ours.Select(o => m.Tokenizer.Decode(o)).ToArray());
        Assert.All(ours, o => Assert.Equal(settings.ForcedBosTokenId, o[0]));
    }

    [Theory]
    [InlineData("nllb-tiny", "False")]
    [InlineData("nllb-tiny", "True")]
    [InlineData("nllb-tiny", "never")]
    [InlineData("m2m100-tiny", "False")]
    [InlineData("m2m100-tiny", "True")]
    [InlineData("m2m100-tiny", "never")]
    public void Beam4WithEachEarlyStoppingMatches(string folder, string key)
    {
        var reference = ExpectedOf(folder);
        var rule = key switch { "False" => EarlyStopping.Heuristic, "True" => EarlyStopping.WhenFull, _ => EarlyStopping.Never };
        using var m = M2M100Import.Load(FolderOf(folder));
        using var scope = NewDisposeScope();
        var (ids, mask) = Inputs(reference);
        var settings = m.ForTarget(reference.GetProperty("target_lang").GetString()!);
        var ours = m.Beam(ids, mask, numBeams: 4, earlyStopping: rule, settings: settings).Select(h => h[0].Tokens).ToArray();
        var expected = Ints(reference.GetProperty("beam4").GetProperty(key)).Select(WithoutEos).ToArray();
        Assert.Equal(expected, ours);
        var texts = reference.GetProperty("beam4_text").GetProperty(key).EnumerateArray().Select(t => t.GetString()).ToArray();
        Assert.Equal(texts, ours.Select(o => m.Tokenizer.Decode(o)).ToArray());
    }

    [Fact]
    public void ShardedPyTorchWeightsLoadAsTheSingleFile()
    {
        using var single = M2M100Import.Load(Folder);
        using var sharded = M2M100Import.Load(ShardsFolder);
        var expected = single.Model.state_dict();
        foreach (var (name, t) in sharded.Model.state_dict())
            Assert.True(t.eq(expected[name]).all().item<bool>(), name);
    }

    [Fact]
    public void AnUnknownLanguageNamesCloseMatches()
    {
        using var m = M2M100Import.Load(Folder);
        var e = Assert.Throws<ArgumentException>(() => m.ForTarget("fr"));
        Assert.Contains("'fr'", e.Message);
        Assert.Contains("fra_Latn", e.Message);
        Assert.DoesNotContain("deu_Latn", e.Message);
    }

    [Fact]
    public void ReducedComputeTypesStayClose()
    {
        using var m = M2M100Import.Load(Folder);
        using var scope = NewDisposeScope();
        var (ids, mask) = Inputs(Expected);
        var settings = m.ForTarget("fra_Latn");
        var reference = m.Greedy(ids, mask, settings: settings);
        foreach (var type in new[] { Transduce.Models.ComputeType.BFloat16, Transduce.Models.ComputeType.Int8 })
        {
            ((Transduce.Models.Transformer.TransformerEncoder)m.Model.Encoder).ComputeType = type;
            ((Transduce.Models.Transformer.TransformerDecoder)m.Model.Decoder).ComputeType = type;
            var ours = m.Greedy(ids, mask, settings: settings);
            int same = reference.Zip(ours).Sum(p => p.First.Zip(p.Second).TakeWhile(t => t.First == t.Second).Count());
            int total = reference.Sum(r => r.Length);
            Assert.True(same >= total / 2, $"{type}: {same} of {total} tokens agree before the first difference");
        }
    }
}
