using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.HostFiltering;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using Scalar.AspNetCore;

namespace Transduce.Serving;

/// <summary>
/// Builds the translation service: <c>POST /v1/translate</c>, <c>GET /v1/models</c>, <c>GET /healthz</c>,
/// <c>GET /metrics</c>, the OpenAPI document at <see cref="OpenApiPath"/> (and its interactive page at <c>/scalar/</c>) and the web page at <c>/</c>.
/// </summary>
public static class ServingApp
{
    /// <summary>Where the OpenAPI document is served.</summary>
    public const string OpenApiPath = "/openapi/v1.json";

    private static readonly object HostRejected = new();

    private static readonly Dictionary<string, string> s_contentTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        [".html"] = "text/html; charset=utf-8", [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8", [".svg"] = "image/svg+xml",
    };

    /// <summary>One model under <paramref name="model"/>'s name: see <see cref="Build(ServeOptions, IReadOnlyList{ServedModel}, IReadOnlyList{IPEndPoint}?, Action{WebApplicationBuilder}?)"/>.</summary>
    internal static WebApplication Build(ServeOptions options, ITranslationBackend backend, ModelInfo model,
        IReadOnlyList<IPEndPoint>? urls = null, Action<WebApplicationBuilder>? configure = null) =>
        Build(options, [new ServedModel(backend, model)], urls, configure);

    /// <summary>
    /// Builds the application serving <paramref name="models"/> (the first is the default). <paramref name="urls"/> are
    /// the addresses Kestrel listens on (see <see cref="ListenAddresses.Parse"/>; non-loopback ones need
    /// <see cref="ServeOptions.AllowRemote"/>); pass none when <paramref name="configure"/> installs another server
    /// (tests use <c>UseTestServer</c>). The caller owns the backends and disposes them after the app is disposed
    /// (disposing the app ends every decoder thread first).
    /// </summary>
    public static WebApplication Build(ServeOptions options, IReadOnlyList<ServedModel> models,
        IReadOnlyList<IPEndPoint>? urls = null, Action<WebApplicationBuilder>? configure = null) =>
        Build(options, services => TransduceServiceCollectionExtensions.AddCore(services, options, _ => models), urls, configure);

    /// <summary>
    /// Builds the application serving the models of <paramref name="transduce"/> with its <see cref="TransduceOptions.Serve"/>
    /// settings: the models are loaded here (<see cref="Models"/> lists them) and disposed with the app.
    /// <paramref name="urls"/> and <paramref name="configure"/> as for the other overload.
    /// </summary>
    public static WebApplication Build(TransduceOptions transduce, IReadOnlyList<IPEndPoint>? urls = null, Action<WebApplicationBuilder>? configure = null) =>
        Build(transduce.Serve, services => TransduceServiceCollectionExtensions.AddCore(services, transduce), urls, configure);

    /// <summary>The models <paramref name="app"/> serves, in order (the first is the default).</summary>
    public static IReadOnlyList<ServedModel> Models(WebApplication app) =>
        [.. app.Services.GetRequiredService<ServedModels>().Models.Select(m => m.Model)];

