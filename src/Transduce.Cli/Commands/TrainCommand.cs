using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Transduce.Evaluation;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary><c>train</c>: a run configuration from a preset, a file and flags, handed to <see cref="TrainingRun"/>; progress on the console.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var preset = TrainFlags.PresetOption();
        var config = TrainFlags.ConfigOption();
        var dump = new Option<string?>("--dump-config") { Description = "Print the effective configuration (yaml, or json) of the preset, file and flags, and exit.", Arity = ArgumentArity.ZeroOrOne };
        CliValues.OneOf(dump, ["yaml", "json"]);
        var output = new Option<string?>("--out") { Description = "Run directory to write (required unless --resume)." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Start afresh in an --out directory that holds an earlier run." };
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this directory exactly where it stopped." };
        var command = new Command("train", "Train a model and write a run directory (resumable with --resume).") { preset, config, dump, output, overwrite, resume };
        foreach (var flag in TrainFlags.All) command.Options.Add(flag.Option);
        command.SetAction(r =>
        {
            if (r.GetValue(resume) is { } directory)
            {
                var others = TrainFlags.GivenNames(r, "--threads").Concat(new Option[] { preset, config, output }.Where(o => r.GetResult(o) is not null).Select(o => o.Name)).ToList();
                if (others.Count > 0) throw new ArgumentException($"--resume continues a run as it was configured (its train.json); only --threads may change, not {string.Join(", ", others)}");
                int? threads = TrainFlags.Given(r).Where(kv => kv.Key == "training.threads").Select(kv => (int?)kv.Value).FirstOrDefault();
                using var resumed = TrainingRun.Resume(directory, threads: threads);
                return Train(resumed);
            }
            var settings = TrainFlags.Compose(r, preset, config);
            if (r.GetResult(dump) is not null)
            {
                settings.Validate();
                Console.Write(r.GetValue(dump) == "json" ? settings.ToJson() + "\n" : settings.ToYaml());
                return 0;
            }
            string outDir = r.GetValue(output) ?? throw new ArgumentException("train: --out DIR is required (or --resume DIR)");
            using var run = new TrainingRun(settings, outDir, overwrite: r.GetValue(overwrite));
            return Train(run);
        });
        return command;
    }

    private static int Train(TrainingRun run)
    {
        var inv = CultureInfo.InvariantCulture;
        var view = ProgressView.ForConsole();
        run.Validated += (_, v) => view.WriteLine(string.Create(inv,
            $"  validation of {v.Weights}: loss {v.Loss:F4}  BLEU {v.Bleu:F2}{(v.IsBest ? "  (best so far)" : "")}"));
        run.CheckpointWriting += (_, dir) =>
        {
            if (run.LossCurve.Count > 0) Plots.SaveLossCurve(Path.Combine(dir, "loss.png"), Downsample(run.LossCurve, 200));
        };

        // Ctrl+C (SIGINT) and SIGTERM (how service managers, containers and schedulers stop a job) stop the run the same
        // way: after the current update, saved and its final weights validated, exit 0; --resume continues it exactly.
        using var cancel = new CancellationTokenSource();
        void OnSignal(PosixSignalContext context)
        {
            if (cancel.IsCancellationRequested) return;   // a second signal ends the process at once
            context.Cancel = true;
            string name = context.Signal == PosixSignal.SIGTERM ? "SIGTERM" : "Ctrl+C";
            view.WriteWarning($"{name}: stopping after this update: the run is saved and its final weights validated ({name} again quits at once)");
            cancel.Cancel();
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var s = view.Run(run, cancel.Token);
        string why = s.Stop switch
        {
            TrainingStop.TimeLimit => " (time limit)", TrainingStop.EarlyStop => " (early stop)", TrainingStop.MaxUpdates => " (max updates)",
            TrainingStop.Cancelled => " (stopped; --resume continues it)", _ => "",
        };
        Console.WriteLine(string.Create(inv,
            $"done: {s.Updates:N0} updates in {s.Elapsed.TotalSeconds:F1}s, {s.TokensPerSecond:N0} target tokens/s, padding {s.PaddingFraction:P1}, " +
            $"final loss {s.FinalLoss:F3}{why}; checkpoint: {s.Directory}"));
        if (s.Best is { } best)
            Console.WriteLine(string.Create(inv,
                $"best model ({run.Config.Validation.Metric.ToString().ToLowerInvariant()}): {s.BestDirectory} = {best.Weights}, valid BLEU {best.Bleu:F2}, loss {best.Loss:F4}"));
        foreach (var e in s.Examples) Console.WriteLine(string.Create(inv, $"{e.Source} => {e.Translation}, bleu,{e.Bleu:F3}"));
        return 0;
    }

    /// <summary>At most <paramref name="points"/> points, each the mean of a run of consecutive ones.</summary>
    private static List<(double X, double Loss)> Downsample(IReadOnlyList<(double Epoch, double Loss)> curve, int points)
    {
        int group = Math.Max(1, (curve.Count + points - 1) / points);
        return [.. curve.Chunk(group).Select(g => (g.Average(c => c.Epoch), g.Average(c => c.Loss)))];
    }
}
