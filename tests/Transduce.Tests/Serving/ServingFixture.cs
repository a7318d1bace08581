using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary>A tiny English→French Transformer checkpoint, trained once (a few seconds) and saved, shared by the Serving tests.</summary>
public sealed class ServingFixture : IDisposable
{
    public ServingFixture()
    {
        Directory = Path.Combine(Path.GetTempPath(), "transduce-serve-" + Guid.NewGuid().ToString("N"));
        CheckpointDirectory = Path.Combine(Directory, "model");
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 100, architecture: "transformer");
        using (model)
        {
            new Checkpoint
            {
                Model = model, ModelConfig = config, TextConfig = pipeline.Config,
                SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
                TrainingInfo = new Dictionary<string, string> { ["source_language"] = "English", ["target_language"] = "French", ["seed"] = "3" },
            }.Save(CheckpointDirectory);
        }
        Backend = new TranslatorBackend(Translator.Load(CheckpointDirectory));
        Model = ModelInfo.From(Backend.Translator.Checkpoint, CheckpointDirectory);
    }

    /// <summary>Scratch directory; the checkpoint is in <see cref="CheckpointDirectory"/>.</summary>
    public string Directory { get; }

    public string CheckpointDirectory { get; }

    public TranslatorBackend Backend { get; }

    public ModelInfo Model { get; }

    /// <summary>Source sentences and the translations the tiny model gives (it learned them by heart).</summary>
    public static readonly (string Source, string Target)[] Known =
    [
        ("Go.", "va !"), ("I lost.", "j'ai perdu ."), ("I'm home.", "je suis chez moi ."),
        ("He's calm.", "il est calme ."), ("Thank you!", "merci !"), ("We won.", "nous avons gagné ."),
    ];

    /// <summary>
    /// A checkpoint directory (made once, under <paramref name="name"/>) of a GRU with this fixture's vocabularies that can
    /// never say <c>&lt;eos&gt;</c> (it is banned): it decodes until its output limit, so its requests run as long as asked.
    /// </summary>
    public string EndlessGru(string name)
    {
        string directory = Path.Combine(Directory, name);
        lock (this)
        {
            if (System.IO.Directory.Exists(directory)) return directory;
            var checkpoint = Backend.Translator.Checkpoint;
            var config = TinyModels.Config(checkpoint.SourceVocabulary, checkpoint.TargetVocabulary);
            TorchSharp.torch.manual_seed(5);
            using var model = Transduce.Models.ModelRegistry.Create(config);
            new Checkpoint
            {
                Model = model, ModelConfig = config, TextConfig = checkpoint.TextConfig,
                SourceVocabulary = checkpoint.SourceVocabulary, TargetVocabulary = checkpoint.TargetVocabulary,
                Generation = new GenerationSettings { BannedTokens = [checkpoint.TargetVocabulary.EosId] },
            }.Save(directory);
        }
        return directory;
    }

    public void Dispose()
    {
        Backend.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}

[CollectionDefinition(Name)]
public sealed class ServingCollection : ICollectionFixture<ServingFixture>
{
    public const string Name = "Serving";
}

/// <summary>An in-process service on a <see cref="TestServer"/>.</summary>
internal sealed class TestService : IAsyncDisposable
{
    private TestService(WebApplication app)
    {
        App = app;
        Client = app.GetTestClient();
    }

    public WebApplication App { get; }

    public HttpClient Client { get; }

    public ServedModels Models => (ServedModels)App.Services.GetService(typeof(ServedModels))!;

    /// <summary>The default model's queue.</summary>
    public BatchingQueue Queue => Models.Default.Queue;

    public ServingMetrics Metrics => (ServingMetrics)App.Services.GetService(typeof(ServingMetrics))!;

    public static Task<TestService> StartAsync(ServeOptions options, ITranslationBackend backend, ModelInfo model,
        Action<WebApplicationBuilder>? configure = null) =>
        StartAsync(options, [new ServedModel(backend, model)], configure);

