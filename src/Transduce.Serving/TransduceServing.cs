using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using Transduce.Translation;

namespace Transduce.Serving;

/// <summary>What <see cref="TransduceServiceCollectionExtensions.AddTransduce"/> serves: the models and the service's limits.</summary>
public sealed class TransduceOptions
{
    private readonly List<(string Name, string? Directory, Translator? Translator)> models = [];

    /// <summary>Limits and tuning (<see cref="ServeOptions"/>); of its settings, an application's own host uses neither the Kestrel limits, the host filter, the API key nor the log format: those are the host's (<see cref="ServingApp"/>'s for <c>transduce serve</c>).</summary>
    public ServeOptions Serve { get; set; } = new();

    /// <summary>Serves the checkpoint directory (or Hugging Face folder) <paramref name="directory"/> as <paramref name="name"/>; it is loaded when the service starts and disposed with it. The first model added is the default.</summary>
    public TransduceOptions AddModel(string name, string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        return Add(name, directory, null);
    }

    /// <summary>
    /// Serves an already loaded <paramref name="translator"/> as <paramref name="name"/>; <paramref name="directory"/> is
    /// where it was loaded from (<c>/v1/models</c> names the checkpoint by its weights file). The caller keeps the
    /// translator and disposes it after the application.
    /// </summary>
    public TransduceOptions AddModel(string name, Translator translator, string directory)
    {
        ArgumentNullException.ThrowIfNull(translator);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        return Add(name, directory, translator);
    }

    private TransduceOptions Add(string name, string? directory, Translator? translator)
    {
        if (!ServedModel.IsValidName(name))
            throw new ArgumentException($"model name '{name}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", nameof(name));
        if (models.Any(m => m.Name == name)) throw new ArgumentException($"model name '{name}' is given twice", nameof(name));
        models.Add((name, directory, translator));
        return this;
    }

    /// <summary>Loads the models given by directory (once per directory, with <see cref="ServeOptions.ComputeType"/>) into <paramref name="owned"/>.</summary>
    internal IReadOnlyList<ServedModel> Resolve(List<TranslatorBackend> owned)
    {
        if (models.Count == 0) throw new InvalidOperationException("AddTransduce: no model to serve; call AddModel");
        var byDirectory = new Dictionary<string, TranslatorBackend>(StringComparer.Ordinal);
        var served = new List<ServedModel>();
        foreach (var (name, directory, translator) in models)
        {
            if (translator is not null)
            {
                // The caller owns this translator: its backend is never disposed here.
                served.Add(new ServedModel(new TranslatorBackend(translator), ModelInfo.From(translator.Checkpoint, directory!, name)));
                continue;
            }
            string full = Path.GetFullPath(directory!);
            if (!byDirectory.TryGetValue(full, out var backend))
            {
                var loaded = Translator.Load(directory!);
                backend = new TranslatorBackend(loaded);
                owned.Add(backend);
                byDirectory.Add(full, backend);
                if (Serve.ComputeType is { } chosen)
                {
                    Models.ComputeTypes.Apply(loaded.Checkpoint.Model, chosen);   // fails now, not at the first request
                    loaded.ComputeType = chosen;
                }
            }
            served.Add(new ServedModel(backend, ModelInfo.From(backend.Translator.Checkpoint, directory!, name)));
        }
        return served;
    }
}

/// <summary>Registers the translation service in an application's services: <c>builder.Services.AddTransduce(o =&gt; o.AddModel("en-fr", path))</c>.</summary>
public static class TransduceServiceCollectionExtensions
{
    /// <summary>
    /// Adds the models of <paramref name="configure"/>, one batching queue and decoder thread per model (a hosted service:
    /// it warms the models up before the server listens and drains admitted requests when the application stops), and
    /// the <c>Transduce</c> meter. Map the endpoints with <see cref="TransduceEndpointRouteBuilderExtensions.MapTranslation"/>.
    /// </summary>
    public static IServiceCollection AddTransduce(this IServiceCollection services, Action<TransduceOptions> configure)
    {
        var options = new TransduceOptions();
        configure(options);
        return AddCore(services, options);
    }

