using Transduce.Bench.Load;

namespace Transduce.Tests.Serving;

/// <summary>
/// Roadmap "Serve", acceptance: killing the server mid-load loses no accepted request silently — each client sees
/// either a translation or an error. A small version of <c>Transduce.Bench.Load --kill-test</c> against the real
/// <c>transduce serve</c> process.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed class ServeKillTests(ServingFixture fixture)
{
    [Fact]
    public async Task SigkillMidLoadLeavesNoRequestWithoutAnOutcome()
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "Transduce.Cli.dll");
        using var server = await ServeProcess.StartAsync(cli, fixture.CheckpointDirectory, ["--threads", "1"], TimeSpan.FromSeconds(60));
        var options = new KillCheckOptions
        {
            Clients = 8, LoadBeforeSignal = TimeSpan.FromSeconds(1), Signal = ServeProcess.SigKill,
            HangTimeout = TimeSpan.FromSeconds(8), WarmupRequests = 4,
        };

        var result = await KillCheck.RunAsync(server, [.. ServingFixture.Known.Select(k => k.Source)], options);

        string counts = $"started {result.Started}, 200 {result.Answered}, errors {result.ErrorCount} " +
            $"({string.Join(", ", result.Errors.Select(p => $"{p.Key} {p.Value}"))}), hung {result.Hung}, in flight at kill {result.InFlightAtSignal}";
        Assert.True(result.Hung == 0, "requests hung after SIGKILL: " + counts);
        Assert.True(result.Answered + result.ErrorCount == result.Started, "requests without an outcome: " + counts);
        Assert.True(result.Answered > 0, "no request was answered before the kill; the load never ran: " + counts);
        Assert.True(result.InFlightAtSignal > 0, "no request was in flight at the kill; the test proved nothing: " + counts);
        // Every client stops at its first failure, and after the kill every client's next request must fail visibly.
        Assert.Equal(options.Clients, result.ErrorCount);
        Assert.All(result.Errors.Keys, kind => Assert.Contains(kind, new[] { RequestOutcome.Refused, RequestOutcome.Reset }));
        Assert.Equal(128 + ServeProcess.SigKill, result.ExitCode);
    }
}
