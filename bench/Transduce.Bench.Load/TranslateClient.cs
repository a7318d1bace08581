using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Transduce.Bench.Load;

/// <summary>How one <c>POST /v1/translate</c> ended, as the client sees it.</summary>
/// <param name="Kind">
/// <c>ok</c> (200 with one translation per sentence), <c>http_NNN</c> (any other status), <c>bad_body</c> (200 whose
/// body is not a translation), <c>refused</c> (no connection could be made), <c>reset</c> (the connection broke or
/// closed before a whole response arrived), <c>cancelled</c> (the caller's token fired first) or <c>exception:TYPE</c>.
/// </param>
/// <param name="Detail">The exception message or status text, for the report; null when ok.</param>
public readonly record struct RequestOutcome(string Kind, string? Detail = null)
{
    /// <summary>A 200 with a translation.</summary>
    public bool IsOk => Kind == Ok;

    /// <summary>The kind of a successful request.</summary>
    public const string Ok = "ok";

    /// <summary>The kind of a request that never reached the server: the connection was refused.</summary>
    public const string Refused = "refused";

    /// <summary>The kind of a request whose connection broke or closed before the whole response arrived.</summary>
    public const string Reset = "reset";

    /// <summary>The kind of a request the caller cancelled.</summary>
    public const string Cancelled = "cancelled";
}

/// <summary>Sends translation requests and classifies what came back.</summary>
public static class TranslateClient
{
    /// <summary>
    /// An <see cref="HttpClient"/> for <paramref name="baseUrl"/> with up to <paramref name="connections"/> kept-alive
    /// connections and no timeout of its own (callers bound requests with tokens, so a hang is visible as a hang).
    /// </summary>
    public static HttpClient Create(Uri baseUrl, int connections) =>
        new(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = connections,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            BaseAddress = baseUrl,
            Timeout = Timeout.InfiniteTimeSpan,
        };

    /// <summary>The JSON body of a request translating <paramref name="sentences"/> (with <paramref name="beam"/> when given).</summary>
    public static string Body(IReadOnlyList<string> sentences, int? beam = null) =>
        beam is int b ? JsonSerializer.Serialize(new { text = sentences, beam = b }) : JsonSerializer.Serialize(new { text = sentences });

    /// <summary>
    /// Posts <paramref name="sentences"/> (with <paramref name="beam"/> when given) to <c>/v1/translate</c>; never throws
    /// except for programming errors.
    /// </summary>
    public static async Task<RequestOutcome> TranslateAsync(HttpClient http, IReadOnlyList<string> sentences, CancellationToken cancellation, int? beam = null)
    {
        try
        {
            using var content = new StringContent(Body(sentences, beam), Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("v1/translate", content, cancellation);
            string body = await response.Content.ReadAsStringAsync(cancellation);
            if (response.StatusCode != HttpStatusCode.OK)
                return new RequestOutcome($"http_{(int)response.StatusCode}", Shorten(body));
            return IsTranslation(body, sentences.Count) ? new RequestOutcome(RequestOutcome.Ok) : new RequestOutcome("bad_body", Shorten(body));
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            return new RequestOutcome(RequestOutcome.Cancelled);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or SocketException)
        {
            return new RequestOutcome(Classify(e), e.Message);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new RequestOutcome("exception:" + e.GetType().Name, e.Message);
        }
    }

    /// <summary><c>refused</c> when no connection could be made, <c>reset</c> when one broke, else <c>exception:…</c>.</summary>
    public static string Classify(Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is SocketException { SocketErrorCode: SocketError.ConnectionRefused }) return RequestOutcome.Refused;
            if (inner is SocketException { SocketErrorCode: SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown })
                return RequestOutcome.Reset;
        }
        if (e is HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded } || e is IOException
            || e.InnerException is IOException)
            return RequestOutcome.Reset;
        return e is HttpRequestException h ? $"exception:{h.HttpRequestError}" : "exception:" + e.GetType().Name;
    }

    private static bool IsTranslation(string body, int sentences)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (!doc.RootElement.TryGetProperty("translations", out var list) || list.ValueKind != JsonValueKind.Array
                || list.GetArrayLength() != sentences)
                return false;
            foreach (var item in list.EnumerateArray())
                if (!item.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String) return false;
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string Shorten(string text) => text.Length <= 200 ? text : text[..200] + "…";
}
