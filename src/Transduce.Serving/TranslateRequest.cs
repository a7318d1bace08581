using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Transduce.IO;

namespace Transduce.Serving;

/// <summary>A validated <c>POST /v1/translate</c> body.</summary>
/// <param name="Text">Sentences to translate.</param>
/// <param name="Beam">Beam size; null when the request names none (the model's default applies).</param>
/// <param name="NBest">Translations wanted per sentence.</param>
/// <param name="Attention">Whether attention weights were asked for.</param>
/// <param name="Model">The model named by the request; null for the default (the first served).</param>
/// <param name="SourceLang">A multilingual model's source language, or null.</param>
/// <param name="TargetLang">A multilingual model's target language, or null.</param>
/// <param name="Task">One of the model's tasks (a T5 folder's <c>task_specific_params</c>), or null.</param>
internal sealed record TranslateRequest(IReadOnlyList<string> Text, int? Beam, int NBest, bool Attention, string? Model = null,
    string? SourceLang = null, string? TargetLang = null, string? Task = null);

/// <summary>
/// An error answered as <c>application/problem+json</c>: HTTP status, a message, the offending field and, when a
/// configured limit was hit, its name, its value and what the request asked for.
/// </summary>
/// <param name="Status">HTTP status code.</param>
/// <param name="Title">Short summary.</param>
/// <param name="Detail">What exactly is wrong.</param>
/// <param name="Field">The JSON field (or header) at fault, e.g. <c>text[2]</c>; null when none applies.</param>
/// <param name="Limit">The limit hit, as named in <c>/metrics</c> and the docs (e.g. <c>max_request_cost</c>); null when none.</param>
/// <param name="LimitValue">The limit's configured value.</param>
/// <param name="Requested">What the request needed of it (e.g. its estimated cost).</param>
internal sealed record RequestProblem(int Status, string Title, string Detail, string? Field, string? Limit = null,
    long? LimitValue = null, long? Requested = null);

/// <summary>Reads and validates <c>POST /v1/translate</c> bodies against <see cref="ServeOptions"/>.</summary>
internal static class TranslateRequestReader
{
    private static readonly HashSet<string> s_fields = ["text", "beam", "n_best", "attention", "model", "source_lang", "target_lang", "task"];

    /// <summary>Longest model name accepted in a request.</summary>
    public const int MaxModelNameLength = 64;

    /// <summary>Reads the body of <paramref name="request"/>; returns the request or the first problem found.</summary>
    public static async Task<(TranslateRequest? Request, RequestProblem? Problem)> ReadAsync(HttpRequest request, ServeOptions options, CancellationToken cancellation)
    {
        if (!IsJson(request.ContentType))
            return (null, new RequestProblem(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"the body must be JSON (Content-Type: application/json), not '{request.ContentType ?? "none"}'", "Content-Type"));
        if (request.ContentLength > options.MaxBodyBytes)
            return (null, TooLarge(options));

        byte[] body;
        try
        {
            body = await ReadLimitedAsync(request.Body, options.MaxBodyBytes, cancellation);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, TooLarge(options));
        }
        if (body.Length > options.MaxBodyBytes) return (null, TooLarge(options));