    /// <summary>
    /// Starts the service in memory. The warm-up is off unless <paramref name="warmUp"/> (the tests' fake decoders count
    /// and gate their calls).
    /// </summary>
    public static async Task<TestService> StartAsync(ServeOptions options, IReadOnlyList<ServedModel> models,
        Action<WebApplicationBuilder>? configure = null, bool warmUp = false)
    {
        var app = ServingApp.Build(options with { WarmUp = warmUp && options.WarmUp }, models, configure: b =>
        {
            b.WebHost.UseTestServer();
            configure?.Invoke(b);
        });
        await app.StartAsync();
        return new TestService(app);
    }

    public Task<HttpResponseMessage> TranslateAsync(object body, CancellationToken cancellation = default) =>
        Client.PostAsJsonAsync("/v1/translate", body, cancellation);

    public async Task<string> MetricsAsync() => WithoutScope(await Client.GetStringAsync("/metrics"));

    /// <summary>
    /// <paramref name="prometheus"/> without the exporter's <c>otel_scope_name</c> label (every sample carries its meter's
    /// name), so that tests can compare samples as a dashboard's query selects them: <c>name{model="m"} 3</c>.
    /// </summary>
    public static string WithoutScope(string prometheus) =>
        System.Text.RegularExpressions.Regex.Replace(prometheus, "otel_scope_name=\"[^\"]*\",?", "").Replace("{}", "");

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }

    /// <summary>Polls <paramref name="condition"/> every 10 ms until it holds, failing after <paramref name="seconds"/>.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, double seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }

    public static async Task<JsonObject> JsonAsync(HttpResponseMessage response) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
}

/// <summary>
/// A backend that upper-cases sentences and, while <see cref="Gate"/> is closed, blocks inside <see cref="Translate"/>
/// (as a decode that is still running: it stops when its cancellation token fires), so tests can hold the decoder busy
/// and watch the queue. Its cost estimate counts words as tokens.
/// </summary>
internal sealed class GatedBackend : ITranslationBackend
{
    private readonly ManualResetEventSlim gate = new(initialState: true);
    private int entered, running, cancelled;

    public List<string[]> Calls { get; } = [];

    /// <summary>The decoding options of the last call.</summary>
    public TranslationOptions? LastOptions { get; private set; }

    public int Entered => Volatile.Read(ref entered);

    /// <summary>Decoder calls in progress right now.</summary>
    public int Running => Volatile.Read(ref running);

    /// <summary>Decoder calls that stopped because their cancellation token fired.</summary>
    public int Cancelled => Volatile.Read(ref cancelled);

    /// <summary>When set, <see cref="Translate"/> throws.</summary>
    public bool Fail { get; set; }

    public void Close() => gate.Reset();

    public void Open() => gate.Set();

    public IReadOnlyList<DecodingCost> EstimateCost(IReadOnlyList<string> sentences, TranslationOptions options) =>
        sentences.Select(s =>
        {
            int tokens = s.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
            int output = (int)Math.Ceiling(options.MaxLengthA * (tokens + 1)) + options.MaxLengthB;
            if (options.MaxOutputTokens is int cap) output = Math.Min(output, cap);
            return new DecodingCost(tokens, tokens + 1, output, Math.Max(options.Beam, options.NBest));
        }).ToArray();

    public IReadOnlyList<SentenceTranslation> Translate(IReadOnlyList<string> sentences, TranslationOptions options, bool attention,
        CancellationToken cancellation)
    {
        lock (Calls)
        {
            Calls.Add([.. sentences]);
            LastOptions = options;
        }
        Interlocked.Increment(ref entered);
        Interlocked.Increment(ref running);
        try
        {
            if (!gate.Wait(TimeSpan.FromSeconds(20), cancellation)) throw new TimeoutException("gate never opened");
        }
        catch (OperationCanceledException)
        {
            Interlocked.Increment(ref cancelled);
            throw;
        }
        finally
        {
            Interlocked.Decrement(ref running);
        }
        if (Fail) throw new InvalidOperationException("backend failure (test)");
        return sentences.Select(s => new SentenceTranslation([new ScoredTranslation(s.ToUpperInvariant(), -1)], 1)).ToArray();
    }

    public static ModelInfo Info => new() { Id = "fake", Architecture = "fake" };
}
