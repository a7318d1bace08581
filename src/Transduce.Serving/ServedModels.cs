using System.Text.RegularExpressions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Transduce.Serving;

/// <summary>A model to serve: the name requests use, its decoder and what <c>/v1/models</c> says about it.</summary>
public sealed partial record ServedModel
{
    /// <summary>Pairs <paramref name="backend"/> with its description (<see cref="ModelInfo.From"/>); the name is <paramref name="info"/>'s.</summary>
    public ServedModel(TranslatorBackend backend, ModelInfo info) : this((ITranslationBackend)backend, info) { }

    /// <summary>Pairs any decoder (the tests' fakes) with its description; the name is <paramref name="info"/>'s.</summary>
    internal ServedModel(ITranslationBackend backend, ModelInfo info)
    {
        if (!IsValidName(info.Name))
            throw new ArgumentException($"model name '{info.Name}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        Backend = backend;
        Info = info;
    }

    /// <summary>The name requests use (<c>"model"</c>).</summary>
    public string Name => Info.Name;

    /// <summary>The decoder.</summary>
    internal ITranslationBackend Backend { get; }

    /// <summary>What <c>/v1/models</c> reports.</summary>
    public ModelInfo Info { get; }

    /// <summary>Whether <paramref name="name"/> can name a model: 1–64 of <c>[A-Za-z0-9._-]</c>, starting with a letter or digit.</summary>
    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();
}

/// <summary>
/// The models a service serves, each with its own <see cref="BatchingQueue"/> (and decoder thread), all admitted
/// against one <see cref="CostBudget"/>. Starting the host warms every model up (<see cref="ServeOptions.WarmUp"/>),
/// then starts every queue. Stopping drains first, while the web server still answers (<see cref="StoppingAsync"/>):
/// new requests and <c>/healthz</c> get 503, admitted requests are answered, and past the drain time the rest get 503;
/// it returns once every decoder thread has ended.
/// </summary>
internal sealed class ServedModels : IHostedLifecycleService, IDisposable
{
    private readonly Dictionary<string, Entry> byName = new(StringComparer.Ordinal);
    private readonly ServeOptions options;
    private readonly ILogger logger;

    /// <summary>Creates a queue per model in <paramref name="models"/> (names must differ; the first is the default).</summary>
    public ServedModels(IReadOnlyList<ServedModel> models, ServeOptions options, ServingMetrics metrics, CostBudget budget, ILogger? logger = null)
    {
        if (models.Count == 0) throw new ArgumentException("no model to serve", nameof(models));
        this.options = options;
        this.logger = logger ?? NullLogger.Instance;
        var entries = new List<Entry>();
        foreach (var model in models)
        {
            if (byName.ContainsKey(model.Name)) throw new ArgumentException($"model name '{model.Name}' is given twice");
            var entry = new Entry(model, new BatchingQueue(model.Name, model.Backend, options, metrics, budget));
            byName.Add(model.Name, entry);
            entries.Add(entry);
        }
        Models = entries;
        Budget = budget;
        metrics.SetBudgetGauge(() => (budget.InFlight, budget.Limit));
    }

    /// <summary>The models in the order given; the first is the default.</summary>
    public IReadOnlyList<Entry> Models { get; }

    /// <summary>The model a request without <c>"model"</c> gets.</summary>
    public Entry Default => Models[0];

    /// <summary>The in-flight cost budget shared by every model.</summary>
    public CostBudget Budget { get; }

    /// <summary>True once any queue has begun to stop.</summary>
    public bool IsStopping => Models.Any(m => m.Queue.IsStopping);

    /// <summary>How long stopping waits for admitted requests before it stops the decoders.</summary>
    public TimeSpan DrainTime => options.ShutdownTimeout ?? options.Timeout + TimeSpan.FromSeconds(5);

    /// <summary>The model named <paramref name="name"/>, or the default for null.</summary>
    public bool TryGet(string? name, out Entry entry)
    {
        if (name is null)
        {
            entry = Default;
            return true;
        }
        return byName.TryGetValue(name, out entry!);
    }