    private static WebApplication Build(ServeOptions options, Action<IServiceCollection> addService,
        IReadOnlyList<IPEndPoint>? urls, Action<WebApplicationBuilder>? configure)
    {
        options.Validate();
        if (urls is not null && !options.AllowRemote && !ListenAddresses.AllLoopback(urls))
            throw new ArgumentException("--urls: a non-loopback address needs --allow-remote");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = typeof(ServingApp).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        ConfigureLogging(builder.Logging, options);
        if (urls is not null) builder.WebHost.ConfigureKestrel(k => ConfigureKestrel(k, options, urls));
        builder.Services.ConfigureHttpJsonOptions(j => Configure(j.SerializerOptions));   // the OpenAPI schemas and problem bodies
        builder.Services.AddProblemDetails(p => p.CustomizeProblemDetails = c =>
        {
            // The host filter answers a bare 400: say which header was refused.
            if (c.ProblemDetails.Status == StatusCodes.Status400BadRequest && c.ProblemDetails.Detail is null
                && c.HttpContext.Items.ContainsKey(HostRejected))
            {
                c.ProblemDetails.Detail = $"the Host header '{c.HttpContext.Request.Host}' is not one this service answers (--allowed-hosts)";
                c.ProblemDetails.Extensions["field"] = "Host";
            }
        });
        // ASP.NET Core's own host filter runs first of all (a startup filter), before metrics, logs and problem bodies:
        // let it pass everything and run the same middleware, with the real list, inside the pipeline below.
        builder.Services.AddHostFiltering(h => h.AllowedHosts = ["*"]);
        var hostFiltering = new HostFilteringOptions
        {
            AllowedHosts = [.. ListenAddresses.AllowedHosts(options.AllowedHosts, urls)],
            IncludeFailureMessage = false,   // the status-code page answers with problem+json
        };
        builder.Services.AddOpenApi(o => o.AddDocumentTransformer((document, _, _) =>
        {
            OpenApiDescription.Describe(document, options);
            return Task.CompletedTask;
        }));
        addService(builder.Services);   // the same registration as an application's AddTransduce
        configure?.Invoke(builder);

        var app = builder.Build();
        // Load the models now: a model that cannot be loaded is the caller's error (one line from the CLI), not a
        // start-up failure the host logs with its stack.
        app.Services.GetRequiredService<ServedModels>();
        var metrics = app.Services.GetRequiredService<ServingMetrics>();
        var requestLogger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(RequestLog.Category);
        app.Use(async (context, next) =>
        {
            long start = Stopwatch.GetTimestamp();
            string endpoint = EndpointLabel(context);   // routing has run already; the exception handler clears it
            try
            {
                await next(context);
            }
            finally
            {
                // 499 (nginx's "client closed request"): the client left before an answer was written.
                int status = context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode;
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                metrics.ObserveRequest(endpoint, status, seconds);
                if (options.LogRequests && (context.Request.Path.StartsWithSegments("/v1") || status >= 400))
                    RequestLog.Write(requestLogger, context, status, seconds * 1000);
            }
        });
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.Use(async (context, next) =>
        {
            context.Response.Headers.XContentTypeOptions = "nosniff";
            await next(context);
        });
        app.Use(async (context, next) =>
        {
            context.Items[HostRejected] = true;   // cleared below if the host filter lets the request through
            await next(context);
        });
        app.UseMiddleware<HostFilteringMiddleware>(new FixedOptions<HostFilteringOptions>(hostFiltering));
        app.Use(async (context, next) =>
        {
            context.Items.Remove(HostRejected);
            await next(context);
        });
        if (options.ApiKey is not null) app.Use(RequireApiKey(options.ApiKey, metrics));

        app.MapTranslation("/v1");
        app.MapTranslationHealth("/healthz");
        app.MapTranslationMetrics("/metrics").WithName("Metrics");
        app.MapOpenApi(OpenApiPath);
        MapApiPage(app);
        app.MapTranslationPage();
        return app;
    }

    /// <summary>The JSON conventions of the API: snake_case names, text in any script written as it is.</summary>
    internal static readonly JsonSerializerOptions Json = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    private static JsonSerializerOptions Configure(JsonSerializerOptions j)
    {
        j.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        j.DictionaryKeyPolicy = null;
        // Translations are text in any script: write "j'ai gagné", not "j\u0027ai gagn\u00e9". Safe here because every
        // response is application/json with nosniff and is never inlined into HTML.
        j.Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping;
        return j;
    }

