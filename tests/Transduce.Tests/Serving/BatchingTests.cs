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
        Assert.Contains("transduce_sentences_translated_total 12\n", metrics);
        Assert.Contains($"transduce_batch_size_count {batches}\n", metrics);
        Assert.Contains("transduce_batch_size_sum 12\n", metrics);
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
        Assert.Contains("transduce_requests_dropped_total 1\n", metrics);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/v1/translate\",status=\"499\"} 1\n", metrics);
    }

    [Fact]
    public async Task SlowTranslationTimesOutWith504AndItsQueuedPeersAreDropped()
    {
        var backend = new GatedBackend();
        backend.Close();
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
        backend.Open();
        await TestService.WaitUntilAsync(() => service.Metrics.RequestsDropped == 1, "the timed-out queued request to be dropped");
        lock (backend.Calls) Assert.DoesNotContain(backend.Calls, call => call.Contains("waiting"));
        Assert.Contains("transduce_translate_errors_total{reason=\"timeout\"} 2\n", await service.MetricsAsync());
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
}
