using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Training;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Bench;

/// <summary>
/// <c>ddp</c>: training throughput on one prepared run (<c>transduce prepare</c>) of our <see cref="Trainer"/> and of the
/// PyTorch DDP trainer (python/transduce_torch) under <c>torchrun</c> with 1 and with 2 CPU ranks, all on the same
/// batches from the same start weights, in one run and repeated; reports target tokens/s (ranges) and how closely the
/// three agree on the first updates' losses (exactly, to float noise, when the model has no dropout).
/// </summary>
internal static class DdpBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The <c>ddp</c> command.</summary>
    public static Command Create()
    {
        var prepared = new Option<string>("--prepared") { Description = "A folder written by `transduce prepare`.", Required = true };
        var updates = new Option<int>("--updates") { Description = "Timed updates per run.", DefaultValueFactory = _ => 30 };
        var warmup = new Option<int>("--warmup") { Description = "Updates run before timing starts.", DefaultValueFactory = _ => 3 };
        var repeat = new Option<int>("--repeat") { Description = "Rounds (each runs the three trainers in turn).", DefaultValueFactory = _ => 3 };
        var threads = new Option<int>("--threads") { Description = "CPU cores to use: our Trainer and 1 rank get them all, 2 ranks half each.", DefaultValueFactory = _ => 2 };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var command = new Command("ddp", "Training throughput of our Trainer vs torchrun with 1 and 2 CPU ranks on the same prepared data.")
        {
            prepared, updates, warmup, repeat, threads, output,
        };
        command.SetAction(r => Run(r.GetValue(prepared)!, r.GetValue(updates), r.GetValue(warmup), r.GetValue(repeat), r.GetValue(threads), r.GetValue(output)));
        return command;
    }

    /// <summary>One measured run: tokens and seconds of the timed updates, and the losses of every update.</summary>
    private sealed record Measure(long Tokens, double Seconds, List<double> Losses)
    {
        public double Rate => Tokens / Seconds;
    }

    private static int Run(string prepared, int updates, int warmup, int repeat, int threads, string? reportPath)
    {
        var options = RunConfigFile.ReadRunFile(Path.Combine(prepared, "train.json")).Training with { TimeLimit = null, MaxUpdates = null };
        var pairs = Preparation.TryReadPairs(prepared) ?? throw new ArgumentException($"{prepared}: no token shards (write it with transduce prepare)");
        var names = new[] { "Transduce Trainer (TorchSharp, libtorch 2.10)", "torchrun, 1 rank", "torchrun, 2 ranks (gloo)" };
        var results = names.ToDictionary(n => n, _ => new List<Measure>());
        string work = Directory.CreateTempSubdirectory("transduce-bench-ddp-").FullName;
        try
        {
            for (int round = 1; round <= repeat; round++)
            {
                Console.Error.WriteLine($"round {round}/{repeat}: Transduce Trainer, {warmup} + {updates} updates on {threads} threads…");
                results[names[0]].Add(Ours(prepared, pairs, options, warmup + updates, warmup, threads));
                Console.Error.WriteLine($"round {round}/{repeat}: torchrun, 1 rank × {threads} threads…");
                results[names[1]].Add(Torchrun(prepared, work, 1, threads, warmup + updates, warmup));
                Console.Error.WriteLine($"round {round}/{repeat}: torchrun, 2 ranks × {Math.Max(1, threads / 2)} threads…");
                results[names[2]].Add(Torchrun(prepared, work, 2, Math.Max(1, threads / 2), warmup + updates, warmup));
            }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }

        // The three must have trained the same model on the same batches: equal losses over the first updates.
        var reference = results[names[0]][0].Losses;
        int compared = Math.Min(5, reference.Count);
        double worst = results.Values.SelectMany(list => list).Max(m => Enumerable.Range(0, compared).Max(i => Math.Abs(m.Losses[i] - reference[i]) / Math.Max(1, reference[i])));
        var s = new StringBuilder();
        s.AppendLine(Inv, $"Training throughput on `{Path.GetFullPath(prepared)}` ({pairs.Count:N0} pairs; batches of ≤ {options.MaxTokens?.ToString("N0", Inv) ?? "—"} padded tokens, " +
                          $"≤ {options.BatchSize:N0} pairs): {updates} updates timed after {warmup}, {repeat} rounds, {threads} cores in all.");
        s.AppendLine();
        s.AppendLine("| trainer | target tokens/s (range over rounds) | median | vs Transduce (median) |");
        s.AppendLine("| --- | ---: | ---: | ---: |");
        double ours = Median(results[names[0]].Select(m => m.Rate));
        foreach (var name in names)
        {
            var rates = results[name].Select(m => m.Rate).Order().ToList();
            s.AppendLine(Inv, $"| {name} | {rates[0]:N0} – {rates[^1]:N0} | {Median(rates):N0} | {Median(rates) / ours:F2}× |");
        }
        s.AppendLine();
        double dropout = JsonNode.Parse(File.ReadAllText(Path.Combine(prepared, "config.json")))!["model"]!["dropout"]!.GetValue<double>();
        s.AppendLine(Inv, $"First {compared} updates' losses: largest relative difference to the Transduce Trainer's first round {worst:E1} " +
                          $"(same start weights, same batches, {TrainingPrecisions.Name(options.Precision)}{(dropout > 0 ? $"; dropout {dropout}: each trainer draws its own masks, so the losses agree only statistically" : "")}).");
        Console.WriteLine(s.ToString());
        if (reportPath is not null) File.WriteAllText(reportPath, s.ToString());
        // Without dropout the three compute the same function of the same weights and batches: they must agree, to float
        // noise in float32 and to bf16 rounding in bfloat16 (the DDP tests see differences of about 1e-2 there).
        double tolerance = options.Precision == TrainingPrecision.BFloat16 ? 3e-2 : 1e-3;
        return dropout > 0 || worst < tolerance ? 0 : 1;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static Measure Ours(string prepared, IReadOnlyList<EncodedPair> pairs, TrainingOptions options, int total, int warmup, int threads)
    {
        set_num_threads(threads);
        using var checkpoint = Checkpoint.Load(prepared);
        checkpoint.Model.train();
        var target = checkpoint.TargetVocabulary;
        var losses = new List<double>();
        var marks = new Dictionary<int, (double Tokens, double Seconds)>();
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        manual_seed(options.Seed);
        Trainer.Train(checkpoint.Model, pairs, new SpecialIds(target.PadId, target.BosId, target.EosId),
            Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength), options,
            p =>
            {
                losses.Add(p.Loss);
                marks[p.Step] = (p.TokensPerSecond * p.Elapsed.TotalSeconds, clock.Elapsed.TotalSeconds);
                if (p.Step >= total) stop.Cancel();
            }, cancellation: stop.Token);
        return new Measure((long)Math.Round(marks[total].Tokens - marks[warmup].Tokens), marks[total].Seconds - marks[warmup].Seconds, losses);
    }

    private static Measure Torchrun(string prepared, string work, int ranks, int threads, int total, int warmup)
    {
        string run = Path.Combine(work, $"run-{Guid.NewGuid():N}");
        string log = run + ".jsonl";
        string torchrun = Path.Combine(Path.GetDirectoryName(PythonTwin.Interpreter)!, "torchrun");
        var start = new ProcessStartInfo(torchrun) { UseShellExecute = false, RedirectStandardOutput = true };
        // --redirects 1 --tee 1: Debian 12's torch 1.13 under Python 3.11 fails with torchrun's default (--redirects 0).
        foreach (string a in new[] { "--standalone", "--nproc_per_node", ranks.ToString(Inv), "--redirects", "1", "--tee", "1",
                     "--log_dir", run + "-logs", "-m", "transduce_torch.train", prepared, "--out", run, "--threads", threads.ToString(Inv),
                     "--max-updates", total.ToString(Inv), "--log", log, "--progress-every", "0" })
            start.ArgumentList.Add(a);
        start.Environment["PYTHONPATH"] = Path.GetFullPath(Path.Combine(PythonTwin.ScriptFolder, "..", "..", "python"));
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {torchrun}");
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"torchrun exited with code {process.ExitCode}:\n{output}");
        var lines = File.ReadAllLines(log).Select(l => JsonNode.Parse(l)!).ToList();
        JsonNode At(int step) => lines.Single(l => l["step"]!.GetValue<int>() == step);
        return new Measure(At(total)["tokens"]!.GetValue<long>() - At(warmup)["tokens"]!.GetValue<long>(),
            At(total)["elapsed"]!.GetValue<double>() - At(warmup)["elapsed"]!.GetValue<double>(),
            lines.Select(l => l["loss"]!.GetValue<double>()).ToList());
    }
}
