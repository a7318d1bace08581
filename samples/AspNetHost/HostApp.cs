using System.Security.Cryptography;
using System.Text;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.DependencyInjection;
using Transduce.Serving;

namespace AspNetHost;

/// <summary>
/// The application: its own response header, its own API-key check and its own rate limit around the translation
/// endpoints that <see cref="TransduceServiceCollectionExtensions.AddTransduce"/> and
/// <see cref="TransduceEndpointRouteBuilderExtensions.MapTranslation"/> add.
/// </summary>
public static class HostApp
{
    /// <summary>The header the application adds to every response.</summary>
    public const string ServedByHeader = "X-Served-By";

    /// <summary>The header that carries the application's API key.</summary>
    public const string ApiKeyHeader = "X-Api-Key";

    /// <summary>
    /// Builds the application from its command line: <c>--model DIR</c> (required), <c>--api-key KEY</c> (optional: then
    /// <c>/v1/…</c> needs it in <see cref="ApiKeyHeader"/>), <c>--translate-per-minute N</c> (default 60). <paramref name="configure"/>
    /// may change the builder (the tests install a TestServer).
    /// </summary>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        string model = builder.Configuration["model"]
            ?? throw new ArgumentException("--model DIR: the checkpoint directory to serve is required");
        string? apiKey = builder.Configuration["api-key"];
        int perMinute = int.TryParse(builder.Configuration["translate-per-minute"], out int n) && n > 0 ? n : 60;

        // The translation service, with the limits it checks on every request.
        builder.Services.AddTransduce(o =>
        {
            o.AddModel("en-fr", model);
            o.Serve = o.Serve with { MaxSentences = 16, Timeout = TimeSpan.FromSeconds(10) };
        });
        // The application's own rate limit (ASP.NET Core's), applied below to the translation endpoints only.
        builder.Services.AddRateLimiter(r =>
        {
            r.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            r.AddFixedWindowLimiter("translate", w =>
            {
                w.PermitLimit = perMinute;
                w.Window = TimeSpan.FromMinutes(1);
                w.QueueLimit = 0;
            });
        });
        configure?.Invoke(builder);

        var app = builder.Build();
        // The application's own middleware: a header on every response, then an API-key check on /v1.
        app.Use(async (context, next) =>
        {
            context.Response.Headers[ServedByHeader] = "AspNetHost";
            await next(context);
        });
        if (apiKey is not null)
        {
            byte[] expected = SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));
            app.Use(async (context, next) =>
            {
                if (context.Request.Path.StartsWithSegments("/v1")
                    && !CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(context.Request.Headers[ApiKeyHeader].ToString())), expected))
                {
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    await context.Response.WriteAsync("an API key is needed in " + ApiKeyHeader);
                    return;
                }
                await next(context);
            });
        }
        app.UseRateLimiter();

        app.MapGet("/hello", () => new { ServedBy = "AspNetHost" });   // the application's own endpoints, with its own JSON conventions
        app.MapTranslation("/v1").RequireRateLimiting("translate");
        app.MapTranslationHealth("/healthz");
        app.MapTranslationMetrics("/metrics");
        return app;
    }
}
