using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using AspNetHost;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary>
/// The service inside an application of its own (samples/AspNetHost's app, compiled into this assembly): its middleware,
/// API key and rate limit apply to the translation endpoints AddTransduce / MapTranslation add; and the Transduce meter
/// and activity source seen as any .NET listener sees them.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed class AspNetHostTests(ServingFixture fixture)
{
    private const string Key = "0123456789abcdef";

    private async Task<WebApplication> StartAsync(params string[] extra)
    {
        var app = HostApp.Build(["--model", fixture.CheckpointDirectory, "--api-key", Key, .. extra], b => b.WebHost.UseTestServer());
        await app.StartAsync();
        return app;
    }

    private static HttpRequestMessage Translate(string[] text, bool key = true)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/translate") { Content = JsonContent.Create(new { text }) };
        if (key) request.Headers.Add(HostApp.ApiKeyHeader, Key);
        return request;
    }

    [Fact]
    public async Task TheApplicationsMiddlewareKeyAndRateLimitWrapTheTranslations()
    {
        await using var app = await StartAsync("--translate-per-minute", "2");
        using var client = app.GetTestClient();

        // The application's own endpoint keeps its own JSON conventions (AddTransduce does not change them).
        var hello = await client.GetAsync("/hello");
        Assert.Equal("{\"servedBy\":\"AspNetHost\"}", await hello.Content.ReadAsStringAsync());
        Assert.Equal("AspNetHost", hello.Headers.GetValues(HostApp.ServedByHeader).Single());

        // The application's key check answers before the translation endpoint is reached.
        var refused = await client.SendAsync(Translate(["Go."], key: false));
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal("AspNetHost", refused.Headers.GetValues(HostApp.ServedByHeader).Single());

        var response = await client.SendAsync(Translate(["Go.", "We won."]));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("AspNetHost", response.Headers.GetValues(HostApp.ServedByHeader).Single());
        var body = await TestService.JsonAsync(response);
        Assert.Equal("en-fr", (string?)body["model"]);
        Assert.Equal(["va !", "nous avons gagné ."], body["translations"]!.AsArray().Select(t => (string?)t!["text"]));

        // The service's own checks still answer in its words (problem+json naming the field).
        var invalid = await client.SendAsync(Translate([]));
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Equal("text", (string?)(await TestService.JsonAsync(invalid))["field"]);

        // Two requests a minute may pass the key check: the third gets the application's 429.
        Assert.Equal(HttpStatusCode.TooManyRequests, (await client.SendAsync(Translate(["Go."]))).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
        string metrics = TestService.WithoutScope(await client.GetStringAsync("/metrics"));
        Assert.Contains("transduce_sentences_translated_total{model=\"en-fr\"} 2\n", metrics);
        Assert.Contains("transduce_translate_errors_total{reason=\"invalid\"} 1\n", metrics);
    }

    [Fact]
    public void AddTransduceRefusesWhatItCannotServe()
    {
        var services = new ServiceCollection();
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() =>
            services.AddTransduce(o => o.AddModel("en-fr", "a").AddModel("en-fr", "b"))).Message);
        Assert.Contains("model name 'has space'", Assert.Throws<ArgumentException>(() => services.AddTransduce(o => o.AddModel("has space", "a"))).Message);
        Assert.Contains("--max-batch", Assert.Throws<ArgumentException>(() =>
            services.AddTransduce(o => o.AddModel("m", "a").Serve = new ServeOptions { MaxBatch = 0 })).Message);
    }

    [Fact]
    public async Task TheMeterAndTheActivitySourceReachAnyListener()
    {
        var measured = new List<(string Instrument, long Value, string? Model)>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Transduce") listener.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? model = null;
            foreach (var tag in tags) if (tag.Key == "model") model = tag.Value as string;
            lock (measured) measured.Add((instrument.Name, value, model));
        });
        meters.Start();
        var decodes = new List<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Transduce",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                lock (decodes) decodes.Add(a);
            },
        };
        ActivitySource.AddActivityListener(activities);

        await using var app = await StartAsync();
        using var client = app.GetTestClient();
        decodes.Clear();   // the warm-up's decodes
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Translate(["Go.", "I lost.", "We won."]))).StatusCode);

        // The warm-up decodes through the backend, not the queue: the counter holds the request's three sentences.
        lock (measured)
            Assert.Equal(3, measured.Where(m => m.Instrument == "transduce.sentences.translated" && m.Model == "en-fr").Sum(m => m.Value));
        lock (decodes)
        {
            var decode = Assert.Single(decodes, a => a.OperationName == "transduce.decode" && (int?)a.GetTagItem("transduce.batch.sentences") == 3);
            Assert.Equal("en-fr", decode.GetTagItem("transduce.model"));
            Assert.Equal(ActivityStatusCode.Unset, decode.Status);
        }
    }
}
