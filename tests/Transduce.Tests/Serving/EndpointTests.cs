using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Transduce.Translation;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary>Every endpoint and every way a request can be wrong, against the real tiny model, in process.</summary>
[Collection(ServingCollection.Name)]
public sealed class EndpointTests(ServingFixture fixture) : IAsyncLifetime
{
    private static readonly ServeOptions s_options = new()
    {
        BatchWindow = TimeSpan.FromMilliseconds(1), MaxSentences = 4, MaxChars = 40, MaxBodyBytes = 2048,
    };

    private TestService service = null!;

    public async Task InitializeAsync() => service = await TestService.StartAsync(s_options, fixture.Backend, fixture.Model);

    public async Task DisposeAsync() => await service.DisposeAsync();

    [Fact]
    public async Task TranslateReturnsTranslationsInOrderWithScores()
    {
        var response = await service.TranslateAsync(new { text = new[] { "I'm home.", "Go.", "Thank you!" } });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var body = await TestService.JsonAsync(response);
        Assert.Equal(fixture.Model.Name, (string?)body["model"]);
        var translations = body["translations"]!.AsArray();
        Assert.Equal(["je suis chez moi .", "va !", "merci !"], translations.Select(t => (string)t!["text"]!));
        foreach (var t in translations)
        {
            double score = (double)t!["score"]!;
            Assert.True(score <= 0, $"a log-probability score, got {score}");
            var nBest = t["n_best"]!.AsArray();
            Assert.Single(nBest);
            Assert.Equal((string?)t["text"], (string?)nBest[0]!["text"]);
        }
    }

    [Fact]
    public async Task AttentionComesPerSentenceAsTargetBySourceWeights()
    {
        var response = await service.TranslateAsync(new { text = new[] { "I'm home.", "Go." }, attention = true });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var translations = (await TestService.JsonAsync(response))["translations"]!.AsArray();
        Assert.Equal(["i'm", "home", ".", "<eos>"], translations[0]!["attention"]!["source_tokens"]!.AsArray().Select(t => (string)t!));
        foreach (var t in translations)
        {
            var att = t!["attention"]!;
            var target = att["target_tokens"]!.AsArray().Select(x => (string)x!).ToArray();
            Assert.Equal(((string)t["text"]!).Split(' ').Append("<eos>"), target);
            var weights = att["weights"]!.AsArray();
            Assert.Equal(target.Length, weights.Count);
            foreach (var row in weights)
            {
                var values = row!.AsArray().Select(v => (double)v!).ToArray();
                Assert.Equal(att["source_tokens"]!.AsArray().Count, values.Length);
                Assert.Equal(1.0, values.Sum(), 2);
            }
        }
        Assert.True(fixture.Model.Attention);
    }

    [Theory]
    [InlineData(1, 3)]
    [InlineData(4, 2)]
    [InlineData(2, 1)]
    public async Task AttentionBelongsToTheReturnedTranslationWhateverTheSearch(int beam, int nBest)
    {
        var response = await service.TranslateAsync(new { text = new[] { "We won.", "I lost.", "He's calm." }, beam, n_best = nBest, attention = true });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        foreach (var t in (await TestService.JsonAsync(response))["translations"]!.AsArray())
        {
            Assert.Equal(nBest, t!["n_best"]!.AsArray().Count);
            var target = t["attention"]!["target_tokens"]!.AsArray().Select(x => (string)x!);
            Assert.Equal(((string)t["text"]!).Split(' ').Append("<eos>"), target);
        }
    }

    [Fact]
    public async Task BeamAndNBestGiveDistinctHypothesesBestFirst()
    {
        var response = await service.TranslateAsync(new { text = new[] { "We won." }, beam = 4, n_best = 3, attention = false });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var t = (await TestService.JsonAsync(response))["translations"]![0]!;
        Assert.Equal("nous avons gagné .", (string?)t["text"]);
        Assert.Contains("gagné", await response.Content.ReadAsStringAsync());   // not \u00e9
        var nBest = t["n_best"]!.AsArray();
        Assert.Equal(3, nBest.Count);
        var scores = nBest.Select(h => (double)h!["score"]!).ToArray();
        Assert.Equal(scores.OrderByDescending(s => s), scores);
        Assert.Equal(3, nBest.Select(h => (string?)h!["text"]).Distinct().Count());
    }

