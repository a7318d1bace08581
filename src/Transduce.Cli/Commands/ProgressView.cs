using System.Globalization;
using Spectre.Console;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary>
/// Shows training progress: a live bar with loss, tokens/s and ETA on a terminal; one line per epoch otherwise. The run's
/// messages (the header line, validations, warnings) go through <see cref="WriteLine"/> and <see cref="WriteWarning"/>,
/// which print them above the live bar instead of letting the bar draw over them.
/// </summary>
internal sealed class ProgressView(IAnsiConsole console, bool interactive)
{
    private volatile bool live;

    /// <summary>The view of this process's console: live when standard output is a terminal.</summary>
    public static ProgressView ForConsole() => new(AnsiConsole.Console, AnsiConsole.Profile.Capabilities.Interactive);

    /// <summary>A line of the run's output (standard output).</summary>
    public void WriteLine(string text)
    {
        if (live) console.WriteLine(text);
        else Console.WriteLine(text);
    }

    /// <summary>A warning (standard error; above the live bar when both go to the terminal).</summary>
    public void WriteWarning(string text)
    {
        if (live && !Console.IsErrorRedirected) console.WriteLine(text);
        else Console.Error.WriteLine(text);
    }

    /// <summary>
    /// How far a run is and how long it has left, by whichever stopping rule ends it first: the last epoch, the update
    /// cap (<see cref="TrainingOptions.MaxUpdates"/>) or the time limit. Early stopping cannot be foreseen, so it is not counted.
    /// </summary>
    /// <returns>The fraction done (0 to 1), the time left at the pace so far, and the rule it is counted by.</returns>
    internal static (double Fraction, TimeSpan Remaining, string Rule) Estimate(TrainingProgress p, TrainingOptions options)
    {
        bool capped = options.MaxUpdates is int max && max < p.TotalSteps;
        int steps = capped ? options.MaxUpdates!.Value : p.TotalSteps;
        double fraction = Math.Min(1, p.Step / (double)Math.Max(1, steps));
        var remaining = TimeSpan.FromSeconds(p.Elapsed.TotalSeconds / Math.Max(1, p.Step) * Math.Max(0, steps - p.Step));
        string rule = capped ? "max updates" : "epochs";
        if (options.TimeLimit is { } limit && limit > TimeSpan.Zero)
        {
            var byTime = limit > p.Elapsed ? limit - p.Elapsed : TimeSpan.Zero;
            if (byTime < remaining) (fraction, remaining, rule) = (Math.Min(1, p.Elapsed / limit), byTime, "time limit");
        }
        return (fraction, remaining, rule);
    }

    /// <summary>The ETA as the bar and the log lines show it: <c>eta 00:03:10 (max updates)</c>.</summary>
    internal static string Eta(TrainingProgress p, TrainingOptions options)
    {
        var (_, left, rule) = Estimate(p, options);
        return string.Create(CultureInfo.InvariantCulture, $"eta {(int)left.TotalHours:00}:{left.Minutes:00}:{left.Seconds:00} ({rule})");
    }

    /// <summary>Runs <paramref name="run"/> with its progress, messages and warnings shown.</summary>
    public TrainingSummary Run(TrainingRun run, CancellationToken cancellation)
    {
        var options = run.Config.Training;
        run.Message += (_, text) => WriteLine(text);
        run.Warning += (_, text) => WriteWarning(text);
        if (!interactive)
        {
            // Not a terminal (a log file, CI): one line per epoch, and one every 30 s within long epochs.
            TrainingProgress? last = null;
            var nextLine = TimeSpan.FromSeconds(30);
            run.Progress += (_, p) =>
            {
                last = p;
                if (p.Elapsed < nextLine) return;
                nextLine = p.Elapsed + TimeSpan.FromSeconds(30);
                Console.WriteLine($"  step {p.Step}/{p.TotalSteps}  epoch {p.Epoch}  loss {p.Loss:F4}  {p.TokensPerSecond:N0} tok/s  {p.Elapsed:hh\\:mm\\:ss}  {Eta(p, options)}");
            };
            run.EpochCompleted += (_, e) => Console.WriteLine(
                $"epoch {e.Epoch}/{options.Epochs}  loss {e.Loss:F4}  {last?.TokensPerSecond:N0} tok/s  {e.Elapsed:hh\\:mm\\:ss}");
            return run.Run(cancellation);
        }
        TrainingSummary? summary = null;
        live = true;
        try
        {
            console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: 1000);
                    run.Progress += (_, p) =>
                    {
                        // 99 % at most until the run has returned: the last update is followed by saving and validating.
                        task.Value = Math.Min(0.99, Estimate(p, options).Fraction) * 1000;
                        task.Description = $"epoch {p.Epoch}/{options.Epochs} loss {p.Loss:F3} {p.TokensPerSecond:N0} tok/s {Eta(p, options)}";
                    };
                    summary = run.Run(cancellation);
                    task.Description = $"done: {summary.Updates:N0} updates";
                    // Draw the new description before the full bar: the refresh thread reads a task's description and
                    // value one after the other, and could otherwise draw the old one at 100 % (a test saw it under load).
                    ctx.Refresh();
                    task.Value = task.MaxValue;
                });
        }
        finally
        {
            live = false;
        }
        return summary!;
    }
}