        try
        {
            using var doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
            return Validate(doc.RootElement, options);
        }
        catch (JsonException e)
        {
            return (null, Invalid($"the body is not valid JSON: {ErrorText.OneLine(e.Message)}", e.Path is { Length: > 1 } p ? p.TrimStart('$', '.') : null));
        }
    }

    /// <summary>
    /// The string value of <paramref name="element"/>, or null when it holds an escaped lone UTF-16 surrogate (such as
    /// <c>"\udc00"</c>), which is valid JSON syntax but no text.
    /// </summary>
    private static string? StringOrNull(JsonElement element)
    {
        try
        {
            return element.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    private static RequestProblem LoneSurrogate(string field) =>
        Invalid($"'{field}' holds a lone UTF-16 surrogate escape (such as \\udc00), which is not text", field);

    /// <summary>Validates a parsed body.</summary>
    public static (TranslateRequest? Request, RequestProblem? Problem) Validate(JsonElement root, ServeOptions options)
    {
        if (root.ValueKind != JsonValueKind.Object)
            return (null, Invalid($"the body must be a JSON object, not {Kind(root)}", null));
        try
        {
            foreach (var property in root.EnumerateObject())
                if (!s_fields.Contains(property.Name))
                    return (null, Invalid($"unknown field '{ErrorText.OneLine(property.Name, 64)}' (known: {string.Join(", ", s_fields)})", property.Name));
        }
        catch (InvalidOperationException)
        {
            return (null, Invalid("a field name holds a lone UTF-16 surrogate escape (such as \\udc00), which is not text", null));
        }

        if (!root.TryGetProperty("text", out var text))
            return (null, Invalid("'text' is required: an array of sentences", "text"));
        if (text.ValueKind != JsonValueKind.Array)
            return (null, Invalid($"'text' must be an array of strings, not {Kind(text)}", "text"));
        int count = text.GetArrayLength();
        if (count == 0)
            return (null, Invalid("'text' must hold at least one sentence", "text"));
        if (count > options.MaxSentences)
            return (null, new RequestProblem(StatusCodes.Status413PayloadTooLarge, "Too many sentences",
                $"'text' holds {count} sentences; the limit is {options.MaxSentences} per request", "text", "max_sentences", options.MaxSentences, count));
        var sentences = new List<string>(count);
        int i = 0;
        foreach (var item in text.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                return (null, Invalid($"'text[{i}]' must be a string, not {Kind(item)}", $"text[{i}]"));
            if (StringOrNull(item) is not { } s) return (null, LoneSurrogate($"text[{i}]"));
            if (s.Length > options.MaxChars)
                return (null, new RequestProblem(StatusCodes.Status413PayloadTooLarge, "Sentence too long",
                    $"'text[{i}]' has {s.Length} characters; the limit is {options.MaxChars}", $"text[{i}]", "max_chars", options.MaxChars, s.Length));
            sentences.Add(s);
            i++;
        }

        int? beam = null;
        if (root.TryGetProperty("beam", out _))
        {
            var (b, beamProblem) = Integer(root, "beam", 0, options.MaxBeam);
            if (beamProblem is not null) return (null, beamProblem);
            beam = b;
        }
        var (nBest, nBestProblem) = Integer(root, "n_best", 1, options.MaxBeam);
        if (nBestProblem is not null) return (null, nBestProblem);

        bool attention = false;
        if (root.TryGetProperty("attention", out var att))
        {
            if (att.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                return (null, Invalid($"'attention' must be true or false, not {Kind(att)}", "attention"));
            attention = att.GetBoolean();
        }

        string? model = null;
        if (root.TryGetProperty("model", out var name))
        {
            if (name.ValueKind != JsonValueKind.String)
                return (null, Invalid($"'model' must be a string (a name from /v1/models), not {Kind(name)}", "model"));
            model = StringOrNull(name);
            if (model is null) return (null, LoneSurrogate("model"));
            if (model.Length == 0 || model.Length > MaxModelNameLength)
                return (null, Invalid($"'model' must be a name of 1 to {MaxModelNameLength} characters (see /v1/models)", "model"));
        }
        var names = new string?[3];
        foreach (var (field, slot) in new[] { ("source_lang", 0), ("target_lang", 1), ("task", 2) })
        {
            if (!root.TryGetProperty(field, out var code)) continue;
            string what = slot == 2 ? "a task of the model" : "a language of the model";
            if (code.ValueKind != JsonValueKind.String)
                return (null, Invalid($"'{field}' must be a string ({what}, see /v1/models), not {Kind(code)}", field));
            names[slot] = StringOrNull(code);
            if (names[slot] is null) return (null, LoneSurrogate(field));
            if (names[slot]!.Length is 0 or > MaxModelNameLength)
                return (null, Invalid($"'{field}' must be {(slot == 2 ? "a task name" : "a language code")} of 1 to {MaxModelNameLength} characters (see /v1/models)", field));
        }
        return (new TranslateRequest(sentences, beam, nBest, attention, model, names[0], names[1], names[2]), null);
    }

    private static (int, RequestProblem?) Integer(JsonElement root, string name, int fallback, int max)
    {
        if (!root.TryGetProperty(name, out var value)) return (fallback, null);
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int n))
            return (0, Invalid($"'{name}' must be an integer between 1 and {max}, not {Kind(value)}", name));
        if (n < 1) return (0, Invalid($"'{name}' must be between 1 and {max} (got {n})", name));
        if (n > max) return (0, Invalid($"'{name}' must be between 1 and {max} (got {n})", name) with { Limit = "max_beam", LimitValue = max, Requested = n });
        return (n, null);
    }

    private static bool IsJson(string? contentType)
    {
        if (contentType is null) return false;
        string media = contentType.Split(';')[0].Trim();
        return media.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || media.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }

    private static async Task<byte[]> ReadLimitedAsync(Stream body, long limit, CancellationToken cancellation)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await body.ReadAsync(chunk, cancellation)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > limit) break;
        }
        return buffer.ToArray();
    }

    private static RequestProblem TooLarge(ServeOptions options) =>
        new(StatusCodes.Status413PayloadTooLarge, "Body too large", $"the request body exceeds {options.MaxBodyBytes} bytes", "body",
            "max_body_bytes", options.MaxBodyBytes);

    private static RequestProblem Invalid(string detail, string? field) =>
        new(StatusCodes.Status400BadRequest, "Invalid request", detail, field);

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };
}
