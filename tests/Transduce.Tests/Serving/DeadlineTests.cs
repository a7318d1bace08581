using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Transduce.Bench.Load;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Serving;
using Transduce.Translation;

namespace Transduce.Tests.Serving;

/// <summary>
/// Deadlines: a request that cannot be answered in its time is refused up front; the warm-up that makes the first
/// request as fast as the next; and the drain on SIGTERM of the real process, which answers 503 rather than resetting
/// connections.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed class DeadlineTests(ServingFixture fixture)
{
    /// <summary>A sentence of <paramref name="words"/> one-letter words: the fake decoder's cost grows with it.</summary>
    private static string Words(int words) => string.Join(' ', Enumerable.Repeat("w", words));

    [Fact]
    public async Task RequestThatCannotFinishInItsTimeIsRefusedUpFrontAndWorkAheadCounts()
    {
        var backend = new GatedBackend();
        backend.Close();
        var options = new ServeOptions { BatchWindow = TimeSpan.Zero, Timeout = TimeSpan.FromSeconds(10) };
        await using var service = await TestService.StartAsync(options, backend, GatedBackend.Info);
        service.Queue.Drain.Observe(cost: 1_000, seconds: 1);   // the decoder's pace: 1,000 cost units a second

        var hold = service.TranslateAsync(new { text = new[] { "hold" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");

        // 16 sentences of 300 words: 16 × (300 + 1 + 256 + …) ≈ 9,000 units, about 9 s at this pace: more than three
        // quarters of the 10 s the request may take. Refused at once, saying why and when to come back.
        var large = await service.TranslateAsync(new { text = Enumerable.Repeat(Words(300), 16).ToArray() });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, large.StatusCode);
        var problem = await TestService.JsonAsync(large);
        Assert.Equal("timeout_s", (string?)problem["limit"]);
        Assert.Contains("time limit of 10 s", (string?)problem["detail"]);
        int retry = int.Parse(large.Headers.GetValues("Retry-After").Single());
        Assert.InRange(retry, 1, 60);

        // Half that (about 4.5 s) fits alone and is admitted...
        var half = service.TranslateAsync(new { text = Enumerable.Repeat(Words(300), 8).ToArray() });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 8, "the first half to be queued");
        // ...but a second one would share the decoder with the first until both are done (about 9 s): refused.
        var second = await service.TranslateAsync(new { text = Enumerable.Repeat(Words(300), 8).ToArray() });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, second.StatusCode);
        Assert.Equal("timeout_s", (string?)(await TestService.JsonAsync(second))["limit"]);
        // A small request takes its turn between slices: admitted.
        var small = service.TranslateAsync(new { text = new[] { "small" } });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 9, "the small request to be queued");

        backend.Open();
        foreach (var response in await Task.WhenAll(hold, half, small)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("transduce_translate_errors_total{reason=\"too_late\"} 2\n", await service.MetricsAsync());
    }

    [Fact]
    public async Task WithoutAKnownPaceNothingIsRefusedForTime()
    {
        var backend = new GatedBackend();
        var options = new ServeOptions { BatchWindow = TimeSpan.Zero, Timeout = TimeSpan.FromSeconds(10) };
        await using var service = await TestService.StartAsync(options, backend, GatedBackend.Info);
        var response = await service.TranslateAsync(new { text = Enumerable.Repeat(Words(300), 16).ToArray() });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(service.Queue.Drain.CostPerSecond > 0, "the decoder call taught the queue its pace");
    }

    [Fact]
    public async Task WarmUpDecodesTheUsualShapesBeforeTheFirstRequestAndLearnsThePace()
    {
        var backend = new GatedBackend();
        var options = new ServeOptions { BatchWindow = TimeSpan.Zero, DefaultBeam = 2, MaxBeam = 4, MaxOutputTokens = 100 };
        await using var service = await TestService.StartAsync(options, [new ServedModel(backend, GatedBackend.Info)], warmUp: true);

        lock (backend.Calls)
        {
            // greedy alone, greedy in a batch, the default beam, the largest beam, the batch again (warm, for the pace)
            Assert.Equal([1, 8, 1, 1, 8], backend.Calls.Select(c => c.Length));
        }
        Assert.True(service.Queue.Drain.CostPerSecond > 0, "the warm-up gave admission its first pace");
        Assert.Equal(32, backend.LastOptions!.MaxOutputTokens);   // warm-up outputs are capped
        Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "first" } })).StatusCode);
        lock (backend.Calls) Assert.Equal(6, backend.Calls.Count);
    }

    [Fact]
    public async Task SigtermDrainsWhileTheServerStillAnswersThen503sWhatIsLeftAndExitsZero()
    {
        // A GRU that can never say <eos> decodes until its output limit, here millions of tokens: its requests are
        // still running when the drain time is up.
        string directory = fixture.EndlessGru("endless-gru-drain");
        string cli = Path.Combine(AppContext.BaseDirectory, "Transduce.Cli.dll");
        using var server = await ServeProcess.StartAsync(cli, directory,
        [
            "--threads", "1", "--batch-window-ms", "0", "--max-output-ratio", "1000000", "--max-output-tokens", "10000000",
            "--max-request-cost", "100000000", "--max-inflight-cost", "100000000", "--max-batch-cost", "100000000",
            "--timeout-s", "3600", "--shutdown-timeout-s", "2",
        ], TimeSpan.FromSeconds(60));
        Assert.Contains("warmed up", server.Log);
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromSeconds(60) };

        // One request decoding, one waiting behind it (another beam: not batched with it).
        var decoding = http.PostAsJsonAsync("/v1/translate", new { text = new[] { "Go." } });
        await Task.Delay(300);
        var waiting = http.PostAsJsonAsync("/v1/translate", new { text = new[] { "I lost." }, beam = 2 });
        await WaitForAsync(async () => TestService.WithoutScope(await http.GetStringAsync("/metrics")).Contains("transduce_queue_sentences{model=\"endless-gru-drain\"} 1\n"),
            "the second request to wait", server);

        var signalled = Stopwatch.StartNew();
        server.Signal(ServeProcess.SigTerm);
        // Draining: the server still accepts connections, and says it is stopping.
        await WaitForAsync(async () => (await http.GetAsync("/healthz")).StatusCode == HttpStatusCode.ServiceUnavailable, "/healthz to answer 503", server);
        using (var fresh = new HttpClient { BaseAddress = server.Url })
        {
            var late = await fresh.PostAsJsonAsync("/v1/translate", new { text = new[] { "Go." } });
            Assert.Equal(HttpStatusCode.ServiceUnavailable, late.StatusCode);
            Assert.Contains("stopping", await late.Content.ReadAsStringAsync());
        }
        Assert.True(signalled.Elapsed < TimeSpan.FromSeconds(2), $"the probes took {signalled.Elapsed}: the drain was over before they ran");

        // Past the drain time, what is left is answered 503, not cut off.
        foreach (var response in await Task.WhenAll(decoding, waiting))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Contains("stopping", await response.Content.ReadAsStringAsync());
        }
        Assert.InRange(signalled.Elapsed, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(30));
        Assert.True(await server.WaitForExitAsync(TimeSpan.FromSeconds(30)), "the server did not exit:\n" + server.Log);
        Assert.Equal(0, server.ExitCode);
        Assert.DoesNotContain("client_gone", server.Log);
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what, ServeProcess server, int seconds = 20)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(seconds)) throw new TimeoutException($"waited {seconds} s for {what}\n{server.Log}");
            await Task.Delay(20);
        }
    }
}
