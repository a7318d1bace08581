using Microsoft.OpenApi;

namespace Transduce.Serving;

/// <summary>What the generated OpenAPI document says about the service as a whole (ASP.NET Core describes the endpoints).</summary>
internal static class OpenApiDescription
{
    public static void Describe(OpenApiDocument document, ServeOptions options)
    {
        document.Info = new OpenApiInfo
        {
            Title = "Transduce translation service",
            Version = "v1",
            Description = "Translates text with the sequence-to-sequence models this process serves (`transduce serve`). " +
                "Errors are `application/problem+json` (RFC 9457) with the request `field` at fault and, when a configured limit refused " +
                "the request, the `limit` by name, its `limit_value` and what was `requested`. Requests are admitted by estimated cost: " +
                $"at most {options.MaxRequestCost} per request (--max-request-cost) and {options.MaxInflightCost} in flight over every model " +
                "(--max-inflight-cost).",
        };
        // The Prometheus exporter's endpoint is not a route handler, which ASP.NET Core describes: describe it here.
        document.Paths ??= new OpenApiPaths();
        if (!document.Paths.ContainsKey("/metrics"))
            document.Paths["/metrics"] = new OpenApiPathItem
            {
                Operations = new Dictionary<HttpMethod, OpenApiOperation>
                {
                    [HttpMethod.Get] = new()
                    {
                        OperationId = "Metrics",
                        Summary = "Prometheus metrics: the Transduce meter (requests, errors, queues, decoder batches, in-flight cost), process and .NET runtime",
                        Tags = new HashSet<OpenApiTagReference> { new("operations", document) },
                        Responses = new OpenApiResponses
                        {
                            ["200"] = new OpenApiResponse
                            {
                                Description = "OK",
                                Content = new Dictionary<string, OpenApiMediaType> { ["text/plain"] = new() { Schema = new OpenApiSchema { Type = JsonSchemaType.String } } },
                            },
                        },
                    },
                },
            };
        if (options.ApiKey is null) return;
        const string scheme = "bearer";
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[scheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http, Scheme = "bearer",
            Description = "The API key given to the service with --api-key-file, as `Authorization: Bearer <key>`.",
        };
        foreach (var (path, item) in document.Paths)
        {
            if (!path.StartsWith("/v1/", StringComparison.Ordinal) && path != "/metrics") continue;
            if (item.Operations is null) continue;
            foreach (var operation in item.Operations.Values)
            {
                operation.Security ??= [];
                operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(scheme, document)] = [] });
            }
        }
    }
}