    [Fact]
    public async Task ModelsReportsArchitectureSizesLanguagesAndChecksum()
    {
        var response = await service.Client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var m = (await TestService.JsonAsync(response))["models"]![0]!;
        Assert.Equal("transformer", (string?)m["architecture"]);
        Assert.Equal(32, (int)m["hidden_size"]!);
        Assert.Equal(32, (int)m["embedding_size"]!);
        Assert.Equal(2, (int)m["layers"]!);
        Assert.Equal(4, (int)m["heads"]!);
        Assert.True((bool)m["attention"]!);
        Assert.Equal(fixture.Backend.Translator.Checkpoint.SourceVocabulary.Count, (int)m["source_vocab_size"]!);
        Assert.Equal(fixture.Backend.Translator.Checkpoint.TargetVocabulary.Count, (int)m["target_vocab_size"]!);
        Assert.True((long)m["parameters"]! > 1000);
        Assert.Equal("English", (string?)m["source_language"]);
        Assert.Equal("French", (string?)m["target_language"]);
        Assert.Equal("3", (string?)m["training"]!["seed"]);
        string id = (string)m["id"]!;
        using var sha = System.Security.Cryptography.SHA256.Create();
        string expected = Convert.ToHexStringLower(sha.ComputeHash(File.ReadAllBytes(Path.Combine(fixture.CheckpointDirectory, "model.safetensors"))))[..16];
        Assert.Equal(expected, id);
    }

    [Fact]
    public void LanguagesDefaultToSourceAndTargetWithoutTrainingInfo()
    {
        var checkpoint = fixture.Backend.Translator.Checkpoint;
        var bare = new Transduce.Checkpoints.Checkpoint
        {
            Model = checkpoint.Model, ModelConfig = checkpoint.ModelConfig, TextConfig = checkpoint.TextConfig,
            SourceVocabulary = checkpoint.SourceVocabulary, TargetVocabulary = checkpoint.TargetVocabulary,
        };
        var info = ModelInfo.From(bare, fixture.CheckpointDirectory);
        Assert.Equal("source", info.SourceLanguage);
        Assert.Equal("target", info.TargetLanguage);
    }

