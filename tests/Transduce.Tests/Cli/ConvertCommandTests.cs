using Transduce.Checkpoints;
using Transduce.Models;
using Transduce.Tests.Import.M2M100;
using Transduce.Tests.Import.T5;
using Transduce.Translation;

namespace Transduce.Tests.Cli;

/// <summary>
/// <c>convert --from hf</c>: every Hugging Face family <c>Checkpoint.Load</c> reads (MarianMT, NLLB, T5) converts to a
/// native checkpoint that reloads and translates as the folder does; <c>marian</c> is the same; other folders are one line.
/// </summary>
public sealed class ConvertCommandTests
{
    private static readonly string[] Sentences = ["Hello, how are you?", "The house is wonderful.", "Where is the station?"];

    public static TheoryData<string, string> Families => new()
    {
        { "marian", "hf" }, { "marian", "marian" }, { "nllb", "hf" }, { "t5", "hf" },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void AHuggingFaceFolderConvertsReloadsAndTranslatesAsTheFolderDoes(string family, string from)
    {
        using var temp = new TempDir();
        using var t5 = new TempDir();
        string folder = family switch
        {
            "marian" => Path.GetFullPath(Path.Combine(TestPaths.RepoRoot, "..", "shared", "testdata", "marian-tiny")),
            "nllb" => M2M100ParityTests.Folder,
            _ => T5ConvertTests.Assemble("t5-tiny", t5),
        };
        var options = family == "nllb"
            ? new TranslationOptions { SourceLanguage = "eng_Latn", TargetLanguage = "fra_Latn", Beam = 2, MaxNewTokens = 12 }
            : new TranslationOptions { Beam = 2, MaxNewTokens = 12 };
        string output = Path.Combine(temp.Path, "converted");
        var r = CliTests.Run(null, "convert", "--from", from, folder, "--out", output, "--compute-type", "bfloat16");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"({family})", r.Out);

        using var native = Checkpoint.Load(output);
        Assert.Equal(family, native.TrainingInfo["converted_from"]);
        Assert.Equal(ComputeType.BFloat16, native.Generation.ComputeType);
        using var direct = Translator.Load(folder);
        using var reloaded = new Translator(native, ownsCheckpoint: false);
        var fromFolder = direct.Translate(Sentences, options with { ComputeType = ComputeType.BFloat16 });
        Assert.Contains(fromFolder, s => s.Length > 0);
        Assert.Equal(fromFolder, reloaded.Translate(Sentences, options));
    }

    [Fact]
    public void AFolderNoFamilyRecognisesIsOneLine()
    {
        using var temp = new TempDir();
        string native = Path.Combine(temp.Path, "native");
        Assert.Equal(0, CliTests.Run(null, "convert", "--from", "hf", M2M100ParityTests.Folder, "--out", native).Code);
        string empty = Directory.CreateDirectory(Path.Combine(temp.Path, "empty")).FullName;
        foreach (var (folder, expected) in new[]
        {
            (native, "config.json: not a model folder of a known format ("),
            (empty, "no config.json, not a Hugging Face model folder"),
            (Path.Combine(temp.Path, "missing"), "no such directory"),
        })
        {
            var r = CliTests.Run(null, "convert", "--from", "hf", folder, "--out", Path.Combine(temp.Path, "out"));
            Assert.Equal(1, r.Code);
            var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("error: ", line);
            Assert.Contains(expected, line);
        }
        Assert.False(Directory.Exists(Path.Combine(temp.Path, "out")));
    }
}
