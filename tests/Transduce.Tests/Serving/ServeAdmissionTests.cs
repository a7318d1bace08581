using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Transduce.Translation;
using Transduce.Bench.Load;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary>
/// The real <c>transduce serve</c> under hostile load: requests over the cost budget, a flood of the largest admissible
/// requests, a decode abandoned by its client, and binding beyond loopback.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed class ServeAdmissionTests(ServingFixture fixture)
{
    private static string Cli => Path.Combine(AppContext.BaseDirectory, "Transduce.Cli.dll");

    /// <summary>Sentences of <paramref name="words"/> words ("word word … word").</summary>
    private static string[] Sentences(int count, int words) =>
        [.. Enumerable.Range(0, count).Select(_ => string.Join(' ', Enumerable.Repeat("word", words)))];

    [Fact]
    public async Task RequestsOverTheBudgetAreRefusedAtOnceAndMemoryDoesNotGrow()
    {
        using var server = await ServeProcess.StartAsync(Cli, fixture.CheckpointDirectory,
            ["--threads", "1", "--max-request-cost", "20000", "--max-inflight-cost", "40000"], TimeSpan.FromSeconds(60));
        using var http = TranslateClient.Create(server.Url, 4);
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("v1/translate", new { text = new[] { "Go." } })).StatusCode);
        var before = server.RssBytes()!.Value;

        // The largest request the other limits allow: 64 sentences of 1,000 characters (200 tokens) with beam 16 —
        // 64 × 16 × (201 + 256 + 1) ≈ 469k; even greedily 29k > 20k: 413. Half of it greedily fits: beam 16 is 422.
        var largest = new { text = Sentences(64, 200), beam = 16, n_best = 16 };
        var half = new { text = Sentences(32, 200), beam = 16 };
        for (int i = 0; i < 20; i++)
        {
            bool odd = i % 2 == 1;
            var clock = Stopwatch.StartNew();
            var response = await http.PostAsJsonAsync("v1/translate", odd ? (object)half : largest);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"refusal took {clock.Elapsed.TotalMilliseconds:F0} ms");
            Assert.Equal(odd ? 422 : 413, (int)response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var problem = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            Assert.Equal("max_request_cost", (string?)problem["limit"]);
        }
        long grown = server.RssBytes()!.Value - before;
        Assert.True(grown < 64 << 20, $"RSS grew by {grown >> 20} MiB while refusing");
        string metrics = TestService.WithoutScope(await http.GetStringAsync("metrics"));
        Assert.Contains("transduce_batch_size_count{model=\"model\"} 1\n", metrics);   // only the first request was decoded
        Assert.Contains("transduce_translate_errors_total{reason=\"too_costly\"} 20\n", metrics);
    }

    [Fact]
    public async Task FloodOfLargestAdmissibleRequestsKeepsHealthAnsweringAndLeavesNoneHanging()
    {
        using var server = await ServeProcess.StartAsync(Cli, fixture.CheckpointDirectory,
            ["--threads", "1", "--max-request-cost", "20000", "--max-inflight-cost", "40000"], TimeSpan.FromSeconds(60));
        using var http = TranslateClient.Create(server.Url, 32);
        // 63 sentences of 100 words, greedy: 63 × (101 + 212 + 1) = 19,782, just under the 20,000 a request may cost.
        var largest = new { text = Sentences(63, 100) };
        var statuses = new System.Collections.Concurrent.ConcurrentBag<int>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        using var hang = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var clients = Enumerable.Range(0, 12).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var response = await http.PostAsJsonAsync("v1/translate", largest, hang.Token);
                statuses.Add((int)response.StatusCode);
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
                {
                    Assert.NotNull(response.Headers.RetryAfter?.Delta);
                    await Task.Delay(50);
                }
            }
        })).ToArray();

        var slowest = TimeSpan.Zero;
        int probes = 0;
        while (!stop.IsCancellationRequested)
        {
            var clock = Stopwatch.StartNew();
            using var health = await http.GetAsync("healthz");
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            slowest = clock.Elapsed > slowest ? clock.Elapsed : slowest;
            probes++;
            await Task.Delay(100);
        }
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(90));   // every request ended: none hung

        Assert.True(slowest < TimeSpan.FromSeconds(1), $"/healthz took {slowest.TotalMilliseconds:F0} ms at worst ({probes} probes)");
        Assert.All(statuses, s => Assert.Contains(s, new[] { 200, 503 }));
        Assert.Contains(200, statuses);
        Assert.Contains(503, statuses);
        Assert.True(await server.StopAsync(TimeSpan.FromSeconds(60)), "serve did not stop on SIGTERM");
        Assert.Equal(0, server.ExitCode);
    }

    [Fact]
    public async Task AbandonedRequestStopsItsDecode()
    {
        // A GRU that can never say <eos> decodes until its output limit: here millions of tokens.
        string directory = fixture.EndlessGru("endless-gru");
        using var backend = new TranslatorBackend(Translator.Load(directory));
        var options = new ServeOptions
        {
            BatchWindow = TimeSpan.Zero, MaxOutputRatio = 1_000_000, MaxOutputTokens = 10_000_000, MaxRequestCost = 100_000_000, MaxInflightCost = 100_000_000,
            MaxBatchCost = 100_000_000,
        };
        await using var service = await TestService.StartAsync(options, backend, ModelInfo.From(backend.Translator.Checkpoint, directory));

        using var leave = new CancellationTokenSource();
        var abandoned = service.TranslateAsync(new { text = new[] { "Go." } }, leave.Token);
        await TestService.WaitUntilAsync(() => service.Queue.DecodingSentences == 1, "the decode to start");
        await Task.Delay(300);   // well into the decode
        Assert.Equal(0, service.Metrics.DecodesCancelled);
        var left = Stopwatch.StartNew();
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);

        await TestService.WaitUntilAsync(() => service.Metrics.DecodesCancelled == 1, "the decode to stop", seconds: 10);
        Assert.Equal(0, service.Queue.DecodingSentences);
        Assert.True(left.Elapsed < TimeSpan.FromSeconds(10));
        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_decodes_cancelled_total{model=\"default\"} 1\n", metrics);
        Assert.Contains("transduce_sentences_translated_total{model=\"default\"} 0\n", metrics);
        Assert.Contains("transduce_inflight_cost 0\n", metrics);
        Assert.Equal(1, service.Metrics.RequestsDropped);
    }

    [Fact]
    public async Task RemoteAddressesNeedTheFlagAndThenWork()
    {
        var refused = Transduce.Tests.Cli.CliTests.Run(null, "serve", "--model", fixture.CheckpointDirectory, "--urls", "http://0.0.0.0:0");
        Assert.Equal(1, refused.Code);
        Assert.Contains("not a loopback address", refused.Err);
        Assert.Contains("--allow-remote", refused.Err);
        Assert.DoesNotContain("   at ", refused.Err);

        using var server = await ServeProcess.StartAsync(Cli,
            ["--model", fixture.CheckpointDirectory, "--urls", "http://0.0.0.0:0", "--allow-remote", "--threads", "1"], TimeSpan.FromSeconds(60));
        Assert.Equal("0.0.0.0", server.Url.Host);
        using var http = TranslateClient.Create(new Uri($"http://127.0.0.1:{server.Url.Port}/"), 1);
        var response = await http.PostAsJsonAsync("v1/translate", new { text = new[] { "Go." } });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // Any Host header: a remote service is reached by whatever name its operator gave it (unless --allowed-hosts says otherwise).
        using var request = new HttpRequestMessage(HttpMethod.Get, "healthz");
        request.Headers.Host = "mt.example.org";
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(request)).StatusCode);

        // Kestrel's limits: 16 KiB of headers, 64 of them.
        using (var huge = new HttpRequestMessage(HttpMethod.Get, "healthz"))
        {
            huge.Headers.Add("X-Padding", new string('x', 20_000));
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, (await http.SendAsync(huge)).StatusCode);
        }
        using (var many = new HttpRequestMessage(HttpMethod.Get, "healthz"))
        {
            for (int i = 0; i < 80; i++) many.Headers.Add($"X-H{i}", "1");
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, (await http.SendAsync(many)).StatusCode);
        }
        Assert.True(await server.StopAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("warning: listening on 0.0.0.0:0", server.Log);
        Assert.Contains("no API key", server.Log);
    }

    [Fact]
    public async Task ApiKeyFileProtectsTheRealServer()
    {
        string keyFile = Path.Combine(fixture.Directory, "api.key");
        await File.WriteAllTextAsync(keyFile, "s3cret-0123456789-abcdef\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var server = await ServeProcess.StartAsync(Cli, fixture.CheckpointDirectory,
            ["--api-key-file", keyFile, "--threads", "1", "--log-format", "json"], TimeSpan.FromSeconds(60));
        using var http = TranslateClient.Create(server.Url, 1);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("v1/translate", new { text = new[] { "Go." } })).StatusCode);
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "s3cret-0123456789-abcdef");
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("v1/translate", new { text = new[] { "Go.", "We won." } })).StatusCode);
        Assert.Contains("OpenAPI document: http://127.0.0.1:", server.Log);

        // --log-format json: one JSON object per request on standard error, its fields as properties, no text.
        Assert.True(await server.StopAsync(TimeSpan.FromSeconds(30)));
        var requests = server.Log.Split('\n').Where(l => l.StartsWith('{')).Select(l => JsonNode.Parse(l)!)
            .Where(j => (string?)j["Category"] == "Transduce.Serving.Requests").Select(j => j["State"]!).ToList();
        Assert.Equal([401, 200], requests.Select(r => (int)r["Status"]!));
        Assert.Equal("POST", (string?)requests[1]["Method"]);
        Assert.Equal(2, (int)requests[1]["Sentences"]!);
        Assert.Equal(5, (int)requests[1]["SourceTokens"]!);
        Assert.DoesNotContain("won", server.Log);

        await File.WriteAllTextAsync(keyFile, "short\n");
        var bad = Transduce.Tests.Cli.CliTests.Run(null, "serve", "--model", fixture.CheckpointDirectory, "--api-key-file", keyFile);
        Assert.Equal(1, bad.Code);
        Assert.Contains("at least 16 characters", bad.Err);
    }
}
