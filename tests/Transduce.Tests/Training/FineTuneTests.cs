using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.IO;
using Transduce.Models;
using Transduce.Training;
using Transduce.Translation;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

/// <summary>
/// Fine-tuning (<c>RunConfig.Init</c>, <c>train --init</c>): a native checkpoint and the tiny OPUS-MT folder learn a few
/// new pairs, freezing keeps weights bit-identical, an interrupted fine-tuning run resumes bit-exactly, bad inits are one line.
/// </summary>
public sealed class FineTuneTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-finetune-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static string MarianFolder => Path.GetFullPath(Path.Combine(TestPaths.RepoRoot, "..", "shared", "testdata", "marian-tiny"));

    /// <summary>English → French pairs whose pieces the tiny OPUS-MT model's SentencePiece models have (no unknown piece).</summary>
    private static readonly SentencePair[] MarianPairs =
    [
        new("Call me.", "Appelle-moi."), new("Find Tom.", "Trouve Tom."), new("Tom knows.", "Tom sait."), new("I can wait.", "Je peux attendre."),
    ];

    /// <summary>The tiny native base model's sentences with their targets shuffled: what fine-tuning must learn instead.</summary>
    private static readonly SentencePair[] Swapped =
    [
        new("Go.", "Cours !"), new("Run!", "Va !"), new("Help!", "Attends !"), new("Wait!", "À l'aide !"),
    ];

    private static readonly Lazy<string> s_base = new(TrainBase);

    /// <summary>A tiny Transformer trained once on <see cref="TrainingRunTests.Pairs"/> (shared by the tests; read only).</summary>
    private static string TrainBase()
    {
        string path = Path.Combine(Path.GetTempPath(), "transduce-finetune-base-" + Guid.NewGuid().ToString("N"));
        var config = new RunConfig
        {
            Model = new ModelOptions { Architecture = "transformer", HiddenSize = 32, Layers = 1, Heads = 2, FfnSize = 64, Dropout = 0, TieEmbeddings = true },
            Training = new TrainingOptions { Epochs = 40, BatchSize = 4, LearningRate = 0.005, Seed = 5 },
        };
        using var run = new TrainingRun(config, path, TrainingRunTests.Pairs);
        run.Run();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(path, recursive: true); } catch (IOException) { } };
        return path;
    }

    private static RunConfig FineTune(string init, int epochs, double lr = 0.003, double dropout = 0, params FrozenPart[] freeze) => new()
    {
        Init = init,
        // A model section the init's architecture overrides: the run keeps the checkpoint's Transformer.
        Model = new ModelOptions { Architecture = "gru", HiddenSize = 8, Dropout = dropout },
        Training = new TrainingOptions { Epochs = epochs, BatchSize = 2, LearningRate = lr, Seed = 7, Freeze = freeze },
    };

    // Every name of the model, tied ones included (a checkpoint stores a tied weight under one name).
    private static Dictionary<string, byte[]> Weights(string checkpoint)
    {
        using var loaded = Checkpoint.Load(checkpoint);
        return loaded.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.contiguous().bytes.ToArray());
    }

    private static Dictionary<string, byte[]> Weights(Checkpoint checkpoint) =>
        checkpoint.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.contiguous().bytes.ToArray());

    [Fact]
    public void ANativeCheckpointFineTunedOnNewPairsLearnsThemAndKeepsItsArchitecture()
    {
        string run = Path.Combine(dir, "native");
        var messages = new List<string>();
        TrainingSummary summary;
        List<double> losses = [];
        using (var training = new TrainingRun(FineTune(s_base.Value, epochs: 40) with { Data = new DataOptions() }, run, Swapped))
        {
            training.Message += (_, m) => messages.Add(m);
            training.EpochCompleted += (_, e) => losses.Add(e.Loss);
            summary = training.Run();
        }
        Assert.True(losses[^1] < losses[0] / 4, $"loss went {losses[0]} → {losses[^1]}");
        Assert.Contains(messages, m => m.Contains("model and text sections are not used"));

        using var fineTuned = Checkpoint.Load(run);
        using var original = Checkpoint.Load(s_base.Value);
        Assert.Equal(original.ModelConfig, fineTuned.ModelConfig);
        Assert.Equal(original.TargetVocabulary.Tokens, fineTuned.TargetVocabulary.Tokens);
        Assert.Equal(s_base.Value, fineTuned.TrainingInfo["init"]);
        var pipeline = fineTuned.CreateTextPipeline();
        using var translator = new Translator(fineTuned, ownsCheckpoint: false);
        Assert.Equal(Swapped.Select(p => pipeline.Canonical(p.Target)), translator.Translate([.. Swapped.Select(p => p.Source)]));
    }

    [Fact]
    public void TheTinyOpusMtModelFineTunedOnAFewPairsTranslatesThemAndKeepsItsFinalLogitsBias()
    {
        string run = Path.Combine(dir, "marian");
        var losses = new List<double>();
        using (var training = new TrainingRun(FineTune(MarianFolder, epochs: 30), run, MarianPairs))
        {
            training.EpochCompleted += (_, e) => losses.Add(e.Loss);
            training.Run();
        }
        Assert.True(losses[^1] < losses[0] / 4, $"loss went {losses[0]} → {losses[^1]}");

        // The run directory is a checkpoint that remembers its family's encoding, and translates the pairs learnt.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, Checkpoint.ConfigFile)))!;
        Assert.Equal("marian", config["pair_encoding"]!.GetValue<string>());
        using var fineTuned = Checkpoint.Load(run);
        Assert.Equal("marian", fineTuned.PairEncoding.Name);
        using (var translator = new Translator(fineTuned, ownsCheckpoint: false))
            Assert.Equal(MarianPairs.Select(p => p.Target), translator.Translate([.. MarianPairs.Select(p => p.Source)]));

        // transformers keeps final_logits_bias (a buffer) fixed; so does fine-tuning here. The weights did move.
        using var original = Checkpoint.Load(MarianFolder);
        var before = Weights(original);
        var after = Weights(run);
        Assert.Equal(before["decoder.dense.bias"], after["decoder.dense.bias"]);
        Assert.NotEqual(before["decoder.blocks.0.ffn.dense1.weight"], after["decoder.blocks.0.ffn.dense1.weight"]);
    }

    [Fact]
    public void FreezingTheEncoderOfTheOpusMtModelKeepsItAndItsSharedEmbeddingBitIdentical()
    {
        string run = Path.Combine(dir, "frozen");
        using (var training = new TrainingRun(FineTune(MarianFolder, epochs: 3, freeze: FrozenPart.Encoder), run, MarianPairs))
            training.Run();
        using var original = Checkpoint.Load(MarianFolder);
        var before = Weights(original);
        var after = Weights(run);
        var encoder = before.Keys.Where(k => k.StartsWith("encoder.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(encoder);
        // The embedding is shared with the decoder and tied to the output layer: all of it stays.
        foreach (var name in encoder.Concat(["decoder.embedding.weight", "decoder.dense.weight", "decoder.dense.bias"]))
            Assert.True(before[name].AsSpan().SequenceEqual(after[name]), $"{name} changed");
        var decoderBlocks = before.Keys.Where(k => k.StartsWith("decoder.blocks.", StringComparison.Ordinal)).ToList();
        Assert.All(decoderBlocks.Where(k => k.EndsWith("weight", StringComparison.Ordinal) && !k.Contains("norm", StringComparison.Ordinal)),
            name => Assert.False(before[name].AsSpan().SequenceEqual(after[name]), $"{name} did not train"));
    }

    [Fact]
    public void FreezingTheEmbeddingsOfANativeModelKeepsThemAndTheTiedOutputLayerBitIdentical()
    {
        string run = Path.Combine(dir, "frozen-embeddings");
        using (var training = new TrainingRun(FineTune(s_base.Value, epochs: 3, freeze: FrozenPart.Embeddings), run, Swapped))
            training.Run();
        var before = Weights(s_base.Value);
        var after = Weights(run);
        foreach (var name in new[] { "encoder.embedding.weight", "decoder.embedding.weight", "decoder.dense.weight" })
            Assert.True(before[name].AsSpan().SequenceEqual(after[name]), $"{name} changed");
        Assert.False(before["encoder.blocks.0.ffn.dense1.weight"].AsSpan().SequenceEqual(after["encoder.blocks.0.ffn.dense1.weight"]));
    }

    [Theory]
    [InlineData("native")]
    [InlineData("marian")]
    public void AFineTuningRunInterruptedAndResumedEndsBitIdenticalToAnUninterruptedOne(string from)
    {
        bool marian = from == "marian";
        string init = marian ? MarianFolder : s_base.Value;
        var pairs = marian ? MarianPairs : Swapped;
        // Dropout draws random numbers (the native model's configuration keeps the base's 0, so use bf16 there instead).
        var config = FineTune(init, epochs: 4, freeze: FrozenPart.Embeddings);
        if (!marian) config = config with { Training = config.Training with { Precision = TrainingPrecision.BFloat16, SaveEverySteps = 3 } };
        string whole = Path.Combine(dir, "whole"), parts = Path.Combine(dir, "parts");
        using (var training = new TrainingRun(config, whole, pairs))
            Assert.Equal(8, training.Run().Updates);
        using (var first = new TrainingRun(config, parts, pairs))
        {
            using var stop = new CancellationTokenSource();
            first.Progress += (_, p) => { if (p.Step == 5) stop.Cancel(); };
            Assert.Equal(TrainingStop.Cancelled, first.Run(stop.Token).Stop);
        }
        using (var resumed = TrainingRun.Resume(parts, pairs))
            Assert.Equal(8, resumed.Run().Updates);
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, Checkpoint.WeightsFile)), File.ReadAllBytes(Path.Combine(parts, Checkpoint.WeightsFile)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, TrainingRun.OptimizerFile)), File.ReadAllBytes(Path.Combine(parts, TrainingRun.OptimizerFile)));
    }

    [Fact]
    public void BadInitsAreOneClearLine()
    {
        string data = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(data, string.Concat(MarianPairs.Select(p => $"{p.Source}\t{p.Target}\n")));
        string notAModel = Directory.CreateDirectory(Path.Combine(dir, "empty")).FullName;
        string garbage = Directory.CreateDirectory(Path.Combine(dir, "garbage")).FullName;
        File.WriteAllText(Path.Combine(garbage, "config.json"), "{ not json");
        string inside = Path.Combine(dir, "out", "best");
        Directory.CreateDirectory(inside);
        File.WriteAllText(Path.Combine(inside, "config.json"), "{}");
        foreach (var (init, expected) in new[]
        {
            (Path.Combine(dir, "missing"), "no such directory"),
            (data, "is a file"),
            (notAModel, "not a model — it has no config.json"),
            (garbage, "config.json: not valid JSON"),
            (inside, "is inside the run directory"),
        })
        {
            string output = init == inside ? Path.Combine(dir, "out") : Path.Combine(dir, "other");
            var r = Cli.CliTests.Run(null, "train", "--init", init, "--data", data, "--out", output, "--overwrite", "--epochs", "1");
            Assert.True(r.Code == 1, $"{init}: exit {r.Code}\n{r.Out}\n{r.Err}");
            var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("error: ", line);
            Assert.Contains(expected, line);
        }
        Assert.True(File.Exists(Path.Combine(inside, "config.json")), "a refused init inside --out must not be deleted by --overwrite");
    }

    [Fact]
    public void TheCliFineTunesTheOpusMtFolderAndTheRunDirectoryTranslates()
    {
        string data = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(data, string.Concat(MarianPairs.Select(p => $"{p.Source}\t{p.Target}\n")));
        string run = Path.Combine(dir, "cli");
        var trained = Cli.CliTests.Run(null, "train", "--init", MarianFolder, "--data", data, "--out", run, "--epochs", "30", "--batch-size", "2",
            "--lr", "0.003", "--schedule", "inverse-sqrt", "--warmup", "10", "--freeze", "embeddings", "--seed", "7");
        Assert.True(trained.Code == 0, trained.Err + trained.Out);
        Assert.Contains("freeze embeddings", trained.Out);
        var translated = Cli.CliTests.Run(null, "translate", "--model", run, "Call me.", "Tom knows.");
        Assert.True(translated.Code == 0, translated.Err);
        Assert.Equal(["Appelle-moi.", "Tom sait."], translated.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        // A run with --init refuses settings that only a new model would use.
        var refused = Cli.CliTests.Run(null, "train", "--init", MarianFolder, "--data", data, "--out", Path.Combine(dir, "x"), "--spm-model", data);
        Assert.Equal(1, refused.Code);
        Assert.Contains("'text.spm_model': a run with 'init'", refused.Err);
    }

    [Fact]
    public void AnUnknownPairEncodingInConfigJsonIsRefusedByName()
    {
        string copy = Directory.CreateDirectory(Path.Combine(dir, "copy")).FullName;
        foreach (var file in Directory.GetFiles(s_base.Value)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(copy, Checkpoint.ConfigFile)))!;
        config["pair_encoding"] = "klingon";
        File.WriteAllText(Path.Combine(copy, Checkpoint.ConfigFile), config.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(copy));
        Assert.Contains("config.json: unknown 'pair_encoding' 'klingon' (known: default, ", e.Message);
        Assert.Contains("marian", e.Message);
    }

    [Fact]
    public void InitAndFreezeAreKeysOfTheRunConfiguration()
    {
        var config = RunConfig.Parse("init: models/opus\ntraining:\n  freeze: [embeddings, encoder]\n");
        Assert.Equal("models/opus", config.Init);
        Assert.Equal([FrozenPart.Embeddings, FrozenPart.Encoder], config.Training.Freeze);
        Assert.Equal(config, RunConfig.Parse(config.ToYaml()));
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("training:\n  freeze: [decoder]\n", "run.yaml"));
        Assert.Contains("'training.freeze[0]' must be one of: embeddings, encoder", e.Message);
    }
}
