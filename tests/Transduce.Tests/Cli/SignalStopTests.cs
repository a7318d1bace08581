using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Transduce.Tests.Cli;

/// <summary>
/// <c>train</c> stopped by SIGTERM (a service manager, a container, a scheduler) or SIGINT (Ctrl+C), sent to a real
/// process: it saves, exits 0, and <c>--resume</c> ends with the weights of an uninterrupted run.
/// </summary>
public sealed class SignalStopTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-signal-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly string[] Pairs =
    [
        "Go.\tVa !", "Hi.\tSalut !", "Run!\tCours !", "Who?\tQui ?", "Wow!\tÇa alors !", "Fire!\tAu feu !",
        "Help!\tÀ l'aide !", "Jump.\tSaute.", "Stop!\tÇa suffit !", "Wait!\tAttends !", "I see.\tJe comprends.", "I lost.\tJ'ai perdu.",
    ];

    private const int Updates = 120;   // 30 epochs of 4 batches

    private static string[] TrainArgs(string data, string output) =>
    [
        "train", "--data", data, "--out", output, "--model", "gru", "--embed", "16", "--hidden", "32", "--layers", "2", "--dropout", "0.3",
        "--lr", "0.01", "--epochs", "30", "--batch-size", "3", "--seed", "11", "--threads", "1", "--save-every", "6", "--bucketed",
    ];

    private static int SavedUpdates(string checkpoint)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "trainer.json")))!["position"]!["step"]!.GetValue<int>();
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or NullReferenceException)
        {
            return -1;
        }
    }

    /// <summary>Starts <c>transduce</c> with <paramref name="args"/>, signals it once it has saved past <paramref name="after"/>, and waits for it.</summary>
    private static async Task<(int Code, string Out, string Err)> Signalled(string signal, string checkpoint, int after, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Transduce.Cli.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        // The handlers are in place once training has begun: a periodic save of this process shows it has.
        var clock = Stopwatch.StartNew();
        while (!p.HasExited && SavedUpdates(checkpoint) <= after && clock.Elapsed < TimeSpan.FromSeconds(120)) await Task.Delay(5);
        if (p.HasExited) Assert.Fail($"the run ended before it could be signalled: {await stdout}{await stderr}");
        using (var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-" + signal, p.Id.ToString() }, UseShellExecute = false })!)
            await kill.WaitForExitAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120)))
            await p.WaitForExitAsync(timeout.Token);
        return (p.ExitCode, await stdout, await stderr);
    }

    [Fact]
    public async Task SigtermAndSigintSaveExitZeroAndResumeToBitIdenticalWeights()
    {
        string data = Path.Combine(dir, "pairs.tsv");
        File.WriteAllText(data, string.Join('\n', Pairs) + "\n");
        string reference = Path.Combine(dir, "reference");
        var full = CliTests.Run(null, TrainArgs(data, reference));
        Assert.True(full.Code == 0, full.Err);
        Assert.Equal(Updates, SavedUpdates(reference));

        // SIGTERM during a fresh run, then SIGINT during its resumption, then a resumption to the end.
        string run = Path.Combine(dir, "stopped");
        var stops = new List<int>();
        foreach (var (signal, notice) in new[] { ("TERM", "SIGTERM: stopping after this update"), ("INT", "Ctrl+C: stopping after this update") })
        {
            int before = stops.Count == 0 ? 0 : stops[^1];
            var (code, output, err) = stops.Count == 0
                ? await Signalled(signal, run, before, TrainArgs(data, run))
                : await Signalled(signal, run, before, "train", "--resume", run, "--threads", "1");
            Assert.True(code == 0, $"SIG{signal}: exit {code}: {err}");
            Assert.Contains(notice, err);
            Assert.Contains("(stopped; --resume continues it)", output);
            int at = SavedUpdates(run);
            Assert.True(at > before && at < Updates, $"SIG{signal} stopped at update {at} (after {before}): too late to prove anything");
            Assert.Contains($"done: {at:N0} updates", output);
            stops.Add(at);
        }

        var resumed = CliTests.Run(null, "train", "--resume", run, "--threads", "1");
        Assert.True(resumed.Code == 0, resumed.Err + resumed.Out);
        Assert.Equal(Updates, SavedUpdates(run));
        Assert.True(File.ReadAllBytes(Path.Combine(reference, "model.safetensors")).AsSpan()
            .SequenceEqual(File.ReadAllBytes(Path.Combine(run, "model.safetensors"))), $"weights differ after stops at updates {string.Join(", ", stops)}");
    }
}
