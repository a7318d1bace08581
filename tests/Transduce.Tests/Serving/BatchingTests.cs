using System.Net;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary>Micro-batching, the bounded queue, timeouts, cancellation and graceful shutdown.</summary>
[Collection(ServingCollection.Name)]
public sealed class BatchingTests(ServingFixture fixture)
{
    [Fact]
    public async Task ConcurrentRequestsAreMergedIntoOneBatchAndAnsweredSeparately()
    {
        // A generous window so that every request sent at once lands in the same round, even on a busy machine.
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.FromMilliseconds(300) }, fixture.Backend, fixture.Model);
        var requests = Enumerable.Range(0, 12).Select(i => ServingFixture.Known[i % ServingFixture.Known.Length]).ToArray();
        var responses = await Task.WhenAll(requests.Select(r => service.TranslateAsync(new { text = new[] { r.Source } })));

        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(HttpStatusCode.OK, responses[i].StatusCode);
            var body = await TestService.JsonAsync(responses[i]);
            Assert.Equal(requests[i].Target, (string?)body["translations"]![0]!["text"]);   // each gets its own sentence back
        }
        var (batches, largest) = service.Metrics.Batches;
        Assert.True(largest > 1, $"largest batch {largest}: requests were not merged");
        Assert.True(batches < requests.Length, $"{batches} batches for {requests.Length} requests");
        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_sentences_translated_total{model=\"default\"} 12\n", metrics);
        Assert.Contains($"transduce_batch_size_count{{model=\"default\"}} {batches}\n", metrics);
        Assert.Contains("transduce_batch_size_sum{model=\"default\"} 12\n", metrics);
    }

    [Fact]
    public async Task ALoneRequestToAnIdleServiceDoesNotWaitForTheWindow()
    {
        // A window of ten minutes: a service that waited for company would not answer within the test's minute.
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.FromMinutes(10) }, fixture.Backend, fixture.Model);
        for (int i = 0; i < 2; i++)
        {
            var known = ServingFixture.Known[i];
            var response = await service.TranslateAsync(new { text = new[] { known.Source } }).WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(known.Target, (string?)(await TestService.JsonAsync(response))["translations"]![0]!["text"]);
        }
    }

    [Fact]
    public async Task RequestsWithDifferentSearchSettingsAreDecodedApart()
    {
        var backend = new GatedBackend();
        backend.Close();
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.FromMilliseconds(50) }, backend, GatedBackend.Info);
        var first = service.TranslateAsync(new { text = new[] { "hold" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the first decode");
        var a = service.TranslateAsync(new { text = new[] { "a1", "a2" } });
        var b = service.TranslateAsync(new { text = new[] { "b" }, beam = 4 });
        var c = service.TranslateAsync(new { text = new[] { "c" } });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 4, "four queued sentences");
        backend.Open();
        await Task.WhenAll(first, a, b, c);
        Assert.Equal("A2", (string?)(await TestService.JsonAsync(await a))["translations"]![1]!["text"]);
        Assert.Equal("C", (string?)(await TestService.JsonAsync(await c))["translations"]![0]!["text"]);
        lock (backend.Calls)
        {
            Assert.Equal(3, backend.Calls.Count);
            var rest = backend.Calls.Skip(1).Select(call => string.Join(",", call.Order(StringComparer.Ordinal))).Order(StringComparer.Ordinal);
            Assert.Equal(["a1,a2,c", "b"], rest);   // same beam: one batch; beam 4: its own
        }
    }

    [Fact]
    public async Task FullQueueAnswers503WithRetryAfter()
    {
        var backend = new GatedBackend();
        backend.Close();
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.Zero, QueueLimit = 3, MaxSentences = 3 }, backend, GatedBackend.Info);
        var busy = service.TranslateAsync(new { text = new[] { "busy" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
        var queued = service.TranslateAsync(new { text = new[] { "one", "two" } });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 2, "two queued sentences");

        var rejected = await service.TranslateAsync(new { text = new[] { "three", "four" } });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, rejected.StatusCode);
        Assert.Equal("application/problem+json", rejected.Content.Headers.ContentType?.MediaType);
        Assert.Equal(TimeSpan.FromSeconds(1), rejected.Headers.RetryAfter?.Delta);
        Assert.Contains("queue", (string?)(await TestService.JsonAsync(rejected))["detail"]);

        var fits = service.TranslateAsync(new { text = new[] { "three" } });   // exactly at the limit: accepted
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 3, "three queued sentences");
        backend.Open();
        Assert.All(await Task.WhenAll(busy, queued, fits), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Contains("transduce_translate_errors_total{reason=\"queue_full\"} 1\n", await service.MetricsAsync());
    }

    [Fact]
    public async Task RequestWhoseClientLeftIsDroppedBeforeDecoding()
    {
        var backend = new GatedBackend();
        backend.Close();
        await using var service = await TestService.StartAsync(new ServeOptions { BatchWindow = TimeSpan.Zero }, backend, GatedBackend.Info);
        var busy = service.TranslateAsync(new { text = new[] { "busy" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");

        using var leave = new CancellationTokenSource();
        var abandoned = service.TranslateAsync(new { text = new[] { "abandoned" } }, leave.Token);
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 1, "the request to be queued");
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);

        backend.Open();
        Assert.Equal(HttpStatusCode.OK, (await busy).StatusCode);
        await TestService.WaitUntilAsync(() => service.Metrics.RequestsDropped == 1, "the drop to be counted");
        Assert.Equal(0, service.Queue.QueuedSentences);
        lock (backend.Calls) Assert.DoesNotContain(backend.Calls, call => call.Contains("abandoned"));
        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_requests_dropped_total{model=\"default\"} 1\n", metrics);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/v1/translate\",status=\"499\"} 1\n", metrics);
    }

    [Fact]
    public async Task SlowTranslationTimesOutWith504AndItsDecodeStops()
    {
        var backend = new GatedBackend();
        backend.Close();   // the decode never finishes by itself
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.Zero, Timeout = TimeSpan.FromMilliseconds(400) }, backend, GatedBackend.Info);
        var decoding = service.TranslateAsync(new { text = new[] { "slow" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
        var waiting = service.TranslateAsync(new { text = new[] { "waiting" } });

        foreach (var response in await Task.WhenAll(decoding, waiting))
        {
            Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        }
        // The decoder stopped although the gate never opened: the timeout reached the running decode.
        await TestService.WaitUntilAsync(() => backend.Running == 0 && service.Metrics.RequestsDropped == 2, "the decodes to stop");
        Assert.True(backend.Cancelled >= 1);
        Assert.True(service.Metrics.DecodesCancelled >= 1);
        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_translate_errors_total{reason=\"timeout\"} 2\n", metrics);
        Assert.Contains("transduce_inflight_cost 0\n", metrics);   // the budget was given back

        backend.Open();
        Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "next" } })).StatusCode);
    }

    [Fact]
    public async Task LargeRequestIsDecodedInSlicesTakingTurnsWithSmallOnes()
    {
        var backend = new GatedBackend();
        backend.Close();
        // A long sentence (40 words) costs 1 × (41 + 92 + 1) = 134 (cap 500: three per slice); the short one 1 × (3 + 16 + 1) = 20.
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.Zero, MaxBatchCost = 500 }, backend, GatedBackend.Info);
        var hold = service.TranslateAsync(new { text = new[] { "hold" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
        string longSentence = string.Join(' ', Enumerable.Repeat("word", 39));
        string[] Large(string tag) => [.. Enumerable.Range(0, 9).Select(i => $"{tag}{i} {longSentence}")];
        var first = service.TranslateAsync(new { text = Large("a") });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 9, "the first large request to be queued");
        var second = service.TranslateAsync(new { text = Large("b") });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 18, "the large requests to be queued");
        var small = service.TranslateAsync(new { text = new[] { "small one" } });
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 19, "the small request to be queued");
        backend.Open();

        Assert.All(await Task.WhenAll(first, second, small), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var body = await TestService.JsonAsync(await first);
        Assert.Equal(Large("a").Select(t => t.ToUpperInvariant()), body["translations"]!.AsArray().Select(t => (string)t!["text"]!));   // slices reassembled in order
        lock (backend.Calls)
        {
            // Slices of three long sentences, taking turns; the small request right after the first slice, not after
            // both large requests' slices; a large request whose rest fits one call counts as small (a's last slice).
            var calls = backend.Calls.Skip(1).Select(c => c.Length == 1 ? c[0] : $"{c[0][0]}×{c.Length}").ToList();
            Assert.Equal(["a×3", "small one", "b×3", "a×3", "a×3", "b×3", "b×3"], calls);
        }
    }

    [Fact]
    public void InflightBudgetKeepsItsLastQuarterForSmallRequests()
    {
        var budget = new CostBudget(1600);   // large: over 100; large ones fill at most 1,200
        Assert.True(budget.TryReserve(1000));
        Assert.False(budget.TryReserve(300));   // 1,300 > 1,200
        Assert.True(budget.TryReserve(100));    // small: may use the reserve
        Assert.True(budget.TryReserve(100));
        Assert.True(budget.TryReserve(100));
        Assert.True(budget.TryReserve(100));    // 1,400
        Assert.True(budget.TryReserve(100));
        Assert.True(budget.TryReserve(100));    // 1,600: full
        Assert.False(budget.TryReserve(1));
        budget.Release(1600);
        Assert.Equal(0, budget.InFlight);
        Assert.True(budget.TryReserve(1500));   // large, but nothing else is in flight: admitted
        Assert.False(budget.TryReserve(101));
        Assert.True(budget.TryReserve(100));
        Assert.Equal(1600, budget.InFlight);
    }

    [Fact]
    public async Task InflightBudgetAnswers503WithRetryAfterNamingTheLimit()
    {
        var backend = new GatedBackend();
        backend.Close();
        // A one-word sentence costs 1 × (2 + 14 + 1) = 17 with the default output limit: a large request for a budget
        // of 48 (over 48 / 16 = 3), so it may fill only three quarters of it, 36.
        await using var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.Zero, MaxRequestCost = 20, MaxInflightCost = 48 }, backend, GatedBackend.Info);
        var busy = service.TranslateAsync(new { text = new[] { "busy" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
        var second = service.TranslateAsync(new { text = new[] { "second" } });   // 34 of 36
        await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 1, "the second request to be queued");

        var refused = await service.TranslateAsync(new { text = new[] { "third" } });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        Assert.NotNull(refused.Headers.RetryAfter?.Delta);
        var problem = await TestService.JsonAsync(refused);
        Assert.Equal("max_inflight_cost", (string?)problem["limit"]);
        Assert.Equal(48, (long)problem["limit_value"]!);
        Assert.Equal(17, (long)problem["requested"]!);
        Assert.Contains("transduce_inflight_cost 34\n", await service.MetricsAsync());

        backend.Open();
        Assert.All(await Task.WhenAll(busy, second), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "third" } })).StatusCode);
        Assert.Contains("transduce_translate_errors_total{reason=\"busy\"} 1\n", await service.MetricsAsync());
    }

    [Fact]
    public async Task BackendFailureIs500ProblemWithoutDetailsAndTheServiceGoesOn()
    {
        var backend = new GatedBackend { Fail = true };
        await using var service = await TestService.StartAsync(new ServeOptions { BatchWindow = TimeSpan.Zero }, backend, GatedBackend.Info);
        var failed = await service.TranslateAsync(new { text = new[] { "boom" } });
        Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode);
        Assert.Equal("application/problem+json", failed.Content.Headers.ContentType?.MediaType);
        Assert.DoesNotContain("backend failure", await failed.Content.ReadAsStringAsync());

        backend.Fail = false;
        Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "fine" } })).StatusCode);
        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_translate_errors_total{reason=\"internal\"} 1\n", metrics);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/v1/translate\",status=\"500\"} 1\n", metrics);
    }

    [Fact]
    public async Task ShutdownFinishesQueuedRequestsAndRefusesNewOnes()
    {
        var backend = new GatedBackend();
        backend.Close();
        var service = await TestService.StartAsync(new ServeOptions { BatchWindow = TimeSpan.Zero }, backend, GatedBackend.Info);
        try
        {
            var decoding = service.TranslateAsync(new { text = new[] { "first" } });
            await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
            var queued = service.TranslateAsync(new { text = new[] { "second" } });
            await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 1, "the second request to be queued");

            var stopping = service.App.StopAsync();
            await TestService.WaitUntilAsync(() => service.Queue.IsStopping, "the queue to stop taking work");
            Assert.False(stopping.IsCompleted);
            var late = await service.TranslateAsync(new { text = new[] { "late" } });
            Assert.Equal(HttpStatusCode.ServiceUnavailable, late.StatusCode);
            Assert.Contains("stopping", (string?)(await TestService.JsonAsync(late))["detail"]);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await service.Client.GetAsync("/healthz")).StatusCode);

            backend.Open();
            await stopping.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal("FIRST", (string?)(await TestService.JsonAsync(await decoding))["translations"]![0]!["text"]);
            Assert.Equal("SECOND", (string?)(await TestService.JsonAsync(await queued))["translations"]![0]!["text"]);
        }
        finally
        {
            backend.Open();
            service.Client.Dispose();
            await service.App.DisposeAsync();
        }
    }

    [Fact]
    public async Task ShutdownPastItsTimeStopsTheDecoderBeforeReturning()
    {
        var backend = new GatedBackend();
        backend.Close();   // a decode that would outlast any shutdown
        var service = await TestService.StartAsync(
            new ServeOptions { BatchWindow = TimeSpan.Zero, ShutdownTimeout = TimeSpan.FromMilliseconds(500) }, backend, GatedBackend.Info);
        try
        {
            var decoding = service.TranslateAsync(new { text = new[] { "endless" } });
            await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
            var queued = service.TranslateAsync(new { text = new[] { "queued" } });
            await TestService.WaitUntilAsync(() => service.Queue.QueuedSentences == 1, "the second request to be queued");

            await service.App.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
            // When StopAsync returns the decoder thread is done: disposing the model now is safe.
            Assert.Equal(0, backend.Running);
            Assert.Equal(1, backend.Cancelled);
            foreach (var response in await Task.WhenAll(decoding, queued))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Contains("stopping", (string?)(await TestService.JsonAsync(response))["detail"]);
            }
            lock (backend.Calls) Assert.Single(backend.Calls);   // the queued request was never started
        }
        finally
        {
            backend.Open();
            service.Client.Dispose();
            await service.App.DisposeAsync();
        }
    }
}
