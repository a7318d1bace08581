using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Transduce.Serving;

/// <summary>
/// Builds the translation service: <c>POST /v1/translate</c>, <c>GET /v1/models</c>, <c>GET /healthz</c>,
/// <c>GET /metrics</c> and the web page at <c>/</c>.
/// </summary>
public static class ServingApp
{
    private static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        // Translations are text in any script: write "j'ai gagné", not "j\u0027ai gagn\u00e9". Safe here because every
        // response is application/json with nosniff and is never inlined into HTML.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static readonly Dictionary<string, string> s_contentTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        [".html"] = "text/html; charset=utf-8", [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8", [".svg"] = "image/svg+xml",
    };

    /// <summary>
    /// Builds the application. <paramref name="urls"/> are the addresses Kestrel listens on (loopback only, see
    /// <see cref="ParseLoopbackUrls"/>); pass none when <paramref name="configure"/> installs another server
    /// (tests use <c>UseTestServer</c>). The caller owns <paramref name="backend"/> and disposes it after the app stops.
    /// </summary>
    public static WebApplication Build(ServeOptions options, ITranslationBackend backend, ModelInfo model,
        IReadOnlyList<IPEndPoint>? urls = null, Action<WebApplicationBuilder>? configure = null)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = typeof(ServingApp).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        if (urls is not null)
        {
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
                foreach (var endpoint in urls) k.Listen(endpoint);
            });
        }
        // In-flight requests may wait for the whole queue to drain: give shutdown the request timeout and a margin.
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.Timeout + TimeSpan.FromSeconds(5));
        builder.Services.AddProblemDetails();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(backend);
        builder.Services.AddSingleton(model);
        builder.Services.AddSingleton<ServingMetrics>();
        builder.Services.AddSingleton<BatchingQueue>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<BatchingQueue>());
        configure?.Invoke(builder);

        var app = builder.Build();
        var metrics = app.Services.GetRequiredService<ServingMetrics>();
        app.Use(async (context, next) =>
        {
            long start = Stopwatch.GetTimestamp();
            string endpoint = EndpointLabel(context);
            try
            {
                await next(context);
            }
            finally
            {
                // 499 (nginx's "client closed request"): the client left before an answer was written.
                int status = context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode;
                metrics.ObserveRequest(endpoint, status, Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
        });
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.Use(async (context, next) =>
        {
            context.Response.Headers.XContentTypeOptions = "nosniff";
            await next(context);
        });

        app.MapPost("/v1/translate", (HttpContext context, BatchingQueue queue) => TranslateAsync(context, queue, options, metrics, model, backend));
        app.MapGet("/v1/models", () => Results.Json(new { models = new[] { model } }, s_json));
        app.MapGet("/healthz", (BatchingQueue queue, IHostApplicationLifetime lifetime) =>
            queue.IsStopping || lifetime.ApplicationStopping.IsCancellationRequested
                ? Results.Json(new { status = "stopping" }, s_json, statusCode: StatusCodes.Status503ServiceUnavailable)
                : Results.Json(new { status = "ok", model = model.Id }, s_json));
        app.MapGet("/metrics", () => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        app.MapGet("/", (HttpContext context) => Page(context, "index.html"));
        app.MapGet("/static/{file}", (HttpContext context, string file) => Page(context, file));
        return app;
    }

    /// <summary>
    /// Parses <c>--urls</c> (separated by <c>;</c> or <c>,</c>) into endpoints, accepting only <c>http</c> addresses on
    /// the loopback interface (<c>127.0.0.0/8</c>, <c>[::1]</c>, <c>localhost</c>); port 0 picks a free port.
    /// Throws <see cref="ArgumentException"/> naming the first address that is not allowed.
    /// </summary>
    public static IReadOnlyList<IPEndPoint> ParseLoopbackUrls(string urls)
    {
        var endpoints = new List<IPEndPoint>();
        foreach (string raw in urls.Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(raw, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp || uri.AbsolutePath != "/")
                throw new ArgumentException($"--urls: '{raw}' is not an address like http://127.0.0.1:5080");
            IPAddress address;
            if (uri.IsLoopback && uri.HostNameType == UriHostNameType.Dns) address = IPAddress.Loopback;   // localhost
            else if (!IPAddress.TryParse(uri.Host.Trim('[', ']'), out address!) || !IPAddress.IsLoopback(address))
                throw new ArgumentException($"--urls: '{raw}' is not a loopback address; transduce serve listens on 127.0.0.1 or [::1] only");
            endpoints.Add(new IPEndPoint(address, uri.Port));
        }
        if (endpoints.Count == 0) throw new ArgumentException("--urls: no address given");
        return endpoints;
    }

    private static async Task<IResult> TranslateAsync(HttpContext context, BatchingQueue queue, ServeOptions options, ServingMetrics metrics, ModelInfo model,
        ITranslationBackend backend)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(options.Timeout);
        try
        {
            var (request, problem) = await TranslateRequestReader.ReadAsync(context.Request, options, deadline.Token);
            if (problem is not null)
            {
                metrics.CountError(problem.Status == StatusCodes.Status413PayloadTooLarge ? "too_large" : "invalid");
                return Problem(problem);
            }
            if (request!.Attention && !model.Attention)
            {
                metrics.CountError("invalid");
                return Problem(new RequestProblem(StatusCodes.Status400BadRequest, "No attention",
                    $"the '{model.Architecture}' model has no cross-attention to show; send \"attention\": false or leave it out", "attention"));
            }

            switch (queue.TrySubmit(request.Text, request.Beam, request.NBest, deadline.Token, out var pending))
            {
                case SubmitRejection.QueueFull:
                    metrics.CountError("queue_full");
                    context.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    return Problem(new RequestProblem(StatusCodes.Status503ServiceUnavailable, "Queue full",
                        $"the translation queue holds its limit of {options.QueueLimit} sentences; retry later", null));
                case SubmitRejection.ShuttingDown:
                    metrics.CountError("shutting_down");
                    return Problem(new RequestProblem(StatusCodes.Status503ServiceUnavailable, "Shutting down",
                        "the service is stopping and takes no new requests", null));
            }

            var outputs = await pending.WaitAsync(deadline.Token);
            var results = outputs.Select(ToResult).ToArray();
            if (request.Attention)
            {
                // Per sentence: the decoder's last layer, averaged over heads, for the best translation.
                for (int i = 0; i < results.Length; i++)
                {
                    deadline.Token.ThrowIfCancellationRequested();
                    var map = await Task.Run(() => backend.Attention(request.Text[i], request.Beam), deadline.Token);
                    if (map is null) continue;
                    var mean = map.Select();
                    var rows = Enumerable.Range(0, mean.GetLength(0))
                        .Select(r => Enumerable.Range(0, mean.GetLength(1)).Select(c => MathF.Round(mean[r, c], 4)).ToArray()).ToArray();
                    results[i] = results[i] with { Attention = new AttentionView(map.SourceTokens, map.TargetTokens, rows) };
                }
            }
            return Results.Json(new TranslateResponse(model.Id, results), s_json);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            metrics.CountError("client_gone");
            return Results.Empty;
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            metrics.CountError("timeout");
            return Problem(new RequestProblem(StatusCodes.Status504GatewayTimeout, "Timed out",
                $"the translation took longer than {options.Timeout.TotalSeconds:0.###} s", null));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            metrics.CountError("internal");
            throw;   // the exception handler answers 500 with a problem body (no details leak to the client)
        }
    }

    private static TranslationResult ToResult(IReadOnlyList<ScoredTranslation> hypotheses)
    {
        var list = hypotheses.Select(h => new Hypothesis(h.Text, Finite(h.Score))).ToArray();
        return list.Length == 0 ? new TranslationResult("", null, list) : new TranslationResult(list[0].Text, list[0].Score, list);
    }

    private static double? Finite(double d) => double.IsFinite(d) ? d : null;

    private static IResult Problem(RequestProblem problem) => Results.Problem(
        detail: problem.Detail, statusCode: problem.Status, title: problem.Title,
        extensions: problem.Field is null ? null : new Dictionary<string, object?> { ["field"] = problem.Field });

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

    private sealed record TranslateResponse(string Model, TranslationResult[] Translations);

    private sealed record TranslationResult(string Text, double? Score, Hypothesis[] NBest, AttentionView? Attention = null);

    private sealed record AttentionView(IReadOnlyList<string> SourceTokens, IReadOnlyList<string> TargetTokens, float[][] Weights);

    private sealed record Hypothesis(string Text, double? Score);
}
