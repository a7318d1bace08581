using Spectre.Console;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary>Shows training progress: a live bar with loss, tokens/s and ETA on a terminal; one line per epoch otherwise.</summary>
internal static class ProgressView
{
    private static string Eta(TrainingProgress p, TimeSpan? limit)
    {
        var byWork = TimeSpan.FromSeconds(p.Elapsed.TotalSeconds / Math.Max(1, p.Step) * (p.TotalSteps - p.Step));
        if (limit is { } l && l - p.Elapsed < byWork) byWork = l > p.Elapsed ? l - p.Elapsed : TimeSpan.Zero;
        return $"  eta {byWork:hh\\:mm\\:ss}";
    }

    public static TrainingSummary Run(TrainingRun run, CancellationToken cancellation)
    {
        var options = run.Config.Training;
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            // Not a terminal (a log file, CI): one line per epoch, and one every 30 s within long epochs.
            TrainingProgress? last = null;
            var nextLine = TimeSpan.FromSeconds(30);
            run.Progress += (_, p) =>
            {
                last = p;
                if (p.Elapsed < nextLine) return;
                nextLine = p.Elapsed + TimeSpan.FromSeconds(30);
                Console.WriteLine($"  step {p.Step}/{p.TotalSteps}  epoch {p.Epoch}  loss {p.Loss:F4}  {p.TokensPerSecond:N0} tok/s  {p.Elapsed:hh\\:mm\\:ss}{Eta(p, options.TimeLimit)}");
            };
            run.EpochCompleted += (_, e) => Console.WriteLine(
                $"epoch {e.Epoch}/{options.Epochs}  loss {e.Loss:F4}  {last?.TokensPerSecond:N0} tok/s  {e.Elapsed:hh\\:mm\\:ss}");
            return run.Run(cancellation);
        }
        TrainingSummary? summary = null;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: 1000);
                run.Progress += (_, p) =>
                {
                    // Progress is the larger of work done and time used, so a time-limited run fills the bar too.
                    double fraction = p.Step / (double)Math.Max(1, p.TotalSteps);
                    if (options.TimeLimit is { } limit) fraction = Math.Max(fraction, p.Elapsed / limit);
                    if (options.MaxUpdates is int max) fraction = Math.Max(fraction, p.Step / (double)max);
                    task.Value = Math.Min(1, fraction) * 1000;
                    task.Description = $"epoch {p.Epoch}/{options.Epochs} loss {p.Loss:F3} {p.TokensPerSecond:N0} tok/s{Eta(p, options.TimeLimit)}";
                };
                summary = run.Run(cancellation);
                task.Value = task.MaxValue;
            });
        return summary!;
    }
}