    /// <summary><c>POST translate</c> and <c>GET models</c> on <paramref name="group"/> (see <see cref="TransduceEndpointRouteBuilderExtensions.MapTranslation"/>).</summary>
    internal static void MapApi(RouteGroupBuilder group)
    {
        Func<HttpContext, ServedModels, ServeOptions, ServingMetrics, Task<IResult>> translate = (context, registry, options, metrics) =>
            TranslateEndpoint.HandleAsync(context, registry, options, metrics);
        group.MapPost("/translate", (Delegate)translate)
            .WithName("Translate").WithTags("translation")
            .WithSummary("Translate sentences")
            .WithDescription("Translates each sentence of `text` with the named model (default: the first). The request's estimated cost " +
                "(per sentence: max(beam, n_best) × (source positions + output limit + 1)) must fit --max-request-cost (else 413, or 422 " +
                "when a smaller beam would fit) and the in-flight budget --max-inflight-cost (else 503 with Retry-After); a request that could not be " +
                "answered within --timeout-s at the decoder's current pace, with the work already admitted, gets 503 with Retry-After at once.")
            // The body is described, not declared with Accepts: Accepts would make routing answer a wrong Content-Type
            // with a bare 415 before the handler can say what is wrong.
            .AddOpenApiOperationTransformer(async (operation, context, cancellation) =>
            {
                var schema = await context.GetOrCreateSchemaAsync(typeof(TranslateRequestBody), cancellationToken: cancellation);
                operation.RequestBody = new Microsoft.OpenApi.OpenApiRequestBody
                {
                    Required = true,
                    Content = new Dictionary<string, Microsoft.OpenApi.OpenApiMediaType> { ["application/json"] = new() { Schema = schema } },
                };
            })
            .Produces<TranslateResponse>(StatusCodes.Status200OK)
            .ProducesProblems(400, 401, 404, 413, 415, 422, 500, 503, 504);
        group.MapGet("/models", (ServedModels registry) => Results.Json(new ModelList([.. registry.Models.Select(m => m.Model.Info)]), Json))
            .WithName("ListModels").WithTags("translation")
            .WithSummary("The models served; the first is the default")
            .Produces<ModelList>(StatusCodes.Status200OK)
            .ProducesProblems(401);
    }

    /// <summary><c>GET {pattern}</c>: 200 while serving, 503 once stopping.</summary>
    internal static RouteHandlerBuilder MapHealth(IEndpointRouteBuilder endpoints, string pattern) =>
        endpoints.MapGet(pattern, (ServedModels registry, IHostApplicationLifetime lifetime) =>
            {
                var names = registry.Models.Select(m => m.Model.Name).ToArray();
                return registry.IsStopping || lifetime.ApplicationStopping.IsCancellationRequested
                    ? Results.Json(new HealthStatus("stopping", names), Json, statusCode: StatusCodes.Status503ServiceUnavailable)
                    : Results.Json(new HealthStatus("ok", names), Json);
            })
            .WithName("Health").WithTags("operations")
            .WithSummary("Liveness and readiness: 200 while serving, 503 once stopping")
            .Produces<HealthStatus>(StatusCodes.Status200OK)
            .Produces<HealthStatus>(StatusCodes.Status503ServiceUnavailable);

    /// <summary>
    /// The interactive API page at <c>/scalar/</c> over the OpenAPI document: the script embedded in Scalar.AspNetCore (no
    /// CDN), without its web fonts, telemetry, developer toolbar or AI chat (none would work offline). Its scripts run by a
    /// fresh nonce under a CSP like the page's (its components add inline styles).
    /// </summary>
    private static void MapApiPage(WebApplication app) =>
        app.MapScalarApiReference((o, context) =>
        {
            o.OpenApiRoutePattern = OpenApiPath;
            o.DefaultFonts = false;
            o.DisableTelemetry().HideDeveloperTools().WithNonce(Convert.ToHexString(RandomNumberGenerator.GetBytes(16)));
            o.Agent = new ScalarAgentOptions { Disabled = true };
            context.Response.Headers.ContentSecurityPolicy = $"default-src 'self'; script-src 'self' 'nonce-{o.Nonce}'; " +
                "style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'";
        }).ExcludeFromDescription();

    /// <summary>The web page at <c>/</c> and its files at <c>/static/{file}</c>.</summary>
    internal static IEndpointConventionBuilder MapPage(IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("").ExcludeFromDescription();
        group.MapGet("/", (HttpContext context) => Page(context, "index.html"));
        group.MapGet("/static/{file}", (HttpContext context, string file) => Page(context, file));
        return group;
    }

    /// <summary>Parses <c>--urls</c> for a loopback-only service (see <see cref="ListenAddresses.Parse"/>).</summary>
    public static IReadOnlyList<IPEndPoint> ParseLoopbackUrls(string urls) => ListenAddresses.Parse(urls, allowRemote: false);

    private static void ConfigureLogging(ILoggingBuilder logging, ServeOptions options)
    {
        logging.ClearProviders();
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        // Standard output carries the start-up lines ("serving … on …") that scripts read; logs go to standard error.
        if (options.LogFormat == ServeLogFormat.Json)
            logging.AddJsonConsole(c => c.UseUtcTimestamp = true);
        else
            logging.AddSimpleConsole(c =>
            {
                c.SingleLine = true;
                c.UseUtcTimestamp = true;
                c.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            });
        logging.Services.Configure<ConsoleLoggerOptions>(c => c.LogToStandardErrorThreshold = LogLevel.Trace);
    }

