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
            throw bad(sourceName, $"not valid JSON or truncated ({ex.Message})", ex);
        }
        try
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw bad(sourceName, $"expected a JSON object at top level but found {root.ValueKind}", null);
            if (!root.TryGetProperty("format", out JsonElement format) || format.ValueKind != JsonValueKind.String || format.GetString() != formatTag)
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
}