    /// <summary><see cref="AddCore(IServiceCollection, ServeOptions, Func{IServiceProvider, IReadOnlyList{ServedModel}})"/> with the models of <paramref name="options"/>, loaded when the host starts and disposed with it.</summary>
    internal static IServiceCollection AddCore(IServiceCollection services, TransduceOptions options)
    {
        options.Serve.Validate();
        services.AddSingleton<LoadedModels>();
        return AddCore(services, options.Serve, sp => options.Resolve(sp.GetRequiredService<LoadedModels>().Backends));
    }

    /// <summary>The services behind every host: the options, the metrics, the budget, the models and their queues, the Prometheus exporter.</summary>
    internal static IServiceCollection AddCore(IServiceCollection services, ServeOptions options, Func<IServiceProvider, IReadOnlyList<ServedModel>> models)
    {
        services.AddMetrics();
        services.TryAddSingleton(options);
        services.TryAddSingleton<ServingMetrics>();
        services.TryAddSingleton(new CostBudget(options.MaxInflightCost, options.RetryAfterSeconds));
        services.TryAddSingleton(sp =>
        {
            // The exporter listens before the queues register their models, so that each model's counters start at 0.
            sp.GetService<MeterProvider>();
            return new ServedModels(models(sp), options, sp.GetRequiredService<ServingMetrics>(), sp.GetRequiredService<CostBudget>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("Transduce.Serving"));
        });
        services.AddHostedService(sp => sp.GetRequiredService<ServedModels>());
        // The drain (ServedModels.StoppingAsync) waits up to the shutdown timeout for admitted requests, then stops the
        // decoders; the host gets a margin beyond it to write the last answers before the web server stops.
        services.Configure<HostOptions>(h =>
        {
            var needed = (options.ShutdownTimeout ?? options.Timeout + TimeSpan.FromSeconds(5)) + TimeSpan.FromSeconds(5);
            if (h.ShutdownTimeout < needed) h.ShutdownTimeout = needed;
        });
        services.AddOpenTelemetry().WithMetrics(m => m
            .AddMeter(ServingMetrics.MeterName, ServingMetrics.RuntimeMeterName)
            .AddPrometheusExporter(p => p.ScrapeResponseCacheDurationMilliseconds = 0));   // every scrape sees the counts of now
        return services;
    }

    /// <summary>The translators loaded from directories, disposed after the queues that decode with them (created before them, so disposed after).</summary>
    internal sealed class LoadedModels : IDisposable
    {
        public List<TranslatorBackend> Backends { get; } = [];

        public void Dispose()
        {
            foreach (var backend in Backends) backend.Dispose();
        }
    }
}

/// <summary>Maps the translation endpoints in an application: <c>app.MapTranslation("/v1")</c>.</summary>
public static class TransduceEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps <c>POST {prefix}/translate</c> and <c>GET {prefix}/models</c> (JSON in snake_case, errors as
    /// <c>application/problem+json</c>) of the models added with <see cref="TransduceServiceCollectionExtensions.AddTransduce"/>.
    /// The returned group takes the application's own conventions (<c>RequireAuthorization</c>, <c>RequireRateLimiting</c>, …).
    /// </summary>
    public static RouteGroupBuilder MapTranslation(this IEndpointRouteBuilder endpoints, string prefix = "/v1")
    {
        var group = endpoints.MapGroup(prefix);
        ServingApp.MapApi(group);
        return group;
    }

    /// <summary>Maps <c>GET {pattern}</c>: 200 while serving, 503 once the application stops (for load balancers).</summary>
    public static RouteHandlerBuilder MapTranslationHealth(this IEndpointRouteBuilder endpoints, string pattern = "/healthz") =>
        ServingApp.MapHealth(endpoints, pattern);

    /// <summary>Maps <c>GET {pattern}</c>: every instrument of the <c>Transduce</c> meters in the Prometheus text format.</summary>
    public static IEndpointConventionBuilder MapTranslationMetrics(this IEndpointRouteBuilder endpoints, string pattern = "/metrics") =>
        endpoints.MapPrometheusScrapingEndpoint(pattern);

    /// <summary>Maps the web page at <c>/</c> (and its files at <c>/static/…</c>); it calls the API at <c>/v1</c>.</summary>
    public static IEndpointConventionBuilder MapTranslationPage(this IEndpointRouteBuilder endpoints) => ServingApp.MapPage(endpoints);
}
