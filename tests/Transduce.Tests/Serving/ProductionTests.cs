using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.OpenApi;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary>
/// What an operator relies on beyond translating: admission by cost (413/422), output caps, allowed hosts, the API key,
/// several models, the OpenAPI document, request logs and runtime metrics. In process, against the tiny model.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed class ProductionTests(ServingFixture fixture)
{
    // "Go." is "go ." to the model: 2 tokens, 3 source positions, output limit ⌈2 × 3⌉ + 10 = 16: cost 20 per hypothesis.
    private static readonly ServeOptions s_costly = new() { BatchWindow = TimeSpan.FromMilliseconds(1), MaxRequestCost = 100, MaxInflightCost = 1000, MaxAttentionCells = 40 };

    public static TheoryData<string, int, string, string> CostlyBodies => new()
    {
        // 6 sentences × 20 = 120 > 100 even greedily: too much text.
        { """{"text": ["Go.", "Go.", "Go.", "Go.", "Go.", "Go."]}""", 413, "text", "send fewer or shorter sentences" },
        // 1 sentence × 8 hypotheses × 20 = 160 > 100, but 5 hypotheses would fit.
        { """{"text": ["Go."], "beam": 8}""", 422, "beam", "ask for at most 5" },
        { """{"text": ["Go."], "beam": 2, "n_best": 6}""", 422, "n_best", "ask for at most 5" },
        // Attention maps of 17 × 3 = 51 weights > 40.
        { """{"text": ["Go."], "attention": true}""", 422, "attention", "fewer or shorter sentences" },
    };

    [Theory]
    [MemberData(nameof(CostlyBodies))]
    public async Task RequestsOverTheCostBudgetAreRefusedAtOnceNamingTheLimit(string body, int status, string field, string detail)
    {
        await using var service = await TestService.StartAsync(s_costly, fixture.Backend, fixture.Model);
        var response = await service.Client.PostAsync("/v1/translate", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await TestService.JsonAsync(response);
        Assert.Equal(field, (string?)problem["field"]);
        Assert.Contains(detail, (string?)problem["detail"]);
        Assert.Equal(field == "attention" ? "max_attention_cells" : "max_request_cost", (string?)problem["limit"]);
        Assert.True((long)problem["requested"]! > (long)problem["limit_value"]!);
        Assert.Equal(0, service.Metrics.Batches.Count);   // nothing was decoded
        Assert.Contains("transduce_translate_errors_total{reason=\"too_costly\"} 1\n", await service.MetricsAsync());

        var fits = await service.TranslateAsync(new { text = new[] { "Go.", "Go." }, beam = 2 });   // 80
        Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
    }

    [Fact]
    public async Task OutputIsCutAtTheTokenCap()
    {
        await using var service = await TestService.StartAsync(new ServeOptions { MaxOutputTokens = 2 }, fixture.Backend, fixture.Model);
        var response = await service.TranslateAsync(new { text = new[] { "I'm home.", "Go." } });
        var texts = (await TestService.JsonAsync(response))["translations"]!.AsArray().Select(t => (string)t!["text"]!);
        Assert.Equal(["je suis", "va !"], texts);   // "je suis chez moi ." cut after two tokens
    }

    [Theory]
    [InlineData("evil.example", 400)]
    [InlineData("attacker.test:5080", 400)]
    [InlineData("localhost:5080", 200)]
    [InlineData("127.0.0.1", 200)]
    [InlineData("[::1]:80", 200)]
    public async Task LoopbackServiceAnswersOnlyLoopbackHostNames(string host, int status)
    {
        await using var service = await TestService.StartAsync(new ServeOptions(), fixture.Backend, fixture.Model);
        foreach (string path in new[] { "/healthz", "/v1/models" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Host = host;
            var response = await service.Client.SendAsync(request);
            Assert.Equal(status, (int)response.StatusCode);
            if (status != 400) continue;
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var problem = await TestService.JsonAsync(response);
            Assert.Equal("Host", (string?)problem["field"]);
            Assert.Contains(host, (string?)problem["detail"]);
        }
    }

    [Fact]
    public void AllowedHostsDefaultToLoopbackNamesForLoopbackAndAnyHostForRemote()
    {
        var loopback = ListenAddresses.Parse("http://127.0.0.2:5080;http://[::1]:5081", allowRemote: false);
        Assert.Equal(["localhost", "127.0.0.1", "[::1]", "127.0.0.2"], ListenAddresses.AllowedHosts(null, loopback));
        Assert.Equal(["*"], ListenAddresses.AllowedHosts(null, ListenAddresses.Parse("http://0.0.0.0:80", allowRemote: true)));
        Assert.Equal(["mt.example.org"], ListenAddresses.AllowedHosts(["mt.example.org"], loopback));
    }

    [Fact]
    public async Task ApiKeyIsRequiredForTheApiAndMetricsButNotForHealthOrThePage()
    {
        const string key = "k3y-0123456789abcdef";
        await using var service = await TestService.StartAsync(new ServeOptions { ApiKey = key }, fixture.Backend, fixture.Model);
        var body = new { text = new[] { "Go." } };

        var none = await service.TranslateAsync(body);
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("application/problem+json", none.Content.Headers.ContentType?.MediaType);
        Assert.Equal("Bearer", none.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Contains("API key", (string?)(await TestService.JsonAsync(none))["detail"]);

        foreach (string wrong in new[] { "Bearer nope", "Bearer " + key + "x", "Basic " + key, key })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/translate") { Content = JsonContent.Create(body) };
            request.Headers.TryAddWithoutValidation("Authorization", wrong);
            Assert.Equal(HttpStatusCode.Unauthorized, (await service.Client.SendAsync(request)).StatusCode);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await service.Client.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await service.Client.GetAsync("/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await service.Client.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await service.Client.GetAsync("/")).StatusCode);

        service.Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var ok = await service.TranslateAsync(body);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("va !", (string?)(await TestService.JsonAsync(ok))["translations"]![0]!["text"]);
        Assert.Contains("transduce_translate_errors_total{reason=\"unauthorized\"} 7\n", await service.MetricsAsync());
    }

    [Fact]
    public void ShortApiKeysAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new ServeOptions { ApiKey = "short" }.Validate());
        Assert.Contains("at least 16 characters", e.Message);
    }

    [Fact]
    public async Task SeveralModelsEachWithItsOwnQueue()
    {
        var second = new GatedBackend();
        var models = new[]
        {
            new ServedModel(fixture.Backend, fixture.Model with { Name = "en-fr" }),
            new ServedModel(second, GatedBackend.Info with { Name = "upper" }),
        };
        await using var service = await TestService.StartAsync(new ServeOptions { BatchWindow = TimeSpan.Zero }, models);

        var list = (await TestService.JsonAsync(await service.Client.GetAsync("/v1/models")))["models"]!.AsArray();
        Assert.Equal(["en-fr", "upper"], list.Select(m => (string)m!["name"]!));
        Assert.Equal(["transformer", "fake"], list.Select(m => (string)m!["architecture"]!));

        var byDefault = await TestService.JsonAsync(await service.TranslateAsync(new { text = new[] { "Go." } }));
        Assert.Equal("en-fr", (string?)byDefault["model"]);
        Assert.Equal("va !", (string?)byDefault["translations"]![0]!["text"]);
        var named = await TestService.JsonAsync(await service.TranslateAsync(new { text = new[] { "Go." }, model = "upper" }));
        Assert.Equal("upper", (string?)named["model"]);
        Assert.Equal("GO.", (string?)named["translations"]![0]!["text"]);

        var unknown = await service.TranslateAsync(new { text = new[] { "Go." }, model = "de-en" });
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        var problem = await TestService.JsonAsync(unknown);
        Assert.Equal("model", (string?)problem["field"]);
        Assert.Contains("'en-fr', 'upper'", (string?)problem["detail"]);

        // A busy model does not hold up the other: each has its own queue and decoder thread.
        second.Close();
        var held = service.TranslateAsync(new { text = new[] { "held" }, model = "upper" });
        await TestService.WaitUntilAsync(() => second.Entered == 2, "the second model's decoder to be busy");
        var other = await service.TranslateAsync(new { text = new[] { "I lost." } });
        Assert.Equal("j'ai perdu .", (string?)(await TestService.JsonAsync(other))["translations"]![0]!["text"]);
        Assert.False(held.IsCompleted);
        second.Open();
        Assert.Equal(HttpStatusCode.OK, (await held).StatusCode);

        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_sentences_translated_total{model=\"en-fr\"} 2\n", metrics);
        Assert.Contains("transduce_sentences_translated_total{model=\"upper\"} 2\n", metrics);
        var health = await TestService.JsonAsync(await service.Client.GetAsync("/healthz"));
        Assert.Equal(["en-fr", "upper"], health["models"]!.AsArray().Select(m => (string)m!));
    }

    [Fact]
    public async Task RequestWithoutABeamGetsItsModelsDefault()
    {
        var plain = new GatedBackend();
        var marian = new GatedBackend();
        var models = new[]
        {
            new ServedModel(plain, GatedBackend.Info with { Name = "plain" }),
            new ServedModel(marian, GatedBackend.Info with { Name = "marian", DefaultBeam = 4 }),   // a MarianMT folder's num_beams
        };
        await using var service = await TestService.StartAsync(new ServeOptions { MaxOutputTokens = 7 }, models);
        await service.TranslateAsync(new { text = new[] { "a" }, model = "marian" });
        Assert.Equal(4, marian.LastOptions!.Beam);
        await service.TranslateAsync(new { text = new[] { "a" }, model = "marian", beam = 1 });
        Assert.Equal(1, marian.LastOptions!.Beam);
        await service.TranslateAsync(new { text = new[] { "a" } });
        Assert.Equal(1, plain.LastOptions!.Beam);
        Assert.Equal(7, plain.LastOptions.MaxOutputTokens);   // the service's caps reach the decoder
        var list = (await TestService.JsonAsync(await service.Client.GetAsync("/v1/models")))["models"]!.AsArray();
        Assert.Equal(4, (int)list[1]!["default_beam"]!);
        Assert.Null(list[0]!["default_beam"]);
    }

    [Fact]
    public void ModelNamesAreCheckedAndUnique()
    {
        Assert.Throws<ArgumentException>(() => new ServedModel(new GatedBackend(), GatedBackend.Info with { Name = "has space" }));
        Assert.Throws<ArgumentException>(() => new ServedModel(new GatedBackend(), GatedBackend.Info with { Name = "-dash-first" }));
        var twice = new[] { new ServedModel(new GatedBackend(), GatedBackend.Info), new ServedModel(new GatedBackend(), GatedBackend.Info) };
        using var services = Microsoft.Extensions.DependencyInjection.ServiceCollectionContainerBuilderExtensions.BuildServiceProvider(
            Microsoft.Extensions.DependencyInjection.MetricsServiceExtensions.AddMetrics(new Microsoft.Extensions.DependencyInjection.ServiceCollection()));
        var meters = (System.Diagnostics.Metrics.IMeterFactory)services.GetService(typeof(System.Diagnostics.Metrics.IMeterFactory))!;
        var e = Assert.Throws<ArgumentException>(() => new ServedModels(twice, new ServeOptions(), new ServingMetrics(meters), new CostBudget(10)));
        Assert.Contains("given twice", e.Message);
    }

    [Fact]
    public async Task OpenApiDocumentParsesAndDescribesEveryEndpointWithItsProblems()
    {
        await using var service = await TestService.StartAsync(new ServeOptions { ApiKey = "0123456789abcdef0123" }, fixture.Backend, fixture.Model);
        var response = await service.Client.GetAsync(ServingApp.OpenApiPath);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string json = await response.Content.ReadAsStringAsync();

        var (document, diagnostic) = OpenApiDocument.Parse(json, "json");
        Assert.NotNull(document);
        Assert.True(diagnostic is null || diagnostic.Errors.Count == 0,
            "OpenAPI errors: " + string.Join("; ", diagnostic?.Errors.Select(e => $"{e.Pointer}: {e.Message}") ?? []));
        Assert.Equal(["/healthz", "/metrics", "/v1/models", "/v1/translate"], document!.Paths.Keys.Order(StringComparer.Ordinal));

        var translate = document.Paths["/v1/translate"].Operations![HttpMethod.Post];
        var request = translate.RequestBody!.Content!["application/json"].Schema!;
        Assert.Equal(["attention", "beam", "model", "n_best", "source_lang", "target_lang", "task", "text"], request.Properties!.Keys.Order(StringComparer.Ordinal));
        var ok = translate.Responses!["200"].Content!["application/json"].Schema!;
        Assert.Contains("translations", ok.Properties!.Keys);
        foreach (string status in new[] { "400", "401", "404", "413", "415", "422", "500", "503", "504" })
        {
            var problem = translate.Responses[status].Content!["application/problem+json"].Schema!;
            Assert.Contains("limit", problem.Properties!.Keys);
            Assert.Contains("field", problem.Properties.Keys);
        }
        Assert.Contains("401", document.Paths["/v1/models"].Operations![HttpMethod.Get].Responses!.Keys);
        Assert.Contains("503", document.Paths["/healthz"].Operations![HttpMethod.Get].Responses!.Keys);
        Assert.NotNull(translate.Security);   // the API key, as a bearer scheme
        Assert.Contains("bearer", document.Components!.SecuritySchemes!.Keys);
        Assert.DoesNotContain(document.Paths.Keys, p => p == "/" || p.StartsWith("/static", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RequestLogHasCountsAndTimingsAndTextOnlyWhenAsked()
    {
        foreach (bool withText in new[] { false, true })
        {
            var sink = new LogSink();
            await using (var service = await TestService.StartAsync(new ServeOptions { LogText = withText }, fixture.Backend, fixture.Model,
                b => b.Logging.AddProvider(sink)))
            {
                Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "We won.", "Go." }, beam = 2 })).StatusCode);
                Assert.Equal(HttpStatusCode.BadRequest, (await service.TranslateAsync(new { text = "Go." })).StatusCode);
                await service.Client.GetAsync("/healthz");
            }
            var lines = sink.Entries.Where(e => e.Category == RequestLog.Category).ToList();
            Assert.Equal(2, lines.Count);   // /healthz 200 is not logged
            var ok = lines[0].State;
            Assert.Equal("POST", ok["Method"]);
            Assert.Equal("/v1/translate", ok["Path"]);
            Assert.Equal(200, ok["Status"]);
            Assert.Equal("default", ok["Model"]);
            Assert.Equal(2, ok["Sentences"]);
            Assert.Equal(5L, ok["SourceTokens"]);    // "we won ." + "go ."
            Assert.Equal(6L, ok["TargetTokens"]);    // "nous avons gagné ." + "va !"
            Assert.Equal(2, ok["Beam"]);
            Assert.True((double)ok["DurationMs"]! > 0);
            Assert.True((long)ok["Cost"]! > 0);
            Assert.Equal(400, lines[1].State["Status"]);
            Assert.Equal("invalid", lines[1].State["Error"]);
            string all = string.Join("\n", lines.Select(l => l.Message + " " + string.Join(" ", l.State.Values)));
            if (withText)
            {
                Assert.Equal("[\"We won.\",\"Go.\"]", ok["Text"]);
                Assert.Contains("gagn", (string)ok["Translations"]!);
            }
            else
            {
                Assert.DoesNotContain("won", all);
                Assert.DoesNotContain("gagn", all);
            }
        }
    }

    [Fact]
    public async Task MetricsKeepTheNamesAndTypesDashboardsUse()
    {
        // Every series /metrics had before it came from the Transduce meter, under the same name and type.
        await using var service = await TestService.StartAsync(new ServeOptions(), fixture.Backend, fixture.Model);
        Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "Go." } })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await service.TranslateAsync(new { text = "Go." })).StatusCode);
        string text = await service.MetricsAsync();
        foreach (var (name, type) in new[]
        {
            ("transduce_http_requests_total", "counter"), ("transduce_http_request_duration_seconds", "histogram"),
            ("transduce_translate_errors_total", "counter"), ("transduce_sentences_translated_total", "counter"),
            ("transduce_source_tokens_total", "counter"), ("transduce_target_tokens_total", "counter"),
            ("transduce_requests_dropped_total", "counter"), ("transduce_decodes_cancelled_total", "counter"),
            ("transduce_queue_sentences", "gauge"), ("transduce_decoding_sentences", "gauge"), ("transduce_batch_size", "histogram"),
            ("transduce_decode_duration_seconds", "histogram"), ("transduce_inflight_cost", "gauge"), ("transduce_inflight_cost_limit", "gauge"),
        })
            Assert.Contains($"# TYPE {name} {type}\n", text);
        Assert.Contains("transduce_sentences_translated_total{model=\"default\"} 1\n", text);
        Assert.Contains("transduce_decode_duration_seconds_count{model=\"default\"} 1\n", text);
        Assert.Contains("transduce_batch_size_bucket{model=\"default\",le=\"1\"} 1\n", text);
        Assert.Contains("transduce_http_request_duration_seconds_bucket{endpoint=\"/v1/translate\",le=\"30\"} 2\n", text);
        Assert.Contains("transduce_translate_errors_total{reason=\"invalid\"} 1\n", text);
    }

    [Fact]
    public async Task MetricsIncludeRuntimeFigures()
    {
        await using var service = await TestService.StartAsync(new ServeOptions(), fixture.Backend, fixture.Model);
        string text = await service.MetricsAsync();
        foreach (string line in new[]
        {
            "# TYPE process_cpu_seconds_total counter", "# TYPE process_resident_memory_bytes gauge", "# TYPE process_start_time_seconds gauge",
            "dotnet_gc_collections_total{generation=\"0\"} ", "dotnet_gc_collections_total{generation=\"2\"} ", "# TYPE dotnet_gc_heap_size_bytes gauge",
            "# TYPE dotnet_gc_allocated_bytes_total counter", "# TYPE dotnet_gc_pause_seconds_total counter", "# TYPE dotnet_threadpool_threads gauge",
            "# TYPE dotnet_threadpool_queue_length gauge", "# TYPE dotnet_threadpool_completed_items_total counter",
            "transduce_inflight_cost 0\n", "transduce_inflight_cost_limit 200000\n",
        })
            Assert.Contains(line, text);
        double rss = double.Parse(text.Split('\n').Single(l => l.StartsWith("process_resident_memory_bytes ", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(rss > 10 << 20, $"RSS {rss}");
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')))
            Assert.Matches(@"^[a-z_]+(\{[^}]*\})? ([-+0-9.eE]+|\+Inf)$", line);
    }

    [Fact]
    public async Task AttentionRequestsWaitInTheSameQueueAndTimeOutThere()
    {
        var backend = new GatedBackend();
        backend.Close();
        await using var service = await TestService.StartAsync(new ServeOptions { BatchWindow = TimeSpan.Zero, Timeout = TimeSpan.FromMilliseconds(500) },
            backend, GatedBackend.Info with { Attention = true });
        var busy = service.TranslateAsync(new { text = new[] { "busy" } });
        await TestService.WaitUntilAsync(() => backend.Entered == 1, "the decoder to be busy");
        var attention = service.TranslateAsync(new { text = new[] { "with attention" }, attention = true });
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await attention).StatusCode);
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await busy).StatusCode);
        // Whatever was decoding when time ran out stopped: the attention request's decode too, if it had begun.
        await TestService.WaitUntilAsync(() => backend.Running == 0 && service.Metrics.RequestsDropped == 2, "the decoder to stop");
        Assert.Equal(backend.Entered, backend.Cancelled);
        lock (backend.Calls) Assert.All(backend.Calls.Skip(1), call => Assert.Equal(["with attention"], call));   // through the queue, nowhere else
    }

    [Fact]
    public async Task ARequestCannotForgeOrColourALogLine()
    {
        var sink = new LogSink();
        await using (var service = await TestService.StartAsync(new ServeOptions(), fixture.Backend, fixture.Model, b => b.Logging.AddProvider(sink)))
            Assert.Equal(HttpStatusCode.NotFound, (await service.Client.GetAsync("/x%0D%0A200%20GET%20/admin%1B[31m")).StatusCode);
        var line = Assert.Single(sink.Entries, e => e.Category == RequestLog.Category);
        Assert.DoesNotContain(line.Message, c => char.IsControl(c));
        Assert.Contains("\\r\\n200 GET /admin\\u001b[31m", line.Message);
    }

    /// <summary>Collects log entries with their structured state.</summary>
    private sealed class LogSink : ILoggerProvider
    {
        public ConcurrentQueue<(string Category, string Message, Dictionary<string, object?> State)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(LogSink sink, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var fields = state is IEnumerable<KeyValuePair<string, object?>> pairs
                    ? pairs.Where(p => p.Key != "{OriginalFormat}").ToDictionary(p => p.Key, p => p.Value) : [];
                sink.Entries.Enqueue((category, formatter(state, exception), fields));
            }
        }
    }
}