    private static void ConfigureKestrel(KestrelServerOptions k, ServeOptions options, IReadOnlyList<IPEndPoint> urls)
    {
        k.AddServerHeader = false;
        k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
        k.Limits.MaxConcurrentConnections = options.MaxConnections;
        k.Limits.MaxConcurrentUpgradedConnections = 0;                 // no WebSockets here
        k.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
        k.Limits.MaxRequestHeaderCount = 64;
        k.Limits.MaxRequestLineSize = 8 * 1024;
        k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);    // slow-header (slowloris) clients are cut off
        k.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(60);
        k.Limits.MinRequestBodyDataRate = new MinDataRate(bytesPerSecond: 1024, gracePeriod: TimeSpan.FromSeconds(5));
        k.Limits.Http2.MaxStreamsPerConnection = 32;
        k.Limits.Http2.MaxRequestHeaderFieldSize = 16 * 1024;
        foreach (var endpoint in urls) k.Listen(endpoint);
    }

    /// <summary>
    /// With an API key set, <c>/v1/…</c> and <c>/metrics</c> need <c>Authorization: Bearer KEY</c> (compared in constant
    /// time); the page, <c>/healthz</c> (for load balancers) and the OpenAPI document stay open.
    /// </summary>
    private static Func<HttpContext, RequestDelegate, Task> RequireApiKey(string apiKey, ServingMetrics metrics)
    {
        byte[] expected = SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));
        return async (context, next) =>
        {
            var path = context.Request.Path;
            if (!path.StartsWithSegments("/v1") && !path.StartsWithSegments("/metrics"))
            {
                await next(context);
                return;
            }
            string header = context.Request.Headers.Authorization.ToString();
            const string scheme = "Bearer ";
            bool ok = header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)
                && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim())), expected);
            if (ok)
            {
                await next(context);
                return;
            }
            metrics.CountError("unauthorized");
            context.Response.Headers.WWWAuthenticate = "Bearer realm=\"transduce\"";
            var problem = new RequestProblem(StatusCodes.Status401Unauthorized, "Unauthorized",
                header.Length == 0 ? "this service needs an API key: send 'Authorization: Bearer <key>'" : "the API key is not valid", "Authorization");
            await Problem(problem).ExecuteAsync(context);
        };
    }

    /// <summary>A problem+json result carrying the field and limit of <paramref name="problem"/>.</summary>
    internal static IResult Problem(RequestProblem problem)
    {
        var extensions = new Dictionary<string, object?>();
        if (problem.Field is not null) extensions["field"] = problem.Field;
        if (problem.Limit is not null) extensions["limit"] = problem.Limit;
        if (problem.LimitValue is not null) extensions["limit_value"] = problem.LimitValue;
        if (problem.Requested is not null) extensions["requested"] = problem.Requested;
        return Results.Problem(detail: problem.Detail, statusCode: problem.Status, title: problem.Title, extensions: extensions);
    }

    /// <summary>Options that never change, for a middleware that wants an <see cref="IOptionsMonitor{TOptions}"/>.</summary>
    private sealed class FixedOptions<T>(T value) : IOptionsMonitor<T>
    {
        public T CurrentValue => value;

        public T Get(string? name) => value;

        public IDisposable? OnChange(Action<T, string?> listener) => null;
    }

    private static RouteHandlerBuilder ProducesProblems(this RouteHandlerBuilder builder, params int[] statuses)
    {
        foreach (int status in statuses) builder.Produces<ServiceProblem>(status, "application/problem+json");
        return builder;
    }

    private static string EndpointLabel(HttpContext context) =>
        (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";

    private static IResult Page(HttpContext context, string file)
    {
        var assembly = typeof(ServingApp).Assembly;
        string extension = Path.GetExtension(file);
        if (file.Contains('/') || !s_contentTypes.TryGetValue(extension, out var contentType)
            || assembly.GetManifestResourceStream("wwwroot/" + file) is not { } stream)
            return Results.NotFound();
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers.ContentSecurityPolicy =
            "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";
        return Results.Stream(stream, contentType);
    }
}
