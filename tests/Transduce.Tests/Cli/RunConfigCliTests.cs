using System.Text.Json.Nodes;

namespace Transduce.Tests.Cli;

/// <summary><c>train --config</c>, <c>--dump-config</c>, flags over files, and what <c>translate</c>/<c>evaluate</c> say about a run directory.</summary>
public sealed class RunConfigCliTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-config-cli-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string Data()
    {
        string path = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(path, "Go.\tVa !\nI lost.\tJ'ai perdu.\nI'm home.\tJe suis chez moi.\nThank you!\tMerci !\n");
        return path;
    }

    [Fact]
    public void AYamlConfigIsTheSameRunAsItsFlags()
    {
        string data = Data();
        string byFlags = Path.Combine(dir, "flags");
        var flags = CliTests.Run(null, "train", "--data", data, "--out", byFlags, "--model", "transformer", "--hidden", "16", "--heads", "2",
            "--ffn", "32", "--layers", "1", "--pre-norm", "--dropout", "0.1", "--epochs", "5", "--batch-size", "2", "--lr", "0.005",
            "--schedule", "inverse-sqrt", "--warmup", "3", "--label-smoothing", "0.1", "--seed", "7", "--threads", "1", "--max-tokens", "64",
            "--valid", data, "--keep-last", "2");
        Assert.True(flags.Code == 0, flags.Err + flags.Out);

        string yaml = Path.Combine(dir, "run.yaml");
        File.WriteAllText(yaml, $"""
            # the same run, written down
            model:
              architecture: transformer
              hidden_size: 16
              heads: 2
              ffn_size: 32
              layers: 1
              pre_norm: true
              dropout: 0.1
            training:
              epochs: 5
              batch_size: 2
              learning_rate: 0.005
              schedule: inverse-sqrt
              warmup_steps: 3
              label_smoothing: 0.1
              seed: 7
              threads: 1
              max_tokens: 64
              keep_last: 2
            validation:
              file: {data}
            data:
              train: {data}
            """);
        string byFile = Path.Combine(dir, "file");
        var file = CliTests.Run(null, "train", "--config", yaml, "--out", byFile);
        Assert.True(file.Code == 0, file.Err + file.Out);

        Assert.Equal(File.ReadAllText(Path.Combine(byFlags, "train.json")), File.ReadAllText(Path.Combine(byFile, "train.json")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(byFlags, "model.safetensors")), File.ReadAllBytes(Path.Combine(byFile, "model.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(byFlags, "best", "model.safetensors")), File.ReadAllBytes(Path.Combine(byFile, "best", "model.safetensors")));

        // Flags override the file.
        var dumped = CliTests.Run(null, "train", "--config", yaml, "--epochs", "9", "--dump-config", "json");
        Assert.True(dumped.Code == 0, dumped.Err);
        var json = JsonNode.Parse(dumped.Out)!;
        Assert.Equal(9, json["training"]!["epochs"]!.GetValue<int>());
        Assert.Equal(16, json["model"]!["hidden_size"]!.GetValue<int>());
    }

    [Fact]
    public void DumpConfigRoundTripsAndATypoIsOneLineNamingKeyAndFile()
    {
        var first = CliTests.Run(null, "train", "--preset", "transformer-base-cpu", "--hidden", "128", "--time-limit", "30", "--dump-config");
        Assert.True(first.Code == 0, first.Err);
        Assert.Contains("hidden_size: 128", first.Out);
        Assert.Contains("time_limit: 30m", first.Out);
        string yaml = Path.Combine(dir, "dumped.yaml");
        File.WriteAllText(yaml, first.Out);
        var second = CliTests.Run(null, "train", "--config", yaml, "--dump-config");
        Assert.True(second.Code == 0, second.Err);
        Assert.Equal(first.Out, second.Out);

        File.WriteAllText(yaml, first.Out.Replace("  label_smoothing:", "  label_smothing:"));
        var typo = CliTests.Run(null, "train", "--config", yaml, "--out", Path.Combine(dir, "never"));
        Assert.Equal(1, typo.Code);
        string line = Assert.Single(typo.Err.TrimEnd('\n').Split('\n'));
        Assert.Matches($@"^error: {System.Text.RegularExpressions.Regex.Escape(yaml)}:\d+: unknown key 'training.label_smothing' \(did you mean 'label_smoothing'\?", line);
        Assert.False(Directory.Exists(Path.Combine(dir, "never")));
    }

    [Fact]
    public void TranslateAndEvaluateSayWhichWeightsTheyUse()
    {
        string data = Data();
        string run = Path.Combine(dir, "run");
        var train = CliTests.Run(null, "train", "--data", data, "--valid", data, "--out", run, "--embed", "16", "--hidden", "32", "--layers", "1",
            "--dropout", "0", "--epochs", "30", "--batch-size", "2", "--lr", "0.01", "--seed", "3", "--valid-every", "25");
        Assert.True(train.Code == 0, train.Err + train.Out);
        Assert.Contains("validation of update 25:", train.Out);
        Assert.Contains("validation of the final weights (update 60):", train.Out);
        Assert.Matches(@"best model \(bleu\): .*best = (update (25|50)|the final weights \(update 60\)), valid BLEU", train.Out);

        var last = CliTests.Run(null, "translate", "--model", run, "Go.");
        Assert.Equal(0, last.Code);
        Assert.Contains("the last weights of the run (update 60); the best validated model is", last.Err);
        var best = CliTests.Run(null, "evaluate", "--model", Path.Combine(run, "best"), "--test", data);
        Assert.Equal(0, best.Code);
        Assert.Contains("the best validated weights of their run", best.Err);
    }

    [Fact]
    public void ARunDirectoryOfAnEarlierVersionStillResumes()
    {
        string data = Data();
        string run = Path.Combine(dir, "old");
        var train = CliTests.Run(null, "train", "--data", data, "--out", run, "--embed", "16", "--hidden", "32", "--layers", "1",
            "--epochs", "2", "--batch-size", "2", "--seed", "3", "--max-updates", "3");
        Assert.True(train.Code == 0, train.Err + train.Out);
        // train.json as the flat settings earlier versions wrote, and no corpus fingerprint in trainer.json.
        File.WriteAllText(Path.Combine(run, "train.json"), $$"""
            {
              "data": "{{data}}", "data_target": null, "out": "{{run}}", "preset": "custom", "architecture": "gru",
              "embedding": 16, "hidden": 32, "layers": 1, "heads": 4, "ffn": 64, "activation": "relu", "pre_norm": false, "tie": false,
              "share": false, "dropout": 0.2, "max_steps": null, "train_pairs": null, "vocabulary_pairs": null, "min_frequency": 1,
              "normalizer": "d2l", "tokenizer": "word", "bpe_vocab": 8000, "threads": null, "skip_invalid": false,
              "options": { "epochs": 2, "batch_size": 2, "learning_rate": 0.005, "gradient_clip": 1, "label_smoothing": 0, "seed": 3,
                "bucketed": false, "max_tokens": null, "schedule": "constant", "warmup_steps": 4000, "accumulate_steps": 1,
                "save_every_steps": null, "time_limit": "00:10:00", "keep_freed_memory": true },
              "valid": null, "valid_every": null, "valid_max": null, "keep_best": "bleu", "patience": null, "keep_last": null,
              "source_language": null, "target_language": null
            }
            """);
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "trainer.json")))!.AsObject();
        state.Remove("corpus");
        File.WriteAllText(Path.Combine(run, "trainer.json"), state.ToJsonString());

        var resumed = CliTests.Run(null, "train", "--resume", run);
        Assert.True(resumed.Code == 0, resumed.Err + resumed.Out);
        Assert.Contains("resume", resumed.Out);
        var settings = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "train.json")))!;
        Assert.Equal("10m", settings["training"]!["time_limit"]!.GetValue<string>());
        Assert.Equal(4, JsonNode.Parse(File.ReadAllText(Path.Combine(run, "trainer.json")))!["position"]!["step"]!.GetValue<int>());

        File.WriteAllText(Path.Combine(run, "train.json"), "{ \"architecture\": \"gru\", \"options\": { \"epochs\": \"two\" } }");
        var broken = CliTests.Run(null, "train", "--resume", run);
        Assert.Equal(1, broken.Code);
        Assert.Contains("train.json", broken.Err);
        Assert.Contains("training.epochs", broken.Err);
    }

    [Fact]
    public void ResumeOnAChangedCorpusFileIsAClearError()
    {
        string data = Data();
        string run = Path.Combine(dir, "changed");
        var train = CliTests.Run(null, "train", "--data", data, "--out", run, "--embed", "8", "--hidden", "8", "--layers", "1", "--epochs", "1");
        Assert.True(train.Code == 0, train.Err + train.Out);
        File.AppendAllText(data, "Hello.\tBonjour.\n");
        var resumed = CliTests.Run(null, "train", "--resume", run);
        Assert.Equal(1, resumed.Code);
        Assert.Contains("the corpus is not the one this run started with", resumed.Err);
        Assert.DoesNotContain("   at ", resumed.Err);
    }
}
