using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Transduce.Serving;

/// <summary>
/// What a translation request adds to its log line: model, sentences, tokens, search settings, estimated cost, the
/// error reason and (only with <see cref="ServeOptions.LogText"/>) the text. Filled in by the handler, written once
/// by the logging middleware when the response is done.
/// </summary>
internal sealed class RequestLogEntry
{
    private static readonly object s_key = new();

    /// <summary>The model that served the request.</summary>
    public string? Model { get; set; }

    /// <summary>Sentences in the request.</summary>
    public int Sentences { get; set; }

    /// <summary>Source tokens (as the model's tokenizer splits them).</summary>
    public long SourceTokens { get; set; }

    /// <summary>Tokens of the best translations.</summary>
    public long TargetTokens { get; set; }

    /// <summary>Beam size.</summary>
    public int Beam { get; set; }

    /// <summary>Translations per sentence.</summary>
    public int NBest { get; set; }

    /// <summary>Estimated cost (<see cref="TranslationJob.Cost"/>).</summary>
    public long Cost { get; set; }

    /// <summary>Why the request failed (the <c>transduce_translate_errors_total</c> reason), null when it did not.</summary>
    public string? Error { get; set; }

    /// <summary>The source sentences (kept only when text logging is on).</summary>
    public IReadOnlyList<string>? Text { get; set; }

    /// <summary>The best translations (kept only when text logging is on).</summary>
    public IReadOnlyList<string>? Translations { get; set; }

    /// <summary>The entry of <paramref name="context"/>'s request, created on first use.</summary>
    public static RequestLogEntry Of(HttpContext context)
    {
        if (context.Items.TryGetValue(s_key, out var value) && value is RequestLogEntry entry) return entry;
        entry = new RequestLogEntry();
        context.Items[s_key] = entry;
        return entry;
    }

    /// <summary>The entry of <paramref name="context"/>'s request if the handler made one.</summary>
    public static RequestLogEntry? Find(HttpContext context) =>
        context.Items.TryGetValue(s_key, out var value) ? value as RequestLogEntry : null;
}

/// <summary>The structured request log (category <c>Transduce.Serving.Requests</c>): one line per request.</summary>
internal static partial class RequestLog
{
    /// <summary>The logger category.</summary>
    public const string Category = "Transduce.Serving.Requests";

    /// <summary>Writes the line of a finished request.</summary>
    public static void Write(ILogger logger, HttpContext context, int status, double milliseconds)
    {
        var request = context.Request;
        var entry = RequestLogEntry.Find(context);
        // Everything that comes from the request is written with its control characters escaped: a percent-encoded CR or
        // ESC in a path must not start a forged line or recolour a terminal reading the text log.
        string path = IO.ErrorText.OneLine(request.Path.Value ?? "", MaxLogged), method = IO.ErrorText.OneLine(request.Method, 32);
        if (entry is null)
        {
            Request(logger, method, path, status, Math.Round(milliseconds, 2));
            return;
        }
        if (entry.Text is null)
            Translation(logger, method, path, status, Math.Round(milliseconds, 2), Safe(entry.Model), entry.Sentences,
                entry.SourceTokens, entry.TargetTokens, entry.Beam, entry.NBest, entry.Cost, Safe(entry.Error));
        else
            TranslationWithText(logger, method, path, status, Math.Round(milliseconds, 2), Safe(entry.Model), entry.Sentences,
                entry.SourceTokens, entry.TargetTokens, entry.Beam, entry.NBest, entry.Cost, Safe(entry.Error),
                JsonSerializer.Serialize(entry.Text), entry.Translations is null ? null : JsonSerializer.Serialize(entry.Translations));
    }

    private const int MaxLogged = 2048;

    private static string? Safe(string? text) => text is null ? null : IO.ErrorText.OneLine(text, MaxLogged);

    [LoggerMessage(EventId = 1, EventName = "Request", Level = LogLevel.Information,
        Message = "{Method} {Path} {Status} {DurationMs} ms")]
    private static partial void Request(ILogger logger, string method, string path, int status, double durationMs);

    [LoggerMessage(EventId = 2, EventName = "Translation", Level = LogLevel.Information,
        Message = "{Method} {Path} {Status} {DurationMs} ms model={Model} sentences={Sentences} source_tokens={SourceTokens} target_tokens={TargetTokens} beam={Beam} n_best={NBest} cost={Cost} error={Error}")]
    private static partial void Translation(ILogger logger, string method, string path, int status, double durationMs, string? model,
        int sentences, long sourceTokens, long targetTokens, int beam, int nBest, long cost, string? error);

    [LoggerMessage(EventId = 3, EventName = "TranslationWithText", Level = LogLevel.Information,
        Message = "{Method} {Path} {Status} {DurationMs} ms model={Model} sentences={Sentences} source_tokens={SourceTokens} target_tokens={TargetTokens} beam={Beam} n_best={NBest} cost={Cost} error={Error} text={Text} translations={Translations}")]
    private static partial void TranslationWithText(ILogger logger, string method, string path, int status, double durationMs, string? model,
        int sentences, long sourceTokens, long targetTokens, int beam, int nBest, long cost, string? error, string text, string? translations);
}