    [Fact]
    public async Task HealthzAndMetrics()
    {
        var health = await service.Client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("ok", (string?)(await TestService.JsonAsync(health))["status"]);

        Assert.Equal(HttpStatusCode.OK, (await service.TranslateAsync(new { text = new[] { "Go.", "We won." } })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await service.TranslateAsync(new { text = "Go." })).StatusCode);

        var response = await service.Client.GetAsync("/metrics");
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        string raw = await response.Content.ReadAsStringAsync();
        // The exporter names the meter on every sample; the rest of the line is what it always was.
        Assert.Contains("transduce_http_requests_total{otel_scope_name=\"Transduce\",endpoint=\"/v1/translate\",status=\"200\"} 1\n", raw);
        string text = TestService.WithoutScope(raw);
        Assert.Contains("# TYPE transduce_http_requests_total counter", text);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/v1/translate\",status=\"200\"} 1\n", text);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/v1/translate\",status=\"400\"} 1\n", text);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/healthz\",status=\"200\"} 1\n", text);
        Assert.Contains("# TYPE transduce_http_request_duration_seconds histogram", text);
        Assert.Contains("transduce_http_request_duration_seconds_bucket{endpoint=\"/v1/translate\",le=\"+Inf\"} 2\n", text);
        Assert.Contains("transduce_translate_errors_total{reason=\"invalid\"} 1\n", text);
        Assert.Contains("transduce_sentences_translated_total{model=\"default\"} 2\n", text);
        Assert.Contains("transduce_source_tokens_total{model=\"default\"} 5\n", text);     // "go ." + "we won ."
        Assert.Contains("transduce_target_tokens_total{model=\"default\"} 6\n", text);     // "va !" + "nous avons gagné ."
        Assert.Contains("transduce_batch_size_bucket{model=\"default\",le=\"2\"} 1\n", text);
        Assert.Contains("transduce_batch_size_count{model=\"default\"} 1\n", text);
        Assert.Contains("# TYPE transduce_queue_sentences gauge", text);
        // Every sample line is "name{labels} value" or "name value".
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')))
            Assert.Matches(@"^[a-z_]+(\{[^}]*\})? [-+0-9.eE]+$|^[a-z_]+(\{[^}]*\})? \+Inf$", line);
    }

    [Fact]
    public async Task PageAndItsAssetsAreServedFromTheAssembly()
    {
        var page = await service.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        string html = await page.Content.ReadAsStringAsync();
        Assert.Contains("<textarea id=\"source\"", html);
        Assert.Contains("/static/app.js", html);
        Assert.DoesNotContain("https://", html);   // no CDN
        Assert.Contains("default-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single());

        var js = await service.Client.GetAsync("/static/app.js");
        Assert.Equal(HttpStatusCode.OK, js.StatusCode);
        Assert.Equal("text/javascript", js.Content.Headers.ContentType?.MediaType);
        Assert.Contains("/v1/translate", await js.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, (await service.Client.GetAsync("/static/style.css")).StatusCode);

        var missing = await service.Client.GetAsync("/static/nothing.js");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("application/problem+json", missing.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.NotFound, (await service.Client.GetAsync("/static/..%2Fwwwroot%2Findex.html")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await service.Client.GetAsync("/no/such/thing")).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await service.Client.GetAsync("/v1/translate")).StatusCode);
    }

    public static TheoryData<string, int, string?, string> BadBodies => new()
    {
        { "{\"text\": [\"Go.\"", 400, null, "not valid JSON" },
        { "not json at all", 400, null, "not valid JSON" },
        { "[\"Go.\"]", 400, null, "must be a JSON object" },
        { "{}", 400, "text", "'text' is required" },
        { "{\"text\": \"Go.\"}", 400, "text", "must be an array of strings" },
        { "{\"text\": []}", 400, "text", "at least one sentence" },
        { "{\"text\": [\"Go.\", 7]}", 400, "text[1]", "'text[1]' must be a string, not a number" },
        { "{\"text\": [\"Go.\", null]}", 400, "text[1]", "not null" },
        { "{\"text\": [\"Go.\"], \"beam\": \"4\"}", 400, "beam", "'beam' must be an integer between 1 and 16, not a string" },
        { "{\"text\": [\"Go.\"], \"beam\": 2.5}", 400, "beam", "must be an integer" },
        { "{\"text\": [\"Go.\"], \"beam\": 0}", 400, "beam", "between 1 and 16" },
        { "{\"text\": [\"Go.\"], \"beam\": 17}", 400, "beam", "between 1 and 16" },
        { "{\"text\": [\"Go.\"], \"n_best\": -1}", 400, "n_best", "between 1 and 16" },
        { "{\"text\": [\"Go.\"], \"attention\": \"yes\"}", 400, "attention", "true or false" },
        { "{\"text\": [\"Go.\"], \"nbest\": 2}", 400, "nbest", "unknown field 'nbest'" },
        { "{\"text\": [\"\\udc00\"]}", 400, "text[0]", "lone UTF-16 surrogate" },
        { "{\"text\": [\"Go.\", \"ok \\ud800 then\"]}", 400, "text[1]", "lone UTF-16 surrogate" },
        { "{\"text\": [\"Go.\"], \"model\": \"\\udfff\"}", 400, "model", "lone UTF-16 surrogate" },
        { "{\"\\udc00\": 1, \"text\": [\"Go.\"]}", 400, null, "lone UTF-16 surrogate" },
        { "{\"text\": [\"Go.\"], \"model\": 3}", 400, "model", "'model' must be a string" },
        { "{\"text\": [\"Go.\"], \"model\": \"\"}", 400, "model", "'model' must be a name" },
        { "{\"text\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 413, "text", "5 sentences; the limit is 4" },
        { "{\"text\": [\"Go.\", \"" + new string('x', 41) + "\"]}", 413, "text[1]", "41 characters; the limit is 40" },
        { "{\"text\": [\"" + new string('x', 3000) + "\"]}", 413, "body", "exceeds 2048 bytes" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task BadRequestsGetProblemDetailsNamingTheField(string body, int status, string? field, string detail)
    {
        var response = await service.Client.PostAsync("/v1/translate", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertProblem(response, status, field, detail);
    }

    [Fact]
    public async Task WrongContentTypeAndStreamedOversizeBodies()
    {
        var form = await service.Client.PostAsync("/v1/translate", new StringContent("{\"text\": [\"Go.\"]}", Encoding.UTF8, "text/plain"));
        await AssertProblem(form, 415, "Content-Type", "must be JSON");

        // No Content-Length: the limit is enforced while reading.
        var streamed = await service.Client.PostAsync("/v1/translate", new UnknownLengthContent(Encoding.UTF8.GetBytes("{\"text\": [\"" + new string('y', 5000) + "\"]}")));
        await AssertProblem(streamed, 413, "body", "exceeds 2048 bytes");

        string metrics = await service.MetricsAsync();
        Assert.Contains("transduce_translate_errors_total{reason=\"too_large\"} 1\n", metrics);
        Assert.Contains("transduce_http_requests_total{endpoint=\"/v1/translate\",status=\"415\"} 1\n", metrics);
    }

    private static async Task AssertProblem(HttpResponseMessage response, int status, string? field, string detail)
    {
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await TestService.JsonAsync(response);
        Assert.Equal(status, (int)problem["status"]!);
        Assert.False(string.IsNullOrEmpty((string?)problem["title"]));
        Assert.Contains(detail, (string?)problem["detail"]);
        Assert.Equal(field, (string?)problem["field"]);
    }

    private sealed class UnknownLengthContent : HttpContent
    {
        private readonly byte[] bytes;

        public UnknownLengthContent(byte[] bytes)
        {
            this.bytes = bytes;
            Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = -1;
            return false;
        }
    }
}
