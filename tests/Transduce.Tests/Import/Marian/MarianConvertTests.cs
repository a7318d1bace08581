using System.Text.Json;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Import.Marian;
using static TorchSharp.torch;

namespace Transduce.Tests.Import.Marian;

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

    /// <summary>
    /// The folder converted, with beam search stopping as <c>early_stopping=True</c> does: expected.json's beam outputs
    /// were made that way, while the folder itself (no <c>early_stopping</c> key) asks for transformers' default, False.
    /// </summary>
    private static Checkpoint ConvertAsExpected()
    {
        var c = MarianConvert.ToCheckpoint(Folder);
        Assert.Equal(EarlyStopping.Heuristic, c.Generation.EarlyStopping);
        return new Checkpoint
        {
            Model = c.Model, ModelConfig = c.ModelConfig, TextConfig = c.TextConfig, SourceVocabulary = c.SourceVocabulary,
            TargetVocabulary = c.TargetVocabulary, SentencePiece = c.SentencePiece, TrainingInfo = c.TrainingInfo,
            Generation = c.Generation with { EarlyStopping = EarlyStopping.WhenFull },
        };
    }

    /// <summary>What transformers' <c>batch_decode(skip_special_tokens=True)</c> printed: the target model's decoding with any <c>▁</c> left made a space, ends stripped.</summary>
    private static string[] TransformersText(string field) => s_expected.Value.GetProperty(field).EnumerateArray()
        .Select(t => t.GetString()!.Replace('\u2581', ' ').Trim(' ')).ToArray();

    [Theory]
    [InlineData(1, "greedy_text")]
    [InlineData(4, "beam4_text")]
    public void TranslatorPrintsWhatTransformersDecodes(int beam, string field)
    {
        using var translator = new Translator(ConvertAsExpected());
        var texts = translator.Translate(Sentences, new TranslationOptions { Beam = beam, MaxNewTokens = 24 });
        var expected = TransformersText(field);
        Assert.Contains(s_expected.Value.GetProperty(field).EnumerateArray(), t => t.GetString()!.Contains('\u2581')); // the case that matters
        Assert.Equal(expected, texts);
    }

    [Fact]
    public void TranslateCommandOnTheFolderPrintsWhatGeneratePrints()
    {
        // generation_config.json has no num_beams: generate() and translate are greedy by default.
        var r = Cli.CliTests.Run(string.Join('\n', Sentences) + "\n", "translate", "--model", Folder, "--max-new-tokens", "24");
        Assert.True(r.Code == 0, r.Err);
        // An empty input line gives an empty output line (generate() would translate the empty string; the library's
        // Translator still does, as the test above checks).
        var expected = TransformersText("greedy_text").Zip(Sentences, (text, source) => string.IsNullOrWhiteSpace(source) ? "" : text);
        Assert.Contains(Sentences, string.IsNullOrWhiteSpace);   // the case that matters
        Assert.Equal(expected, r.Out.Split('\n')[..^1]);
    }

    [Fact]
    public void FolderDefaultsAreThoseOfGenerate()
    {
        // A published OPUS-MT generation_config.json: beam 4, max_length 512, pad banned, no early_stopping.
        string copy = Path.Combine(dir, "opus-like");
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(Folder)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        File.SetAttributes(Path.Combine(copy, "generation_config.json"), FileAttributes.Normal);
        File.WriteAllText(Path.Combine(copy, "generation_config.json"),
            """{"bad_words_ids": [[1074]], "decoder_start_token_id": 1074, "eos_token_id": 0, "forced_eos_token_id": 0, "max_length": 512, "num_beams": 4, "pad_token_id": 1074}""");
        using var translator = Translator.Load(copy);
        Assert.Equal(4, translator.DefaultOptions.Beam);
        Assert.Equal(511, translator.DefaultOptions.MaxNewTokens);
        Assert.Equal(EarlyStopping.Heuristic, translator.Checkpoint.Generation.EarlyStopping);
        Assert.NotEmpty(translator.Checkpoint.Generation.BannedTokens);
        File.WriteAllText(Path.Combine(copy, "generation_config.json"),
            """{"decoder_start_token_id": 1074, "eos_token_id": 0, "pad_token_id": 1074, "num_beams": 6, "early_stopping": "never"}""");
        using var never = Translator.Load(copy);
        // No max_length: transformers 5 generates 20 new tokens (max_length = 20 + the start token, within the positions).
        Assert.Equal((6, EarlyStopping.Never, 20), (never.DefaultOptions.Beam, never.Checkpoint.Generation.EarlyStopping, never.DefaultOptions.MaxNewTokens));
    }

    [Fact]
    public void AFolderWithOnlyPyTorchWeightsServes()
    {
        string copy = Path.Combine(dir, "bin-only");
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(Folder))
            if (Path.GetFileName(file) is not ("model.safetensors" or "expected.json")) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        using var translator = Translator.Load(copy);
        var info = Transduce.Serving.ModelInfo.From(translator.Checkpoint, copy);
        using var sha = System.Security.Cryptography.SHA256.Create();
        Assert.Equal(Convert.ToHexStringLower(sha.ComputeHash(File.ReadAllBytes(Path.Combine(copy, "pytorch_model.bin"))))[..16], info.Id);
        using var direct = Translator.Load(Folder);
        var options = new TranslationOptions { MaxNewTokens = 12 };
        Assert.Equal(direct.Translate(Sentences, options), translator.Translate(Sentences, options));
    }

    [Theory]
    [InlineData(1, "greedy_ids", "auto", 64)]
    [InlineData(4, "beam4_ids", "auto", 64)]
    [InlineData(1, "greedy_ids", "auto", 1)]        // one sentence at a time: the managed row step
    [InlineData(1, "greedy_ids", "modules", 64)]
    [InlineData(4, "beam4_ids", "modules", 64)]
    [InlineData(1, "greedy_ids", "no-row-step", 1)]
    [InlineData(1, "greedy_ids", "no-onednn", 64)]
    [InlineData(1, "greedy_ids", "no-onednn", 1)]
    [InlineData(4, "beam4_ids", "no-onednn", 64)]
    public void TranslatorOnTextReproducesGenerate(int beam, string field, string kernels, int batch)
    {
        using var translator = new Translator(ConvertAsExpected());
        var outputs = translator.TranslateTokens(Sentences,
            new TranslationOptions { Beam = beam, MaxNewTokens = 24, Kernels = Transduce.Models.DecodingKernels.Parse(kernels), BatchSize = batch });
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

    [Theory]
    [InlineData("cut", "the file ends after")]
    [InlineData("flipped", "not a SentencePiece model protobuf")]
    public void CorruptSentencePieceModelIsOneLineNamingItsPath(string damage, string problem)
    {
        string copy = Path.Combine(dir, "corrupt-spm-" + damage);
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(Folder)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)), overwrite: true);
        byte[] spm = File.ReadAllBytes(Path.Combine(Folder, "target.spm"));
        if (damage == "cut")
        {
            // Cut right after a piece: the protobuf still parses, with a handful of pieces and no settings.
            int end = 0;
            while (end < spm.Length && spm[end] == 0x0A && end + 2 + spm[end + 1] <= 300) end += 2 + spm[end + 1];
            spm = spm[..end];
        }
        else
        {
            for (int i = 50; i < spm.Length; i += 97) spm[i] ^= 0x5A;
        }
        File.WriteAllBytes(Path.Combine(copy, "target.spm"), spm);

        var r = Cli.CliTests.Run(null, "translate", "--model", copy, "Hello");
        Assert.Equal(1, r.Code);
        string line = r.Err.Trim();
        Assert.DoesNotContain('\n', line);
        Assert.Contains(Path.Combine(copy, "target.spm"), line);
        Assert.Contains(problem, line);
    }

    [Theory]
    [InlineData("config.json")]
    [InlineData("vocab.json")]
    [InlineData("generation_config.json")]
    [InlineData("tokenizer_config.json")]
    public void InvalidUtf8InAJsonFileIsOneLineNamingFileAndOffset(string file)
    {
        // Read leniently, the bytes would become U+FFFD and a key or a piece would silently be another one.
        string copy = Path.Combine(dir, "utf8-" + file);
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(Folder)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)), overwrite: true);
        byte[] json = File.ReadAllBytes(Path.Combine(Folder, file));
        int at = Array.IndexOf(json, (byte)'"', 10) + 1;   // inside the second key
        File.WriteAllBytes(Path.Combine(copy, file), [.. json[..at], 0xFF, 0xFE, .. json[at..]]);

        var r = Cli.CliTests.Run(null, "translate", "--model", copy, "Hello");
        Assert.Equal(1, r.Code);
        string line = r.Err.Trim();
        Assert.DoesNotContain('\n', line);
        Assert.Contains($"{file}: not valid UTF-8 (byte 0xFF at offset {at})", line);
    }
}
