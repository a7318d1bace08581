using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Models.Marian;
using static TorchSharp.torch;

namespace Transduce.Tests.Marian;

/// <summary>
/// The user's path for OPUS-MT folders: text in, text out through <see cref="Translator"/> (tokenizer, converted
/// vocabulary, native checkpoint), checked against what transformers computed.
/// </summary>
public sealed class MarianConvertTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "transduce-marian-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static string Folder => Path.GetFullPath(Path.Combine(TestPaths.RepoRoot, "..", "shared", "testdata", "marian-tiny"));

    private static readonly Lazy<JsonElement> s_expected = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "expected.json"))).RootElement);

    private static string[] Sentences => s_expected.Value.GetProperty("sentences").EnumerateArray().Select(s => s.GetString()!).ToArray();

    private static long[][] Ints(string name) => s_expected.Value.GetProperty(name).EnumerateArray()
        .Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();

    private static Dictionary<string, int> MarianVocabulary() =>
        JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(Folder, "vocab.json")))!;

    /// <summary>As in <c>MarianParityTests.LoadAsGenerated</c>: expected.json was computed with the sinusoid tables ×4.</summary>
    private static Checkpoint ConvertAsGenerated()
    {
        var checkpoint = MarianConvert.ToCheckpoint(Folder);
        using var _ = no_grad();
        var state = checkpoint.Model.state_dict();
        foreach (var name in new[] { "encoder.positions.table", "decoder.positions.table" }) state[name].mul_(4);
        return checkpoint;
    }

    [Fact]
    public void SourceTextBecomesTransformersInputIds()
    {
        using var checkpoint = MarianConvert.ToCheckpoint(Folder);
        var pipeline = checkpoint.CreateTextPipeline();
        var marian = MarianVocabulary();
        var expected = Ints("input_ids");
        var sentences = Sentences;
        for (int i = 0; i < sentences.Length; i++)
        {
            // Ours: pieces → our ids → the Marian rows they were taken from; transformers: the ids up to its padding.
            var ours = pipeline.EncodeSource(sentences[i])
                .Select(id => id == checkpoint.SourceVocabulary.UnkId ? marian["<unk>"] : marian[checkpoint.SourceVocabulary[id]])
                .Append(marian["</s>"]).Select(x => (long)x);
            Assert.Equal(expected[i].TakeWhile(x => x != marian["<pad>"]), ours);
        }
    }

    [Theory]
    [InlineData(1, "greedy_ids")]
    [InlineData(4, "beam4_ids")]
    public void TranslatorOnTextReproducesGenerate(int beam, string field)
    {
        using var translator = new Translator(ConvertAsGenerated());
        var outputs = translator.TranslateTokens(Sentences, new TranslationOptions { Beam = beam, MaxNewTokens = 24 });
        var marian = MarianVocabulary();
        var expected = Ints(field);
        for (int i = 0; i < expected.Length; i++)
        {
            var want = expected[i].Skip(1).TakeWhile(x => x != marian["</s>"]).Select(x => (int)x);
            Assert.Equal(want, outputs[i].Select(p => marian[p]));
        }
    }

    [Fact]
    public void ConvertedCheckpointSavesAndLoadsAsANativeOne()
    {
        string output = Path.Combine(dir, "converted");
        var r = Cli.CliTests.Run(null, "convert", "--from", "marian", Folder, "--out", output);
        Assert.True(r.Code == 0, r.Err);
        foreach (var file in new[] { "config.json", "model.safetensors", "source.spm", "target.spm", "source.vocab.json", "target.vocab.json" })
            Assert.True(File.Exists(Path.Combine(output, file)), file);
        using var direct = Translator.Load(Folder);
        using var native = Translator.Load(output);
        var options = new TranslationOptions { Beam = 4, MaxNewTokens = 12 };
        Assert.Equal(direct.Translate(Sentences, options), native.Translate(Sentences, options));

        var bad = Cli.CliTests.Run(null, "translate", "--model", Path.Combine(dir, "nope"), "Hello");
        Assert.Equal(1, bad.Code);
    }
}
