using System.Text.Json.Nodes;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

/// <summary>Training runs from C#: validation of the final weights, averaging, the run directory's lock and crash safety, resume.</summary>
public sealed class TrainingRunTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-run-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    internal static readonly SentencePair[] Pairs =
    [
        new("Go.", "Va !"), new("Hi.", "Salut !"), new("Run!", "Cours !"), new("Who?", "Qui ?"), new("Wow!", "Ça alors !"),
        new("Fire!", "Au feu !"), new("Help!", "À l'aide !"), new("Jump.", "Saute."), new("Stop!", "Ça suffit !"),
        new("Wait!", "Attends !"), new("I see.", "Je comprends."), new("I lost.", "J'ai perdu."),
    ];

    internal static RunConfig Tiny(int epochs = 20) => new()
    {
        Model = new ModelOptions { Architecture = "gru", EmbeddingSize = 16, HiddenSize = 32, Layers = 1, Dropout = 0 },
        Training = new TrainingOptions { Epochs = epochs, BatchSize = 3, LearningRate = 0.01, Seed = 3 },
    };

    [Fact]
    public void ARunThatStopsOnItsTimeLimitBetweenValidationsStillValidatesItsFinalWeights()
    {
        // Validation every 100,000 updates never comes; the time limit stops the run first.
        var config = Tiny(epochs: 100_000) with
        {
            Training = Tiny().Training with { Epochs = 100_000, TimeLimit = TimeSpan.FromSeconds(2) },
            Validation = new ValidationOptions { Every = 100_000 },
        };
        string run = Path.Combine(dir, "timed");
        using (var training = new TrainingRun(config, run, Pairs, Pairs))
        {
            var summary = training.Run();
            Assert.Equal(TrainingStop.TimeLimit, summary.Stop);
            var only = Assert.Single(summary.Validations);
            Assert.Equal(summary.Updates, only.Step);
            Assert.Equal($"the final weights (update {summary.Updates})", only.Weights);
            Assert.Same(only, summary.Best);
        }
        var best = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "best", "config.json")))!["training"]!;
        var last = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!["training"]!;
        Assert.Equal(last["updates"]!.GetValue<string>(), best["best_update"]!.GetValue<string>());
        Assert.Equal(File.ReadAllBytes(Path.Combine(run, "model.safetensors")), File.ReadAllBytes(Path.Combine(run, "best", "model.safetensors")));
        Assert.Contains("the best validated weights", TrainingRun.DescribeWeights(Path.Combine(run, "best")));
        Assert.Contains("the last weights of the run", TrainingRun.DescribeWeights(run));
    }

    [Fact]
    public void ValidationByTheClockComesEveryFractionOfTheTimeLimitAndOnTheFinalWeights()
    {
        // every_fraction 0.4 of a 3-second limit: validations near 1.2 s and 2.4 s of training, then the final weights.
        var config = Tiny(epochs: 100_000) with
        {
            Training = Tiny().Training with { Epochs = 100_000, TimeLimit = TimeSpan.FromSeconds(3) },
            Validation = new ValidationOptions { EveryFraction = 0.4 },
        };
        using var training = new TrainingRun(config, Path.Combine(dir, "clock"), Pairs, Pairs);
        var summary = training.Run();
        Assert.Equal(TrainingStop.TimeLimit, summary.Stop);
        // Before the end: one validation per mark passed (near 1.2 s and 2.4 s); at the end: the final weights, once.
        var before = summary.Validations.Where(v => v.Step < summary.Updates).ToList();
        Assert.InRange(before.Count, 1, 2);
        Assert.Equal(before.Count, before.Select(v => v.Step).Distinct().Count());
        Assert.Equal(summary.Updates, Assert.Single(summary.Validations, v => v.Step == summary.Updates).Step);
    }

    [Fact]
    public async Task ACancelledRunIsSavedAndItsFinalWeightsValidated()
    {
        var config = Tiny(epochs: 50) with { Validation = new ValidationOptions { Every = 1000 } };
        string run = Path.Combine(dir, "cancelled");
        using var stop = new CancellationTokenSource();
        using var training = new TrainingRun(config, run, Pairs, Pairs);
        training.Progress += (_, p) => { if (p.Step == 6) stop.Cancel(); };
        var summary = await training.RunAsync(stop.Token);
        Assert.Equal((TrainingStop.Cancelled, 6), (summary.Stop, summary.Updates));
        Assert.Equal("the final weights (update 6)", Assert.Single(summary.Validations).Weights);
        Assert.Equal(6, JsonNode.Parse(File.ReadAllText(Path.Combine(run, "trainer.json")))!["position"]!["step"]!.GetValue<int>());
        Assert.True(File.Exists(Path.Combine(run, "best", "model.safetensors")));
    }

    [Fact]
    public void TheAverageOfTheLastSavesIsACandidateAndBestHoldsTheBestOfAll()
    {
        var config = Tiny(epochs: 8) with
        {
            Training = Tiny().Training with { Epochs = 8, SaveEverySteps = 3, AverageLast = 3 },
            Validation = new ValidationOptions { Every = 7, Metric = ValidationMetric.Loss },
        };
        string run = Path.Combine(dir, "averaged");
        TrainingSummary summary;
        using (var training = new TrainingRun(config, run, Pairs, Pairs))
            summary = training.Run();
        Assert.Equal(32, summary.Updates);
        var averaged = Assert.Single(summary.Validations, v => v.Averaged);
        Assert.Equal(32, averaged.Step);
        Assert.StartsWith("the average of the last 3 saves", averaged.Weights);
        Assert.Contains(summary.Validations, v => v.Weights == "the final weights (update 32)");
        Assert.Equal([7, 14, 21, 28, 32, 32], summary.Validations.Select(v => v.Step));
        Assert.Equal(summary.Validations.Min(v => v.Loss), summary.Best!.Loss);
        Assert.Equal(3, Directory.GetDirectories(Path.Combine(run, "history")).Length);
        var best = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "best", "config.json")))!["training"]!;
        Assert.Equal(summary.Best.Weights, best["best_weights"]!.GetValue<string>());
    }

    [Fact]
    public void ASecondTrainerOnTheSameDirectoryIsRefused()
    {
        string run = Path.Combine(dir, "locked");
        using var first = new TrainingRun(Tiny(), run, Pairs);
        var e = Assert.Throws<IOException>(() => new TrainingRun(Tiny(), run, Pairs));
        Assert.Contains("another training process is using this run directory", e.Message);
        first.Dispose();
        using var after = new TrainingRun(Tiny(), run, Pairs);   // released with the first
    }

    [Fact]
    public void AnEarlierRunIsNeitherOverwrittenNorMixedByAccident()
    {
        string run = Path.Combine(dir, "earlier");
        using (var training = new TrainingRun(Tiny(epochs: 1), run, Pairs)) training.Run();
        var e = Assert.Throws<IOException>(() => new TrainingRun(Tiny(), run, Pairs));
        Assert.Contains("holds a training run already", e.Message);
        Directory.CreateDirectory(Path.Combine(dir, "mine"));
        File.WriteAllText(Path.Combine(dir, "mine", "notes.txt"), "mine");
        e = Assert.Throws<IOException>(() => new TrainingRun(Tiny(), Path.Combine(dir, "mine"), Pairs));
        Assert.Contains("holds other files", e.Message);
        using (var again = new TrainingRun(Tiny(epochs: 2), run, Pairs, overwrite: true)) Assert.Equal(8, again.Run().Updates);
    }

    [Fact]
    public void ASaveThatFailsAfterMovingSubfoldersKeepsBestAndHistory()
    {
        string run = Path.Combine(dir, "faulty");
        var config = Tiny(epochs: 2) with { Training = Tiny().Training with { Epochs = 2, KeepLast = 2 }, Validation = new ValidationOptions() };
        using (var training = new TrainingRun(config, run, Pairs, Pairs)) training.Run();
        string bestWeights = Path.Combine(run, "best", "model.safetensors");
        byte[] before = File.ReadAllBytes(bestWeights);
        var history = Directory.GetDirectories(Path.Combine(run, "history")).Order().ToList();
        Assert.Equal(2, history.Count);

        using var checkpoint = Checkpoint.Load(run);
        foreach (string point in new[] { "written", "swapped", "moved:best", "moved:history" })
        {
            Checkpoint.FaultInjection = p => { if (p == point) throw new IOException($"disk full at {p}"); };
            try
            {
                Assert.Throws<IOException>(() => checkpoint.Save(run));
            }
            finally
            {
                Checkpoint.FaultInjection = null;
            }
            Assert.Equal(before, File.ReadAllBytes(bestWeights));
            Assert.Equal(history, Directory.GetDirectories(Path.Combine(run, "history")).Order().ToList());
            Assert.True(File.Exists(Path.Combine(run, "config.json")), point);
            Assert.Empty(Directory.GetDirectories(dir, ".faulty.*"));
        }
    }

    [Fact]
    public void AWriterRecoversTheSubfoldersACrashLeftAside()
    {
        // The state a crash leaves between the swap and the moves: the new checkpoint in place, best/ and history/ beside it.
        string run = Path.Combine(dir, "crashed");
        var config = Tiny(epochs: 1) with { Training = Tiny().Training with { Epochs = 1, KeepLast = 1 }, Validation = new ValidationOptions() };
        using (var training = new TrainingRun(config, run, Pairs, Pairs)) training.Run();
        string aside = Path.Combine(dir, ".crashed.tmp-0123");
        Directory.CreateDirectory(aside);
        Directory.Move(Path.Combine(run, "best"), Path.Combine(aside, "best"));
        Directory.Move(Path.Combine(run, "history"), Path.Combine(aside, "history"));
        File.WriteAllText(Path.Combine(aside, "config.json"), "{}");

        using var reader = Checkpoint.Load(run);                    // a reader changes nothing
        Assert.True(Directory.Exists(aside));
        using (var resumed = TrainingRun.Resume(run, Pairs, Pairs)) { }   // a writer puts everything back
        Assert.False(Directory.Exists(aside));
        Assert.True(File.Exists(Path.Combine(run, "best", "model.safetensors")));
        Assert.Single(Directory.GetDirectories(Path.Combine(run, "history")));
    }

    [Fact]
    public void ResumeOnAChangedCorpusIsAClearError()
    {
        string run = Path.Combine(dir, "changed");
        using (var training = new TrainingRun(Tiny(epochs: 1), run, Pairs)) training.Run();
        var changed = Pairs.Select((p, i) => i == 4 ? p with { Target = "Oh là là !" } : p).ToList();
        using var resumed = TrainingRun.Resume(run, changed);
        var e = Assert.Throws<InvalidDataException>(() => resumed.Run());
        Assert.Contains("the corpus is not the one this run started with", e.Message);
        Assert.Contains("12 pairs", e.Message);
    }

    [Fact]
    public void ResumingFromCSharpReachesTheCliRunsWeightsBitForBit()
    {
        string data = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(data, string.Concat(Pairs.Select(p => $"{p.Source}\t{p.Target}\n")));
        string cli = Path.Combine(dir, "cli");
        var full = Cli.CliTests.Run(null, "train", "--data", data, "--out", cli, "--model", "gru", "--embed", "16", "--hidden", "32",
            "--layers", "1", "--dropout", "0.2", "--epochs", "6", "--batch-size", "3", "--lr", "0.01", "--seed", "3", "--threads", "1", "--save-every", "5");
        Assert.True(full.Code == 0, full.Err + full.Out);

        int threads = get_num_threads();
        try
        {
            var config = RunConfig.Load(Path.Combine(cli, "train.json"));   // the CLI's configuration, as C# reads it
            string csharp = Path.Combine(dir, "csharp");
            using (var first = new TrainingRun(config, csharp))
            {
                using var stop = new CancellationTokenSource();
                first.Progress += (_, p) => { if (p.Step == 13) stop.Cancel(); };
                Assert.Equal(TrainingStop.Cancelled, first.Run(stop.Token).Stop);
            }
            using (var resumed = TrainingRun.Resume(csharp))
                Assert.Equal(24, resumed.Run().Updates);
            Assert.Equal(File.ReadAllBytes(Path.Combine(cli, "model.safetensors")), File.ReadAllBytes(Path.Combine(csharp, "model.safetensors")));
            Assert.Equal(File.ReadAllText(Path.Combine(cli, "train.json")), File.ReadAllText(Path.Combine(csharp, "train.json")));
        }
        finally
        {
            set_num_threads(threads);
        }
    }

    [Fact]
    public void AReaderDuringSavesNeverFailsAndNeverMovesTheWritersFolders()
    {
        string data = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(data, string.Concat(Pairs.Select(p => $"{p.Source}\t{p.Target}\n")));
        string run = Path.Combine(dir, "busy");
        using var trainer = Cli.ResumeTests.Start(["train", "--data", data, "--out", run, "--embed", "16", "--hidden", "32", "--layers", "1",
            "--epochs", "400", "--batch-size", "3", "--save-every", "1", "--keep-last", "2", "--threads", "1"]);
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(run, "trainer.json")) && clock.Elapsed < TimeSpan.FromSeconds(120)) Thread.Sleep(20);
            Assert.False(trainer.HasExited, "the trainer ended before the readers started");
            int loads = 0;
            clock.Restart();
            while (clock.Elapsed < TimeSpan.FromSeconds(6) && !trainer.HasExited)
            {
                using var translator = new Translator(Checkpoint.Load(run));
                Assert.Single(translator.Translate(["Go."]));
                loads++;
            }
            Assert.True(loads > 3, $"only {loads} loads");

            // A second trainer on the busy directory is refused, with the reason.
            var second = Cli.CliTests.Run(null, "train", "--resume", run);
            Assert.Equal(1, second.Code);
            Assert.Contains("another training process is using this run directory", second.Err);
            Assert.False(trainer.HasExited);
        }
        finally
        {
            if (!trainer.HasExited) trainer.Kill();
            trainer.WaitForExit();
        }
    }
}
