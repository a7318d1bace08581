using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Transduce.Tests.Cli;

/// <summary>Runs the real <c>transduce</c> program as a child process, the way a user does.</summary>
public sealed class CliTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "transduce-cli-" + Guid.NewGuid().ToString("N"));

    public CliTests() => Directory.CreateDirectory(dir);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    internal static (int Code, string Out, string Err) Run(string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Transduce.Cli.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    private string Corpus(string name, string content)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    private const string Pairs = "Go.\tVa !\nI lost.\tJ'ai perdu.\nI'm home.\tJe suis chez moi.\nThank you!\tMerci !\n";

    [Fact]
    public void TrainTranslateEvaluateEndToEnd()
    {
        string data = Corpus("pairs.tsv", Pairs);
        string model = Path.Combine(dir, "model");
        var train = Run(null, "train", "--data", data, "--out", model, "--embed", "16", "--hidden", "32", "--layers", "1",
            "--dropout", "0", "--epochs", "120", "--batch-size", "2", "--lr", "0.01", "--seed", "3");
        Assert.True(train.Code == 0, train.Err + train.Out);
        Assert.True(File.Exists(Path.Combine(model, "model.safetensors")));

        var args = Run(null, "translate", "--model", model, "Go.", "I'm home.");
        Assert.Equal(0, args.Code);
        Assert.Equal(["va !", "je suis chez moi ."], args.Out.TrimEnd('\n').Split('\n'));

        // Another kernel choice gives the same output; --verbose puts the capability report on standard error first.
        var modules = Run(null, "translate", "--model", model, "--kernels", "modules", "--verbose", "Go.", "I'm home.");
        Assert.Equal(0, modules.Code);
        Assert.Equal(args.Out, modules.Out);
        Assert.Contains(modules.Err.Split('\n'), l => l.StartsWith("packed decoding", StringComparison.Ordinal) && l.Contains(" off "));
        Assert.Equal(args.Out, Run(null, "translate", "--model", model, "--kernels", "no-row-step,no-onednn", "Go.", "I'm home.").Out);

        // Standard input: one output line per input line, in order; an empty line gives an empty line.
        var stdin = Run("I lost.\n\nThank you!\n", "translate", "--model", model);
        Assert.Equal(0, stdin.Code);
        var lines = stdin.Out.TrimEnd('\n').Split('\n');
        Assert.Equal(["j'ai perdu .", "", "merci !"], lines);

        // A file streamed in windows of 2, batched by tokens: one output line per input line, in input order.
        string[] inputLines = ["Thank you!", "", "I'm home.", "Go.", "I lost.", "", "I'm home.", "Go."];
        string inputFile = Corpus("input.txt", string.Join('\n', inputLines) + "\n");
        string outputFile = Path.Combine(dir, "output.txt");
        var streamed = Run(null, "translate", "--model", model, "--input", inputFile, "--output", outputFile, "--window", "3", "--batch-tokens", "8");
        Assert.True(streamed.Code == 0, streamed.Err);
        var expectedLines = Run(null, ["translate", "--model", model, .. inputLines]).Out.TrimEnd('\n').Split('\n');
        Assert.Equal(expectedLines, File.ReadAllText(outputFile).TrimEnd('\n').Split('\n'));
        Assert.Equal(["merci !", "", "je suis chez moi ."], expectedLines[..3]);

        string report = Path.Combine(dir, "eval.json");
        var eval = Run(null, "evaluate", "--model", model, "--test", data, "--report", report);
        Assert.True(eval.Code == 0, eval.Err);
        Assert.Contains("BLEU = 100.00", eval.Out);
        var json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(100.0, json["bleu"]!.GetValue<double>());
        Assert.Equal(4, json["sentences"]!.GetValue<int>());
    }

    [Fact]
    public void SubwordTransformerKeepsCaseAndPunctuationAndShowsAttention()
    {
        string data = Corpus("pairs.tsv", Pairs);
        string model = Path.Combine(dir, "bpe");
        var train = Run(null, "train", "--data", data, "--out", model, "--tokenizer", "bpe", "--bpe-vocab", "300",
            "--model", "transformer", "--hidden", "32", "--heads", "4", "--ffn", "64", "--layers", "2", "--pre-norm",
            "--tie-embeddings", "--share-embeddings", "--dropout", "0", "--epochs", "80", "--batch-size", "2", "--lr", "0.005", "--seed", "2");
        Assert.True(train.Code == 0, train.Err + train.Out);
        Assert.True(File.Exists(Path.Combine(model, "bpe.json")));
        Assert.True(File.Exists(Path.Combine(model, "loss.png")));

        string png = Path.Combine(dir, "attention.png");
        var r = Run(null, "translate", "--model", model, "--attention", png, "I'm home.", "Thank you!");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(["Je suis chez moi.", "Merci !"], r.Out.TrimEnd('\n').Split('\n'));
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png)[..4]);

        var eval = Run(null, "evaluate", "--model", model, "--test", data, "--json");
        Assert.True(eval.Code == 0, eval.Err);
        var json = JsonNode.Parse(eval.Out)!;
        Assert.Equal(100.0, json["bleu"]!.GetValue<double>());
        Assert.Contains("tok:13a", json["signature"]!.GetValue<string>());

        // Beam search scores the same memorised corpus just as well, and the report says which search ran.
        var beam = Run(null, "evaluate", "--model", model, "--test", data, "--beam", "3", "--json");
        Assert.True(beam.Code == 0, beam.Err);
        var beamJson = JsonNode.Parse(beam.Out)!;
        Assert.Equal(3, beamJson["beam"]!.GetValue<int>());
        Assert.Equal(100.0, beamJson["bleu"]!.GetValue<double>());
    }

    [Fact]
    public void BaseCpuPresetTrainsOnTheSplitOfAFolderValidatesAndKeepsCase()
    {
        // A corpus folder as ../shared/data/fra-eng: the full fra.txt (test sentences included) beside the fixed splits.
        string folder = Path.Combine(dir, "fra-eng");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "fra.txt"), Pairs + "Held out.\tMis de côté.\n");
        File.WriteAllText(Path.Combine(folder, "train.tsv"), Pairs);
        File.WriteAllText(Path.Combine(folder, "valid.tsv"), "Go.\tVa !\n");
        string model = Path.Combine(dir, "base");
        // The preset's sizes shrunk by flags; everything else (BPE, pre-norm, sharing, schedule…) comes from the preset.
        var train = Run(null, "train", "--preset", "transformer-base-cpu", "--data", folder, "--out", model,
            "--hidden", "16", "--ffn", "32", "--layers", "1", "--heads", "2", "--bpe-vocab", "300", "--epochs", "2", "--valid-every", "1");
        Assert.True(train.Code == 0, train.Err + train.Out);
        Assert.Contains("validation of update 1:", train.Out);
        Assert.True(File.Exists(Path.Combine(model, "best", "model.safetensors")));

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;
        Assert.True(config["model"]!["pre_norm"]!.GetValue<bool>());
        Assert.True(config["model"]!["tie_embeddings"]!.GetValue<bool>());
        Assert.True(config["model"]!["share_embeddings"]!.GetValue<bool>());
        Assert.Equal("bpe", config["text"]!["tokenizer"]!.GetValue<string>());
        Assert.Equal("none", config["text"]!["normalizer"]!.GetValue<string>());
        var settings = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "train.json")))!;
        Assert.Equal("transformer-base-cpu", settings["preset"]!.GetValue<string>());
        Assert.Equal(0.1, settings["training"]!["label_smoothing"]!.GetValue<double>());
        Assert.Equal("inverse-sqrt", settings["training"]!["schedule"]!.GetValue<string>());
        // The preset's precision is auto: train.json holds what this machine measured and the log says why.
        string precision = settings["training"]!["precision"]!.GetValue<string>();
        Assert.Contains(precision, new[] { "float32", "bfloat16" });
        Assert.Contains($"{precision} (auto: matmuls ", train.Out);
        Assert.Equal(0.1, settings["validation"]!["every_fraction"]!.GetValue<double>());
        Assert.Equal(16, settings["model"]!["hidden_size"]!.GetValue<int>());
        Assert.Equal(Path.Combine(folder, "train.tsv"), settings["data"]!["train"]!.GetValue<string>());
        Assert.Equal("4", config["training"]!["pairs"]!.GetValue<string>());
        Assert.Equal(Path.Combine(folder, "valid.tsv"), settings["validation"]!["file"]!.GetValue<string>());
    }

    [Fact]
    public void ValidationKeepsTheBestModelStopsEarlyAndCheckpointsAverage()
    {
        string data = Corpus("pairs.tsv", Pairs);
        string model = Path.Combine(dir, "v");
        var train = Run(null, "train", "--data", data, "--valid", data, "--valid-every", "20", "--patience", "3", "--keep-last", "3",
            "--save-every", "10", "--out", model, "--embed", "16", "--hidden", "32", "--layers", "1", "--dropout", "0",
            "--epochs", "300", "--batch-size", "2", "--lr", "0.01", "--seed", "3");
        Assert.True(train.Code == 0, train.Err + train.Out);
        Assert.Contains("validation of update 20:", train.Out);
        Assert.Contains("early stop", train.Out);
        var best = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "best", "config.json")))!["training"]!;
        Assert.Equal("100.00", best["valid_bleu"]!.GetValue<string>());
        var history = Directory.GetDirectories(Path.Combine(model, "history"));
        Assert.Equal(3, history.Length);

        string averaged = Path.Combine(dir, "avg");
        var avg = Run(null, ["average", .. history, "--out", averaged]);
        Assert.True(avg.Code == 0, avg.Err);
        var t = Run(null, "translate", "--model", averaged, "Go.", "Thank you!");
        Assert.Equal(["va !", "merci !"], t.Out.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void BadInputsEndWithOneClearLineAndExitCodeOne()
    {
        string bad = Corpus("bad.tsv", "Go.\tVa !\nno tab here\nHi.\tSalut !\n");
        var r = Run(null, "train", "--data", bad, "--out", Path.Combine(dir, "m"), "--epochs", "1");
        Assert.Equal(1, r.Code);
        Assert.Contains("bad.tsv:2", r.Err);
        Assert.DoesNotContain("   at ", r.Err);

        r = Run(null, "train", "--data", bad, "--out", Path.Combine(dir, "m"), "--epochs", "1", "--embed", "8", "--hidden", "8", "--skip-invalid");
        Assert.Equal(0, r.Code);
        Assert.Contains("skipped 1 malformed line", r.Err);

        r = Run(null, "train", "--data", Path.Combine(dir, "missing.tsv"), "--out", Path.Combine(dir, "m2"));
        Assert.Equal(1, r.Code);
        Assert.Contains("missing.tsv", r.Err);
        Assert.DoesNotContain("   at ", r.Err);

        r = Run(null, "translate", "--model", Path.Combine(dir, "no-model"), "hello");
        Assert.Equal(1, r.Code);
        Assert.Contains("no-model", r.Err);
        Assert.DoesNotContain("   at ", r.Err);

        // A value the command line does not know is a usage error (exit 2), before any file is read.
        r = Run(null, "train", "--data", bad, "--out", Path.Combine(dir, "m3"), "--model", "lstm", "--skip-invalid");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("error: --model: 'lstm' is not one of gru, bahdanau, transformer", r.Err);
        Assert.Contains("Usage: transduce train [options]", r.Err);
    }

    [Fact]
    public void GarbageCorporaEndInOneClearLineOrASkipCount()
    {
        // Invalid UTF-8 on line 2, an empty line 4, and a 10,000-word line 5.
        string path = Path.Combine(dir, "garbage.tsv");
        var bytes = new List<byte>();
        bytes.AddRange("Go.\tVa !\n"u8.ToArray());
        bytes.AddRange("Hi"u8.ToArray());
        bytes.Add(0xFF);
        bytes.AddRange(".\tSalut !\n"u8.ToArray());
        bytes.AddRange("Run!\tCours !\n\n"u8.ToArray());
        bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(string.Join(' ', Enumerable.Repeat("word", 10_000)) + "\tmot\n"));
        bytes.AddRange("I lost.\tJ'ai perdu.\n"u8.ToArray());
        File.WriteAllBytes(path, bytes.ToArray());

        string[] tiny = ["--embed", "8", "--hidden", "8", "--layers", "1", "--epochs", "1"];
        var strict = Run(null, ["train", "--data", path, "--out", Path.Combine(dir, "g1"), .. tiny]);
        Assert.Equal(1, strict.Code);
        Assert.Contains("garbage.tsv:2", strict.Err);
        Assert.Contains("UTF-8", strict.Err);
        Assert.DoesNotContain("   at ", strict.Err);

        // With --skip-invalid the two bad lines are counted, and the 10,000-word line trains (cut to the Transformer's positions).
        var skip = Run(null, ["train", "--data", path, "--out", Path.Combine(dir, "g2"), "--skip-invalid", "--model", "transformer",
            "--hidden", "16", "--heads", "2", "--ffn", "16", "--layers", "1", "--epochs", "1"]);
        Assert.True(skip.Code == 0, skip.Err + skip.Out);
        Assert.Contains("skipped 2 malformed line(s)", skip.Err);

        var missing = Run(null, ["train", "--data", Path.Combine(dir, "nothing.tsv"), "--out", Path.Combine(dir, "g3"), .. tiny]);
        Assert.Equal(1, missing.Code);
        Assert.Contains("nothing.tsv", missing.Err);
        Assert.DoesNotContain("   at ", missing.Err);
    }

    [Fact]
    public void HelpIsAvailableForEveryCommand()
    {
        foreach (var command in new[] { "train", "translate", "evaluate" })
        {
            var r = Run(null, command, "--help");
            Assert.Equal(0, r.Code);
            Assert.Contains("--", r.Out);
        }
    }
}
