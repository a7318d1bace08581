using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.IO;
using Transduce.Models;
using Transduce.Tests.Import.M2M100;
using Transduce.Tests.Import.T5;
using Transduce.Training;

namespace Transduce.Tests.Training;

/// <summary>
/// Fine-tuning the tiny NLLB and T5 folders (<c>train --init</c>) with their families' pair encodings: the language codes
/// of the run's data section (NLLB), a task prefix (T5); the loss falls, <c>translate</c> with the same languages or prefix
/// writes the pairs learnt, the run directory reloads with its encoding, the output bias stays fixed; a missing or unknown
/// language is one line.
/// </summary>
public sealed class FineTuneFamilyTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-finetune-family-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly SentencePair[] Pairs =
    [
        new("The house is wonderful.", "La maison est belle."), new("Where is the station?", "Où est la gare ?"),
        new("I like the small garden.", "J'aime le petit jardin."), new("The weather was cold.", "Il faisait froid."),
    ];

    /// <summary>Short targets for the tiny T5 (16 dimensions reading characters learns long ones slowly).</summary>
    private static readonly SentencePair[] ShortPairs =
    [
        new("The house is wonderful.", "La maison."), new("Where is the station?", "La gare ?"),
        new("I like the small garden.", "Le jardin."), new("The weather was cold.", "Le temps est froid."),
    ];

    private static RunConfig FineTune(string init, DataOptions data, int epochs, double lr) => new()
    {
        Init = init,
        Data = data,
        Training = new TrainingOptions { Epochs = epochs, BatchSize = 2, LearningRate = lr, Seed = 7 },
    };

    private static byte[] OutputBias(Checkpoint checkpoint) => checkpoint.Model.state_dict()["decoder.dense.bias"].contiguous().bytes.ToArray();

    private static byte[] OutputBias(string run)
    {
        var tensors = Safetensors.Load(Path.Combine(run, Checkpoint.WeightsFile), out _);
        try
        {
            return tensors["decoder.dense.bias"].bytes.ToArray();
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData("nllb")]
    [InlineData("t5")]
    public void ATinyPretrainedFolderFineTunedOnFourPairsTranslatesThem(string family)
    {
        using var t5 = new TempDir();
        bool nllb = family == "nllb";
        string folder = nllb ? M2M100ParityTests.Folder : T5ConvertTests.Assemble("t5-tiny", t5);
        const string prefix = "fr: "; // short: the tiny T5 reads characters, and 16 dimensions tell few long sources apart
        var data = nllb ? new DataOptions { SourceLanguage = "eng_Latn", TargetLanguage = "fra_Latn" } : new DataOptions { SourcePrefix = prefix };
        var pairs = nllb ? Pairs : ShortPairs;
        string run = Path.Combine(dir, family);
        // Validation on the pairs themselves decodes with the run's languages (NLLB) or prefix (T5), as they were encoded.
        string valid = Path.Combine(dir, family + "-valid.tsv");
        File.WriteAllText(valid, string.Concat(pairs.Select(p => $"{p.Source}\t{p.Target}\n")));
        var validations = new List<ValidationResult>();
        var losses = new List<double>();
        var messages = new List<string>();
        using (var training = new TrainingRun(FineTune(folder, data, epochs: nllb ? 100 : 200, lr: nllb ? 0.01 : 0.005) with
               { Validation = new ValidationOptions { File = valid, Every = 50 } }, run, pairs))
        {
            training.Validated += (_, v) => validations.Add(v);
            training.EpochCompleted += (_, e) => losses.Add(e.Loss);
            training.Message += (_, m) => messages.Add(m);
            training.Run();
        }
        Assert.True(losses[^1] < losses[0] / 4, $"loss went {losses[0]} → {losses[^1]}");
        Assert.True(validations.Count >= 2 && validations[^1].Loss < validations[0].Loss && validations[^1].Bleu > 50,
            $"validations: {string.Join(", ", validations)}");
        string encoding = nllb ? "m2m100" : "t5";
        Assert.Contains(messages, m => m.Contains($"kept fixed as the {encoding} family trains: decoder.dense.bias"));

        // The run directory is a checkpoint that keeps its family's encoding and (NLLB) its languages.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, Checkpoint.ConfigFile)))!;
        Assert.Equal(encoding, config["pair_encoding"]!.GetValue<string>());
        IReadOnlyList<string> expected;
        using (var fineTuned = Checkpoint.Load(run))
        {
            // Targets the tiny SentencePiece models write without an unknown piece (decoding never writes <unk>).
            var pipeline = fineTuned.CreateTextPipeline();
            Assert.All(pairs, p => Assert.DoesNotContain(fineTuned.TargetVocabulary.UnkId, pipeline.EncodeTarget(p.Target)));
            expected = [.. pairs.Select(p => p.Target)];
            Assert.Equal(encoding, fineTuned.PairEncoding.Name);
            Assert.Equal(nllb, fineTuned.Languages is not null);
            using var original = Checkpoint.Load(folder);
            Assert.Equal(encoding, original.PairEncoding.Name);
            // The output bias (its <bos> row −∞) is no parameter in transformers: it stays as converted.
            Assert.Equal(OutputBias(original), OutputBias(run));
        }

        string[] how = nllb ? ["--source-lang", "eng_Latn", "--target-lang", "fra_Latn"] : ["--prefix", prefix];
        var translated = Cli.CliTests.Run(null, ["translate", "--model", run, "--max-new-tokens", "64", .. how, .. pairs.Select(p => p.Source)]);
        Assert.True(translated.Code == 0, translated.Err);
        Assert.Equal(expected, translated.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void ANllbRunWithoutOrWithAnUnknownLanguageIsOneLine()
    {
        string data = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(data, string.Concat(Pairs.Select(p => $"{p.Source}\t{p.Target}\n")));
        foreach (var (flags, expected) in new[]
        {
            (new[] { "--target-language", "fra_Latn" }, "'data.source_language' (--source-language): fine-tuning a multilingual model needs the source language's code (e.g. "),
            (new[] { "--source-language", "eng_Latn", "--target-language", "fr" }, "'data.target_language' (--target-language): unknown language code 'fr' (close: fra_Latn"),
        })
        {
            var r = Cli.CliTests.Run(null, ["train", "--init", M2M100ParityTests.Folder, "--data", data, "--out", Path.Combine(dir, "out"), "--epochs", "1", .. flags]);
            Assert.True(r.Code == 1, $"exit {r.Code}\n{r.Out}\n{r.Err}");
            var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("error: ", line);
            Assert.Contains(expected, line);
        }
    }

    [Fact]
    public void TheSourcePrefixIsAKeyOfTheDataSectionAndATrainFlag()
    {
        var config = RunConfig.Parse("data:\n  source_prefix: 'translate English to French: '\n");
        Assert.Equal("translate English to French: ", config.Data.SourcePrefix);
        Assert.Equal(config, RunConfig.Parse(config.ToYaml()));
    }
}
