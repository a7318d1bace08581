using Spectre.Console;
using Transduce.Cli.Commands;
using Transduce.Tests.Training;
using Transduce.Training;

namespace Transduce.Tests.Cli;

/// <summary><c>train</c>'s progress: the ETA and percentage of whichever stopping rule ends the run first, and a live bar that keeps the lines above it.</summary>
public sealed class ProgressViewTests
{
    private static TrainingProgress At(int step, int totalSteps, double seconds) => new(1, step, totalSteps, 1.0, 100, TimeSpan.FromSeconds(seconds));

    [Fact]
    public void TheEtaIsCountedByTheRuleThatStopsTheRunFirst()
    {
        var epochs = new TrainingOptions { Epochs = 4 };
        Assert.Equal((0.25, TimeSpan.FromSeconds(30), "epochs"), ProgressView.Estimate(At(25, 100, 10), epochs));

        // --max-updates 50 of 100 steps: half done after 25, and done (no time left) at 50 — not "100 %, eta 3 minutes".
        var capped = epochs with { MaxUpdates = 50 };
        Assert.Equal((0.5, TimeSpan.FromSeconds(10), "max updates"), ProgressView.Estimate(At(25, 100, 10), capped));
        Assert.Equal((1.0, TimeSpan.Zero, "max updates"), ProgressView.Estimate(At(50, 100, 20), capped));
        // A cap beyond the epochs does not count.
        Assert.Equal("epochs", ProgressView.Estimate(At(25, 100, 10), epochs with { MaxUpdates = 1000 }).Rule);

        // --time-limit: the clock wins when it ends the run before the work does, and not otherwise.
        var timed = epochs with { TimeLimit = TimeSpan.FromSeconds(20) };
        Assert.Equal((0.5, TimeSpan.FromSeconds(10), "time limit"), ProgressView.Estimate(At(25, 100, 10), timed));
        Assert.Equal((0.25, TimeSpan.FromSeconds(30), "epochs"), ProgressView.Estimate(At(25, 100, 10), epochs with { TimeLimit = TimeSpan.FromMinutes(5) }));
        Assert.Equal((1.0, TimeSpan.Zero, "time limit"), ProgressView.Estimate(At(26, 100, 25), timed));
        // All three: the earliest.
        Assert.Equal("max updates", ProgressView.Estimate(At(25, 100, 10), timed with { MaxUpdates = 30 }).Rule);
        Assert.Equal("eta 00:00:10 (time limit)", ProgressView.Eta(At(25, 100, 10), timed));
        Assert.Equal("eta 27:46:40 (epochs)", ProgressView.Eta(At(1, 10_001, 10), epochs));
    }

    [Fact]
    public void TheLiveBarKeepsTheHeaderAndShowsAHundredPercentOnlyWhenDone()
    {
        using var dir = new TempDir();
        using var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(writer),
        });
        var config = TrainingRunTests.Tiny(epochs: 3) with { Training = TrainingRunTests.Tiny().Training with { Epochs = 3, MaxUpdates = 5 } };
        using var run = new TrainingRun(config, dir.File("run"), TrainingRunTests.Pairs);
        var summary = new ProgressView(console, interactive: true).Run(run, CancellationToken.None);
        Assert.Equal(5, summary.Updates);

        string text = writer.ToString();
        // The header went through the live console, which prints it once above the bar (a line written to the stream
        // beneath would be drawn over by the next frame).
        const string Header = "train pairs given in memory: 12 pairs";
        int header = text.IndexOf(Header, StringComparison.Ordinal);
        Assert.True(header >= 0, text);
        Assert.Equal(header, text.LastIndexOf(Header, StringComparison.Ordinal));
        int done = text.IndexOf("done: 5 updates", StringComparison.Ordinal);
        Assert.True(done > header);
        Assert.Contains("100%", text[done..]);
        Assert.DoesNotContain("100%", text[..done]);
    }
}