    /// <inheritdoc />
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Warms the models up (hosted services start before the web server listens), then starts every queue.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.WarmUp) WarmUp(cancellationToken);
        foreach (var m in Models) m.Queue.Start();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// The drain. The host calls this before it stops any hosted service, the web server included, so the server still
    /// accepts connections: new requests get 503, <c>/healthz</c> answers 503 for load balancers, admitted requests are
    /// answered. After <see cref="DrainTime"/> (or when the host's own stop time is up) running decodes stop and the
    /// requests left get 503 — written while the server is still up, not cut off with a reset connection.
    /// </summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        using var drain = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        drain.CancelAfter(DrainTime);
        await Task.WhenAll(Models.Select(m => m.Queue.StopAsync(drain.Token)));
    }

    /// <summary>Ends every decoder thread if the drain did not (a host that was never started, or stopped twice).</summary>
    public Task StopAsync(CancellationToken cancellationToken) => Task.WhenAll(Models.Select(m => m.Queue.StopAsync(cancellationToken)));

    /// <inheritdoc />
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Ends every decoder thread (stopping running decodes within one step) and waits for them.</summary>
    public void Dispose()
    {
        foreach (var m in Models) m.Queue.Dispose();
    }

    /// <summary>
    /// Decodes a few short sentences with each model (once per backend served under several names) in the shapes
    /// requests take — greedy alone and in a batch, the default beam, the largest beam — so that what a first decode of
    /// a shape costs (kernel selection, packing of weights, allocator growth) is paid before the first request, which
    /// would otherwise wait seconds for it. The batch is decoded twice; the second, warm call gives the decoder its first
    /// pace for admission (<see cref="BatchingQueue.Drain"/>).
    /// </summary>
    private void WarmUp(CancellationToken cancellation)
    {
        const int WarmUpOutputTokens = 32;
        var seen = new HashSet<ITranslationBackend>(ReferenceEqualityComparer.Instance);
        foreach (var entry in Models)
        {
            var backend = entry.Model.Backend;
            if (!seen.Add(backend)) continue;
            var info = entry.Model.Info;
            string? source = info.Languages is { Count: > 0 } known ? info.DefaultSourceLang ?? known[0] : null;
            string? target = info.Languages is { Count: > 0 } languages
                ? info.DefaultTargetLang ?? languages.FirstOrDefault(l => l != source) ?? languages[0] : null;
            int defaultBeam = Math.Min(info.DefaultBeam ?? options.DefaultBeam, options.MaxBeam);
            string[] one = ["This is a short sentence, written to warm the decoder up before the first request."];
            string[] batch = [.. Enumerable.Repeat(one[0], Math.Min(8, options.MaxBatch))];
            var shapes = new List<(string[] Sentences, int Beam)> { (one, 1), (batch, 1) };
            if (defaultBeam > 1) shapes.Add((one, defaultBeam));
            if (options.MaxBeam > Math.Max(1, defaultBeam)) shapes.Add((one, options.MaxBeam));
            shapes.Add((batch, 1));   // warm now: its pace is the first the queue learns
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                for (int i = 0; i < shapes.Count; i++)
                {
                    var (sentences, beam) = shapes[i];
                    // Outputs capped: the shapes are what needs warming, and a model that never ends a sentence must not
                    // keep the service from starting.
                    var decoding = options.Decoding(beam, 1) with
                    {
                        SourceLanguage = source, TargetLanguage = target, MaxOutputTokens = Math.Min(options.MaxOutputTokens, WarmUpOutputTokens),
                    };
                    long cost = backend.EstimateCost(sentences, decoding).Sum(c => c.Cost);
                    long callStart = System.Diagnostics.Stopwatch.GetTimestamp();
                    backend.Translate(sentences, decoding, attention: false, cancellation);
                    if (i == shapes.Count - 1)
                    {
                        double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(callStart).TotalSeconds;
                        foreach (var named in Models.Where(m => ReferenceEquals(m.Model.Backend, backend)))
                            named.Queue.Drain.Observe(cost, seconds);
                        Budget.ObserveDrain(cost, seconds);
                    }
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new InvalidOperationException($"model '{info.Name}': warming up failed: {e.Message}", e);
            }
            logger.LogInformation("model '{Model}' warmed up in {Seconds:0.00} s ({Shapes} decodes)", info.Name,
                System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds, shapes.Count);
        }
    }

    /// <summary>One served model and its queue.</summary>
    /// <param name="Model">The model.</param>
    /// <param name="Queue">Its queue and decoder.</param>
    public sealed record Entry(ServedModel Model, BatchingQueue Queue);
}
