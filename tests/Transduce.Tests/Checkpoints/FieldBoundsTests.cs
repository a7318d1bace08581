using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Tests.Cli;
using Transduce.Tests.Import.Marian;

namespace Transduce.Tests.Checkpoints;

/// <summary>A native checkpoint of the tiny Marian model, converted once for the class.</summary>
public sealed class NativeTinyCheckpoint : IDisposable
{
    private readonly TempDir dir = new();

    /// <summary>The checkpoint directory.</summary>
    public string Path { get; }

    public NativeTinyCheckpoint()
    {
        Path = dir.File("native");
        using var converted = Checkpoint.Load(MarianFolders.Shipped);
        converted.Save(Path);
    }

    public void Dispose() => dir.Dispose();
}

/// <summary>
/// Issue 25's probes: every id, size and count of a model folder (Marian, NLLB, T5 <c>config.json</c> and
/// <c>generation_config.json</c>) and of a native checkpoint's <c>generation</c> section is checked before use, and a bad
/// one is one line naming the file and the field — never a native abort, never hours of decoding.
/// </summary>
public sealed class FieldBoundsTests(NativeTinyCheckpoint native) : IClassFixture<NativeTinyCheckpoint>, IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    private static string FamilyFolder(string family) => family switch
    {
        "marian" => MarianFolders.Shipped,
        "nllb" => Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "M2M100", "testdata", "nllb-tiny"),
        "t5" => Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "T5", "testdata", "flan-t5-tiny"),
        _ => throw new ArgumentOutOfRangeException(nameof(family)),
    };

    /// <summary>A copy of <paramref name="source"/> (weights in one file) whose <paramref name="file"/> gets <paramref name="json"/>'s keys.</summary>
    private string Copy(string source, string file, string json, string? section = null)
    {
        string folder = dir.File(Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        foreach (var path in Directory.GetFiles(source))
            if (System.IO.Path.GetFileName(path) is var name && name is not ("expected.json" or "pytorch_model.bin"))
            {
                File.Copy(path, System.IO.Path.Combine(folder, name));
                File.SetAttributes(System.IO.Path.Combine(folder, name), FileAttributes.Normal);
            }
        // The T5 test folders share one spiece.model, kept beside them.
        string shared = System.IO.Path.Combine(source, "..", "spiece.model");
        if (File.Exists(shared)) File.Copy(shared, System.IO.Path.Combine(folder, "spiece.model"));
        string target = System.IO.Path.Combine(folder, file);
        var root = File.Exists(target) ? JsonNode.Parse(File.ReadAllText(target))!.AsObject() : [];
        var into = section is null ? root : root[section]!.AsObject();
        foreach (var (key, value) in JsonNode.Parse(json)!.AsObject()) into[key] = value?.DeepClone();
        File.WriteAllText(target, root.ToJsonString());
        return folder;
    }

    private static string Refusal(string folder)
    {
        var e = Record.Exception(() => Checkpoint.Load(folder).Dispose());
        Assert.True(e is InvalidDataException, $"{e?.GetType().Name}: {e?.Message}");
        Assert.DoesNotContain('\n', e!.Message);
        return e.Message;
    }

    private void Refused(string family, string file, string json, string expected)
    {
        string folder = Copy(FamilyFolder(family), file, json);
        string message = Refusal(folder);
        Assert.StartsWith(System.IO.Path.Combine(folder, file) + ": ", message);
        Assert.Contains(expected, message);
    }

    public static TheoryData<string, string, string, string> OutOfRangeIds()
    {
        var data = new TheoryData<string, string, string, string>();
        foreach (string family in new[] { "marian", "nllb", "t5" })
            foreach (string file in new[] { "config.json", "generation_config.json" })
            {
                data.Add(family, file, """{"decoder_start_token_id": 99999}""", "'decoder_start_token_id' 99999 is outside the vocabulary");
                data.Add(family, file, """{"decoder_start_token_id": -3}""", "'decoder_start_token_id' -3 is outside the vocabulary");
                data.Add(family, file, """{"pad_token_id": 99999}""", "'pad_token_id' 99999 is outside the vocabulary");
                data.Add(family, file, """{"forced_bos_token_id": 99999}""", "'forced_bos_token_id' 99999 is outside the vocabulary");
                data.Add(family, file, """{"eos_token_id": 99999}""", "'eos_token_id' 99999 is outside the vocabulary");
                data.Add(family, file, """{"bad_words_ids": [[3], [4, 99999]]}""", "'bad_words_ids': id 99999 is outside the vocabulary");
                data.Add(family, file, """{"num_beams": 1024, "max_length": 1048576}""", "'num_beams' must be between 1 and 256 (got 1024)");
                data.Add(family, file, """{"max_length": 1073741824}""", "'max_length' 1073741824 is larger than any supported model");
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(OutOfRangeIds))]
    public void AnIdOrCountOutsideItsRangeIsNamedInEitherFile(string family, string file, string json, string expected) =>
        Refused(family, file, json, expected);

    [Theory]
    [InlineData("marian", 256)]
    [InlineData("nllb", 64)]
    public void ALengthBeyondThePositionsDecodesNoFurtherThanThePositions(string family, int positions)
    {
        // transformers accepts such a folder; decoding stops where the positions end (with the beam bounded, the
        // probe's num_beams 1024 × max_length 1,048,576 is refused above).
        string folder = Copy(FamilyFolder(family), "generation_config.json", """{"max_length": 1048576}""");
        using var translator = Translation.Translator.Load(folder);
        Assert.Equal(positions - 1, translator.MaxOutputLength(5));
    }

    [Theory]
    [InlineData("marian")]
    [InlineData("nllb")]
    public void ASinusoidTableLargerThanTheWeightsIsRefusedBeforeItIsComputed(string family)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Refused(family, "config.json", """{"max_position_embeddings": 1048576}""", "the sinusoid tables would hold");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}"); // the table was never built
    }

    [Fact]
    public void PositionsTheWeightsJustifyStillLoad()
    {
        // 4,096 positions × 64 wide × 2 tables: under the floor, so a small model may have them.
        string folder = Copy(FamilyFolder("marian"), "config.json", """{"max_position_embeddings": 4096}""");
        using var checkpoint = Checkpoint.Load(folder);
        Assert.Equal(4096, checkpoint.ModelConfig.MaxSequenceLength);
    }

    [Fact]
    public void ABeamAtTheBoundIsAccepted()
    {
        string folder = Copy(FamilyFolder("marian"), "generation_config.json", $$"""{"num_beams": {{BeamSearchOptions.MaxBeamSize}}}""");
        using var checkpoint = Checkpoint.Load(folder);
        Assert.Equal(BeamSearchOptions.MaxBeamSize, checkpoint.Generation.NumBeams);
    }

    [Theory]
    [InlineData("""{"num_beams": 2147483647}""", "'generation.num_beams' must be between 1 and 256 (got 2147483647)")]
    [InlineData("""{"num_beams": 0}""", "'generation.num_beams' must be between 1 and 256 (got 0)")]
    [InlineData("""{"banned_tokens": null}""", "'generation.banned_tokens' must be a list of token ids")]
    [InlineData("""{"banned_tokens": "x"}""", "'generation.banned_tokens' has a value of the wrong type")]
    [InlineData("""{"banned_tokens": [3, 99999]}""", "'generation.banned_tokens' has id 99999, outside the target vocabulary")]
    [InlineData("""{"banned_tokens": [-1]}""", "'generation.banned_tokens' has id -1")]
    [InlineData("""{"banned_sequences": [[]]}""", "'generation.banned_sequences' must hold non-empty lists")]
    [InlineData("""{"banned_sequences": [[4, 99999]]}""", "'generation.banned_sequences' has id 99999")]
    [InlineData("""{"forced_bos_token_id": -3}""", "'generation.forced_bos_token_id' has id -3")]
    [InlineData("""{"max_new_tokens": 0}""", "'generation.max_new_tokens' must be between 1 and")]
    [InlineData("""{"min_length": -1}""", "'generation.min_length' must be between 0 and")]
    [InlineData("""{"no_repeat_ngram_size": 2000000}""", "'generation.no_repeat_ngram_size' must be between 0 and")]
    [InlineData("""{"repetition_penalty": -1}""", "'generation.repetition_penalty' must be a positive finite number")]
    [InlineData("""{"length_normalization": "bogus"}""", "'generation.length_normalization' has a value of the wrong type or an unknown name")]
    [InlineData("""{"length_normalization": 99}""", "'generation.length_normalization' is not a known length normalisation")]
    [InlineData("""{"early_stopping": 7}""", "'generation.early_stopping' is not a known stopping rule")]
    public void ANativeCheckpointsGenerationSectionIsChecked(string json, string expected)
    {
        string folder = Copy(native.Path, Checkpoint.ConfigFile, json, section: "generation");
        string message = Refusal(folder);
        Assert.StartsWith(System.IO.Path.Combine(folder, Checkpoint.ConfigFile) + ": ", message);
        Assert.Contains(expected, message);
        Assert.DoesNotContain("Parameter", message);
    }

    [Fact]
    public void ANativeCheckpointsOwnGenerationLoads()
    {
        using var checkpoint = Checkpoint.Load(native.Path);
        Assert.Equal(20, checkpoint.Generation.MaxNewTokens);
    }

    [Fact]
    public void TheCommandLineRefusesEachProbeInOneLine()
    {
        string hostile = Copy(native.Path, Checkpoint.ConfigFile, """{"num_beams": 2147483647}""", section: "generation");
        var runs = new (string[] Args, string Expected)[]
        {
            (["translate", "--model", hostile, "Hello."], "'generation.num_beams' must be between 1 and 256"),
            (["translate", "--model", Copy(FamilyFolder("marian"), "config.json", """{"decoder_start_token_id": -3}"""), "Hello."], "'decoder_start_token_id' -3"),
            (["translate", "--model", native.Path, "--beam", "1e30", "Hello."], "--beam: '1e30' is not a whole number"),
            (["translate", "--model", native.Path, "--n-best", "100000", "Hello."], "--n-best: 100000 is out of range (from 1 to 256)"),
        };
        foreach (var (args, expected) in runs)
        {
            var r = CliTests.Run(null, args);
            // A bad model is a failure (exit 1, one line); a bad flag value a usage error (exit 2, the line and the usage).
            bool usage = args.Contains("--beam") || args.Contains("--n-best");
            Assert.True(r.Code == (usage ? 2 : 1), $"{string.Join(' ', args)}: exit {r.Code}\n{r.Err}");
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == (usage ? 3 : 1), $"{string.Join(' ', args)}: got:\n{r.Err}");
            Assert.Contains(expected, lines[0]);
        }
    }
}
