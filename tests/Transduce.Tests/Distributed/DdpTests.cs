using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Tests.Cli;
using Transduce.Training;
using Transduce.Text;

namespace Transduce.Tests.Distributed;

/// <summary>
/// Issue 14's path: <c>transduce prepare</c> → <c>torchrun … -m transduce_torch.train</c> (PyTorch DDP, gloo on CPU) →
/// <c>transduce translate</c>, with the Trainer's batches, loss, schedule and clipping on both sides.
/// </summary>
public sealed class DdpTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "transduce-ddp-" + Guid.NewGuid().ToString("N"));

    public DdpTests() => Directory.CreateDirectory(dir);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly string[] Pairs =
    [
        "Go.\tVa !", "Hi.\tSalut !", "Run!\tCours !", "Who?\tQui ?", "Wow!\tÇa alors !", "Fire!\tAu feu !",
        "Help!\tÀ l'aide !", "Jump.\tSaute.", "Stop!\tÇa suffit !", "Wait!\tAttends !", "I see.\tJe comprends.", "I lost.\tJ'ai perdu.",
        "I'm home.\tJe suis chez moi.", "Thank you!\tMerci !", "Be calm.\tSois calme !", "I won!\tJ'ai gagné !",
    ];

    /// <summary>A subword Transformer with tied and shared embeddings, length-bucketed token batches, warm-up and label smoothing.</summary>
    private static readonly string[] TransformerRun =
    [
        "--model", "transformer", "--hidden", "32", "--heads", "4", "--ffn", "64", "--layers", "2", "--pre-norm", "--tie-embeddings",
        "--share-embeddings", "--tokenizer", "bpe", "--bpe-vocab", "300", "--dropout", "0", "--epochs", "12", "--batch-size", "6",
        "--max-tokens", "40", "--lr", "0.005", "--schedule", "inverse-sqrt", "--warmup", "8", "--label-smoothing", "0.1", "--clip", "0.5", "--seed", "3",
    ];

    /// <summary>The book's GRU on words with plain shuffled batches, two batches per update, a constant rate.</summary>
    private static readonly string[] GruRun =
    [
        "--model", "gru", "--embed", "16", "--hidden", "32", "--layers", "2", "--dropout", "0", "--epochs", "6", "--batch-size", "3",
        "--accumulate", "2", "--lr", "0.01", "--clip", "1", "--label-smoothing", "0.05", "--seed", "5",
    ];

    /// <summary><paramref name="run"/> with <paramref name="flag"/> set to <paramref name="value"/>.</summary>
    private static string[] With(string[] run, string flag, string value)
    {
        var copy = run.ToArray();
        copy[Array.IndexOf(copy, flag) + 1] = value;
        return copy;
    }

    private string Corpus()
    {
        string path = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(path, string.Join('\n', Pairs) + "\n");
        return path;
    }

    private string Prepare(string name, string[] run)
    {
        string output = Path.Combine(dir, name);
        var r = CliTests.Run(null, ["prepare", "--data", Corpus(), "--out", output, "--threads", "1", .. run]);
        Assert.True(r.Code == 0, r.Err + r.Out);
        return output;
    }

    /// <summary>The per-update losses the DDP trainer logged (--log).</summary>
    private static List<double> LoggedLosses(string log) =>
        File.ReadAllLines(log).Select(l => JsonNode.Parse(l)!["loss"]!.GetValue<double>()).ToList();

    /// <summary>The first <paramref name="updates"/> losses of the .NET Trainer on a prepared run, from its start weights or <paramref name="weights"/>'.</summary>
    private static List<double> TrainerLosses(string prepared, int updates, string? weights = null)
    {
        var options = RunConfigFile.ReadRunFile(Path.Combine(prepared, "train.json")).Training;
        using var checkpoint = Checkpoint.Load(weights ?? prepared);
        var pairs = Preparation.TryReadPairs(prepared)!;
        var target = checkpoint.TargetVocabulary;
        var losses = new List<double>();
        using var stop = new CancellationTokenSource();
        TorchSharp.torch.manual_seed(options.Seed);
        checkpoint.Model.train();
        Trainer.Train(checkpoint.Model, pairs, new SpecialIds(target.PadId, target.BosId, target.EosId),
            Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength), options,
            p =>
            {
                losses.Add(p.Loss);
                if (losses.Count == updates) stop.Cancel();
            }, cancellation: stop.Token);
        return losses;
    }

    private static void AssertSameCurve(IReadOnlyList<double> expected, IReadOnlyList<double> actual, int updates, double tolerance, string what)
    {
        Assert.True(expected.Count >= updates && actual.Count >= updates, $"{what}: {expected.Count} and {actual.Count} losses, {updates} needed");
        for (int i = 0; i < updates; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * Math.Max(1, Math.Abs(expected[i])),
                $"{what}: update {i + 1}: {expected[i].ToString("R", CultureInfo.InvariantCulture)} vs {actual[i].ToString("R", CultureInfo.InvariantCulture)}\n" +
                $"expected {string.Join(", ", expected.Take(updates))}\nactual   {string.Join(", ", actual.Take(updates))}");
        // The curve must move, or equal curves prove nothing.
        Assert.True(expected[updates - 1] < expected[0] - 0.1, $"{what}: the loss did not fall ({expected[0]} → {expected[updates - 1]})");
    }

    [Theory]
    [InlineData("transformer")]
    [InlineData("gru")]
    public void TheDdpTrainerTakesTheTrainersBatchesLossScheduleAndClipping(string architecture)
    {
        string prepared = Prepare("prepared", architecture == "gru" ? GruRun : TransformerRun);
        const int Updates = 8;
        string log = Path.Combine(dir, "one-rank.jsonl");
        var python = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "run"), "--max-updates", Updates.ToString(), "--log", log);
        Assert.True(python.Code == 0, python.Err + python.Out);

        // Same start weights (prepare's), same batches, same arithmetic: PyTorch 1.13 and libtorch 2.10 agree to float noise.
        AssertSameCurve(TrainerLosses(prepared, Updates), LoggedLosses(log), Updates, 1e-4, $"{architecture}: .NET Trainer vs the PyTorch trainer");
    }

    [Fact]
    public void InBfloat16TheDdpTrainerFollowsTheTrainerToRounding()
    {
        // training.precision bfloat16: both sides multiply in bf16 under autocast (oneDNN's kernels on both, but different
        // versions), so the curves agree to bf16 rounding, not to float noise.
        string prepared = Prepare("prepared", [.. TransformerRun, "--precision", "bf16"]);
        Assert.Contains("\"precision\": \"bfloat16\"", File.ReadAllText(Path.Combine(prepared, "train.json")));
        const int Updates = 8;
        string log = Path.Combine(dir, "bf16.jsonl");
        var python = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "run"), "--max-updates", Updates.ToString(), "--log", log);
        Assert.True(python.Code == 0, python.Err + python.Out);
        AssertSameCurve(TrainerLosses(prepared, Updates), LoggedLosses(log), Updates, 2e-2, "bf16: .NET Trainer vs the PyTorch trainer");
    }

    [Fact]
    public void OnTwoRanksPrecisionAutoIsMeasuredOnceAndEveryRankComputesInTheChosenType()
    {
        // prepare keeps 'auto' (nothing trains there); the Python trainer measures on rank 0 and sends the choice to rank 1.
        string prepared = Prepare("prepared", [.. TransformerRun, "--precision", "auto"]);
        Assert.Contains("\"precision\": \"auto\"", File.ReadAllText(Path.Combine(prepared, "train.json")));
        var two = PythonTorch.Train(2, dir, prepared, "--out", Path.Combine(dir, "run"), "--max-updates", "2");
        Assert.True(two.Code == 0, two.Err + two.Out);
        var measured = System.Text.RegularExpressions.Regex.Matches(two.Out, @"precision auto: matmuls [0-9,]+ GFLOP/s in bfloat16, [0-9,]+ in float32");
        Assert.Single(measured);
    }

    [Fact]
    public void ThePythonTrainerResumesExactlyWhereItStopped()
    {
        // Dropout on: the generator's state travels in torch_state.pt, so a stopped and resumed run draws the same masks.
        string prepared = Prepare("prepared", With(GruRun, "--dropout", "0.3"));
        string whole = Path.Combine(dir, "whole.jsonl"), parts = Path.Combine(dir, "parts.jsonl");
        var r = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "a"), "--max-updates", "10", "--threads", "1", "--log", whole);
        Assert.True(r.Code == 0, r.Err + r.Out);
        r = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "b"), "--max-updates", "4", "--threads", "1", "--log", parts);
        Assert.True(r.Code == 0, r.Err + r.Out);
        r = PythonTorch.TrainAlone(dir, "--resume", Path.Combine(dir, "b"), "--max-updates", "6", "--threads", "1", "--log", parts);
        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Equal(LoggedLosses(whole), LoggedLosses(parts));
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "a", "model.safetensors")), File.ReadAllBytes(Path.Combine(dir, "b", "model.safetensors")));

        // Starting over an existing run by mistake is refused; --resume is the way.
        r = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "b"));
        Assert.Equal(1, r.Code);
        Assert.Contains("already holds a run", r.Err);

        // Training inside the prepared folder keeps its shards (a checkpoint save carries data/ over, twice).
        var pairs = Preparation.TryReadPairs(prepared)!;
        r = PythonTorch.TrainAlone(dir, prepared, "--out", prepared, "--max-updates", "2", "--threads", "1");
        Assert.True(r.Code == 0, r.Err + r.Out);
        r = PythonTorch.TrainAlone(dir, "--resume", prepared, "--max-updates", "1", "--threads", "1");
        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Equal(pairs.Select(p => p.Source), Preparation.TryReadPairs(prepared)!.Select(p => p.Source));
    }

    [Fact]
    public void TwoRanksTrainAsOneAndTranslateLoadsTheResultUnconverted()
    {
        string prepared = Prepare("prepared", TransformerRun);

        // A few dozen updates on 2 CPU ranks (gloo): each rank computes half of every batch.
        string run = Path.Combine(dir, "run");
        string twoLog = Path.Combine(dir, "two.jsonl");
        var two = PythonTorch.Train(2, dir, prepared, "--out", run, "--max-updates", "30", "--log", twoLog);
        Assert.True(two.Code == 0, two.Err + two.Out);
        Assert.Contains("2 rank(s) (gloo, cpu", two.Out);

        // 1 rank with the whole batch: the same curve (the gradients are averaged as they should be).
        string oneLog = Path.Combine(dir, "one.jsonl");
        var one = PythonTorch.Train(1, dir, prepared, "--out", Path.Combine(dir, "one-rank"), "--max-updates", "12", "--log", oneLog);
        Assert.True(one.Code == 0, one.Err + one.Out);
        AssertSameCurve(LoggedLosses(oneLog), LoggedLosses(twoLog), 12, 1e-5, "1 rank vs 2 ranks");

        // The checkpoint is ours: translate loads it as it is, and its greedy tokens are the Python model's, token for token.
        string[] sentences = [.. Pairs.Select(p => p.Split('\t')[0]), "Help me.", "I'm calm."];
        using var translator = new Translator(Checkpoint.Load(run));
        var pipeline = translator.Checkpoint.CreateTextPipeline();
        var sourceIds = sentences.Select(pipeline.EncodeSource).ToList();
        string input = Path.Combine(dir, "sources.jsonl");
        File.WriteAllLines(input, sourceIds.Select(ids => JsonSerializer.Serialize(new { ids })));
        string output = Path.Combine(dir, "python.jsonl");
        var generate = PythonTorch.Run(PythonTorch.Interpreter, ["-m", "transduce_torch.generate", "--checkpoint", run, "--input", input, "--output", output], dir);
        Assert.True(generate.Code == 0, generate.Err);
        var pythonIds = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray()).ToList();
        var pythonTokens = pythonIds.Select(ids => translator.Checkpoint.TargetVocabulary.Decode(ids).ToArray()).ToList();
        var dotnetTokens = translator.TranslateTokens(sentences);
        Assert.Equal(sentences.Length, pythonTokens.Count);
        for (int i = 0; i < sentences.Length; i++) Assert.Equal(pythonTokens[i], dotnetTokens[i]);
        Assert.True(Enumerable.Range(0, Pairs.Length).Count(i => string.Join("", dotnetTokens[i]).Length > 0) == Pairs.Length, "empty translations prove little");

        var cli = CliTests.Run(null, ["translate", "--model", run, .. sentences]);
        Assert.True(cli.Code == 0, cli.Err);
        Assert.Equal(pythonIds.Select(ids => pipeline.Decode(ids)), cli.Out.TrimEnd('\n').Split('\n'));
        var evaluate = CliTests.Run(null, "evaluate", "--model", run, "--test", Corpus(), "--json");
        Assert.True(evaluate.Code == 0, evaluate.Err);

        // transduce train --resume continues the DDP run from its weights and position (Adam afresh) to the run's end.
        var resumed = CliTests.Run(null, "train", "--resume", run, "--threads", "1");
        Assert.True(resumed.Code == 0, resumed.Err + resumed.Out);
        Assert.Contains("optimiser's moments start afresh", resumed.Out);
        Assert.Contains("at epoch", resumed.Out);
        int total = int.Parse(System.Text.RegularExpressions.Regex.Match(two.Out, @"([0-9,]+) updates in 12 epochs").Groups[1].Value.Replace(",", ""),
            CultureInfo.InvariantCulture);
        Assert.True(total > 30, two.Out);
        var position = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "trainer.json")))!["position"]!;
        Assert.Equal(total, position["step"]!.GetValue<int>());
        Assert.Equal(13, position["epoch"]!.GetValue<int>());
    }

    [Fact]
    public void PrepareThenTrainResumeIsExactlyTrain()
    {
        // prepare does what train does before its first update: training the prepared folder in .NET gives the same weights.
        // Here with a SentencePiece model trained beforehand (Debian's spm_train), loaded by both.
        string text = Path.Combine(dir, "text.txt");
        File.WriteAllLines(text, Pairs.SelectMany(p => p.Split('\t')));
        var spm = System.Diagnostics.Process.Start("spm_train", [$"--input={text}", $"--model_prefix={Path.Combine(dir, "spm")}", "--vocab_size=60",
            "--model_type=bpe", "--hard_vocab_limit=false", "--minloglevel=2", "--num_threads=1"])!;
        spm.WaitForExit();
        Assert.Equal(0, spm.ExitCode);
        string[] run = [.. With(GruRun, "--dropout", "0.3"), "--bucketed", "--tokenizer", "spm", "--spm-model", Path.Combine(dir, "spm.model")];
        string prepared = Prepare("prepared", run);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(prepared, "config.json")))!;
        Assert.Equal("spm", config["text"]!["tokenizer"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(prepared, "source.spm")) && File.Exists(Path.Combine(prepared, "data", "shards.json")));

        string trained = Path.Combine(dir, "trained");
        var train = CliTests.Run(null, ["train", "--data", Corpus(), "--out", trained, "--threads", "1", .. run]);
        Assert.True(train.Code == 0, train.Err + train.Out);
        var resumed = CliTests.Run(null, "train", "--resume", prepared, "--threads", "1");
        Assert.True(resumed.Code == 0, resumed.Err + resumed.Out);
        Assert.Contains(Path.Combine(prepared, "data"), resumed.Out);   // it trained on the shards, not the corpus
        Assert.Equal(File.ReadAllBytes(Path.Combine(trained, "model.safetensors")), File.ReadAllBytes(Path.Combine(prepared, "model.safetensors")));
        var translated = CliTests.Run(null, "translate", "--model", prepared, "I'm home.");
        Assert.True(translated.Code == 0, translated.Err);
        Assert.Equal(CliTests.Run(null, "translate", "--model", trained, "I'm home.").Out, translated.Out);
    }

    [Fact]
    public void TheDdpTrainerStartsFromATransduceTrainCheckpoint()
    {
        string prepared = Prepare("prepared", TransformerRun);
        // `transduce train` on the same corpus and flags: the same vocabularies, so its weights fit the prepared run.
        string trained = Path.Combine(dir, "trained");
        var train = CliTests.Run(null, ["train", "--data", Corpus(), "--out", trained, "--threads", "1", .. With(TransformerRun, "--epochs", "3")]);
        Assert.True(train.Code == 0, train.Err + train.Out);

        string log = Path.Combine(dir, "init.jsonl");
        var python = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "run"), "--init", trained, "--max-updates", "3", "--log", log);
        Assert.True(python.Code == 0, python.Err + python.Out);
        var fromTrained = TrainerLosses(prepared, 3, weights: trained);
        var fresh = TrainerLosses(prepared, 1);
        Assert.True(fromTrained[0] < fresh[0] - 0.5, $"the trained weights should start lower: {fromTrained[0]} vs {fresh[0]}");
        var logged = LoggedLosses(log);
        for (int i = 0; i < 3; i++) Assert.Equal(fromTrained[i], logged[i], 1e-4 * Math.Max(1, fromTrained[i]));

        // A checkpoint of another model is refused with one clear line.
        string other = Prepare("other", [.. GruRun]);
        var refused = PythonTorch.TrainAlone(dir, prepared, "--out", Path.Combine(dir, "run2"), "--init", other);
        Assert.Equal(1, refused.Code);
        Assert.Contains("differs from", refused.Err);
        Assert.DoesNotContain("Traceback", refused.Err);
    }

    [Fact]
    public void PrepareSaysWhatIsMissingInOneLine()
    {
        string corpus = Corpus();
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["prepare", "--data", corpus], "prepare: --out DIR is required"),
            (["prepare", "--data", corpus, "--out", Path.Combine(dir, "p"), "--tokenizer", "spm"], "spm needs 'text.spm_model' (--spm-model FILE"),
            (["prepare", "--data", corpus, "--out", Path.Combine(dir, "p"), "--tokenizer", "spm", "--spm-model", Path.Combine(dir, "none.model")], "none.model: SentencePiece model not found"),
            (["prepare", "--data", corpus, "--out", Path.Combine(dir, "p"), "--shard-pairs", "0"], "--shard-pairs must be at least 1"),
        })
        {
            var r = CliTests.Run(null, args);
            Assert.Equal(1, r.Code);
            Assert.Contains(expected, r.Err);
            Assert.DoesNotContain("   at ", r.Err);
        }
        Assert.False(Directory.Exists(Path.Combine(dir, "p")));
        Assert.Contains("--shard-pairs", CliTests.Run(null, "prepare", "--help").Out);
    }

    [Fact]
    public void PythonDrawsTheBatchesOfBatching()
    {
        var random = new Random(11);
        var sourceLengths = Enumerable.Range(0, 997).Select(_ => random.Next(1, 40)).ToArray();
        var targetLengths = Enumerable.Range(0, 997).Select(_ => random.Next(1, 40)).ToArray();
        string lengths = Path.Combine(dir, "lengths.json");
        File.WriteAllText(lengths, JsonSerializer.Serialize(new { source = sourceLengths, target = targetLengths }));
        const string Script = """
            import json, sys
            from transduce_torch.data import bucketed_epoch, chunk, chunked_epoch_order, epoch_order
            d = json.load(open(sys.argv[1]))
            out = {}
            for seed, epoch in ((1, 1), (1, 2), (-7, 3), (123456789, 40)):
                out[f"{seed}/{epoch}/bucketed"] = bucketed_epoch(d["source"], d["target"], 8, 100, seed, epoch)
                out[f"{seed}/{epoch}/bucketed-rows"] = bucketed_epoch(d["source"], d["target"], 5, None, seed, epoch)
                out[f"{seed}/{epoch}/plain"] = chunk(epoch_order(len(d["source"]), seed, epoch), 16)
                out[f"{seed}/{epoch}/chunked"] = chunked_epoch_order(len(d["source"]), seed, epoch, 50, 3)
            print(json.dumps(out))
            """;
        var r = PythonTorch.Script(Script, dir, lengths);
        Assert.True(r.Code == 0, r.Err);
        var python = JsonNode.Parse(r.Out)!.AsObject();
        foreach (var (seed, epoch) in new[] { (1, 1), (1, 2), (-7, 3), (123456789, 40) })
        {
            Assert.Equal(Json(Batching.BucketedEpoch(sourceLengths, targetLengths, 8, 100, seed, epoch)), python[$"{seed}/{epoch}/bucketed"]!.ToJsonString());
            Assert.Equal(Json(Batching.BucketedEpoch(sourceLengths, targetLengths, 5, null, seed, epoch)), python[$"{seed}/{epoch}/bucketed-rows"]!.ToJsonString());
            Assert.Equal(Json(Batching.Chunk(Batching.EpochOrder(997, seed, epoch), 16).ToList()), python[$"{seed}/{epoch}/plain"]!.ToJsonString());
            // Shards of more than one window (1,000,000 pairs; here 150) are shuffled in chunks, by both trainers alike.
            Assert.Equal(JsonSerializer.Serialize(Batching.ChunkedEpochOrder(997, seed, epoch, 50, 3)), python[$"{seed}/{epoch}/chunked"]!.ToJsonString());
        }
    }

    [Fact]
    public void ThePythonPackageInstallsWithPipFromDebianPackagesAlone()
    {
        // No PyPI: a venv that sees Debian's python3-torch, and pip building the package offline.
        string source = Path.Combine(dir, "src");
        CopyFolder(PythonTorch.PackageFolder, source);
        string venv = Path.Combine(dir, "venv");
        var create = PythonTorch.Run(PythonTorch.Interpreter, ["-m", "venv", "--system-site-packages", venv], dir);
        Assert.True(create.Code == 0, create.Err);
        var install = PythonTorch.Run(Path.Combine(venv, "bin", "pip"), ["install", "--quiet", "--no-index", "--no-build-isolation", source], dir);
        Assert.True(install.Code == 0, install.Err + install.Out);
        var help = PythonTorch.Run(Path.Combine(venv, "bin", "transduce-torch-train"), ["--help"], dir);
        Assert.True(help.Code == 0, help.Err);
        Assert.Contains("--resume", help.Out);
        var where = PythonTorch.Run(Path.Combine(venv, "bin", "python"), ["-I", "-c", "import transduce_torch; print(transduce_torch.__file__)"], dir);
        Assert.True(where.Code == 0, where.Err);
        Assert.StartsWith(venv, where.Out.Trim());
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var sub in Directory.GetDirectories(from).Where(d => !Path.GetFileName(d).StartsWith("__") && Path.GetFileName(d) != "build"))
            CopyFolder(sub, Path.Combine(to, Path.GetFileName(sub)));
    }

    private static string Json(List<int[]> batches) => JsonSerializer.Serialize(batches);
}
