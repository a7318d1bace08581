using Transduce.IO;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Transduce.Text;

/// <summary>
/// The common head of our JSON model files (vocabularies, BPE models): a JSON object with a <c>format</c> tag and
/// a <c>version</c>. Parsing checks both and reports problems through the caller's error factory, which names the file.
/// </summary>
internal static class JsonModelFile
{
    /// <summary>Parses <paramref name="json"/> and checks its tag and version; the caller disposes the document.</summary>
    public static JsonDocument Open(string json, string sourceName, string formatTag, int formatVersion,
        Func<string, string, Exception?, InvalidDataException> bad)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw bad(sourceName, $"not valid JSON or truncated ({ErrorText.OneLine(ex.Message)})", ex);
        }
        try
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw bad(sourceName, $"expected a JSON object at top level but found {root.ValueKind}", null);
            if (!root.TryGetProperty("format", out JsonElement format) || format.ValueKind != JsonValueKind.String
                || Text(format, "\"format\"", sourceName, bad) != formatTag)
            {
                string found = format.ValueKind == JsonValueKind.Undefined ? "none" : format.GetRawText();
                throw bad(sourceName, $"wrong format tag: expected \"format\": \"{formatTag}\" but found {found}", null);
            }
            if (!root.TryGetProperty("version", out JsonElement version) || version.ValueKind != JsonValueKind.Number
                || !version.TryGetInt32(out int v) || v != formatVersion)
            {
                string found = version.ValueKind == JsonValueKind.Undefined ? "none" : version.GetRawText();
                throw bad(sourceName, $"unsupported version: expected {formatVersion} but found {found}", null);
            }
            return doc;
        }
        catch
        {
            doc.Dispose();
            throw;
        }
    }

    /// <summary>The array <paramref name="name"/> of <paramref name="root"/>; missing or not an array is an error naming the file.</summary>
    public static JsonElement RequireArray(JsonElement root, string name, string sourceName, Func<string, string, Exception?, InvalidDataException> bad)
    {
        if (!root.TryGetProperty(name, out JsonElement element))
            throw bad(sourceName, $"missing \"{name}\" array", null);
        if (element.ValueKind != JsonValueKind.Array)
            throw bad(sourceName, $"\"{name}\" must be an array but is {element.ValueKind}", null);
        return element;
    }

    /// <summary>The string <paramref name="name"/> of <paramref name="root"/>; anything else is an error naming the file.</summary>
    public static string RequireString(JsonElement root, string name, string sourceName, Func<string, string, Exception?, InvalidDataException> bad)
    {
        if (!root.TryGetProperty(name, out JsonElement element) || element.ValueKind != JsonValueKind.String)
        {
            string found = element.ValueKind == JsonValueKind.Undefined ? "nothing" : element.GetRawText();
            throw bad(sourceName, $"\"{name}\" must be a string but is {found}", null);
        }
        return Text(element, $"\"{name}\"", sourceName, bad);
    }

    /// <summary>
    /// The text of the JSON string <paramref name="element"/>; one that escapes a lone UTF-16 surrogate (<c>\udc00</c>, which
    /// no text holds) is an error naming the file and <paramref name="where"/>.
    /// </summary>
    public static string Text(JsonElement element, string where, string sourceName, Func<string, string, Exception?, InvalidDataException> bad)
    {
        try
        {
            return element.GetString()!;
        }
        catch (InvalidOperationException e)
        {
            throw bad(sourceName, $"{where} is not valid text (it escapes a lone UTF-16 surrogate)", e);
        }
    }

    /// <summary>
    /// Writes a model file: an indented JSON object (non-ASCII characters as they are) with the <c>format</c> tag and
    /// <c>version</c> first, then whatever <paramref name="body"/> writes.
    /// </summary>
    public static string Write(string formatTag, int formatVersion, Action<Utf8JsonWriter> body)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("format", formatTag);
            writer.WriteNumber("version", formatVersion);
            body(writer);
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length);
    }

    /// <summary>Writes <paramref name="values"/> as the string array <paramref name="name"/>.</summary>
    public static void WriteStrings(Utf8JsonWriter writer, string name, IEnumerable<string> values)
    {
        writer.WriteStartArray(name);
        foreach (string value in values) writer.WriteStringValue(value);
        writer.WriteEndArray();
    }
}
