using Spectre.Console;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary>Shows training progress: a live bar with loss, tokens/s and ETA on a terminal; one line per epoch otherwise.</summary>
internal static class ProgressView
{
    public static TrainingResult Run(TrainingOptions options, Func<Action<TrainingProgress>, Action<EpochResult>, TrainingResult> train)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            TrainingProgress? last = null;
            return train(p => last = p, e => Console.WriteLine(
                $"epoch {e.Epoch}/{options.Epochs}  loss {e.Loss:F4}  {last?.TokensPerSecond:N0} tok/s  {e.Elapsed:hh\\:mm\\:ss}"));
        }
        TrainingResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: 1);
                result = train(p =>
                {
                    task.MaxValue = p.TotalSteps;
                    task.Value = p.Step;
                    task.Description = $"epoch {p.Epoch}/{options.Epochs} loss {p.Loss:F3} {p.TokensPerSecond:N0} tok/s";
                }, _ => { });
                task.Value = task.MaxValue;
            });
        return result!;
    }
}
