using System.Text.Json.Nodes;
using Transduce.Text;

namespace Transduce.Checkpoints;

/// <summary>
/// The languages of a multilingual model (NLLB-200, M2M100): each code's token in the source and the target vocabulary.
/// A source sentence starts with its language's token, decoding forces the target language's token first, and <see cref="TargetSpecials"/> (codes, <c>&lt;mask&gt;</c>)
/// are left out of the output text as transformers' <c>skip_special_tokens</c> leaves them out.
/// </summary>
/// <param name="Source">Code → source vocabulary id.</param>
/// <param name="Target">Code → target vocabulary id.</param>
/// <param name="TargetSpecials">Target ids that are never text.</param>
/// <param name="DefaultSource">The source language when a call names none (the folder's <c>src_lang</c>), or null to require one.</param>
/// <param name="DefaultTarget">The target language when a call names none (the folder's <c>tgt_lang</c>), or null to require one.</param>
internal sealed record LanguageTable(
    IReadOnlyDictionary<string, int> Source, IReadOnlyDictionary<string, int> Target, IReadOnlySet<int> TargetSpecials,
    string? DefaultSource, string? DefaultTarget)
{
    /// <summary>The codes, sorted.</summary>
    public IReadOnlyList<string> Codes => [.. Target.Keys.Order(StringComparer.Ordinal)];

    /// <summary>The source id of <paramref name="code"/> (or the default); unknown or missing throws <see cref="ArgumentException"/> naming close codes.</summary>
    public int SourceId(string? code) => Id(Source, code ?? DefaultSource, "source");

    /// <summary>The target id of <paramref name="code"/> (or the default); unknown or missing throws <see cref="ArgumentException"/> naming close codes.</summary>
    public int TargetId(string? code) => Id(Target, code ?? DefaultTarget, "target");

    /// <summary>The table as <c>config.json</c> stores it (<c>languages</c>): code → id per side, the special ids, the defaults.</summary>
    public JsonObject ToJson() => new()
    {
        ["source"] = new JsonObject(Source.OrderBy(kv => kv.Value).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
        ["target"] = new JsonObject(Target.OrderBy(kv => kv.Value).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
        ["target_specials"] = new JsonArray([.. TargetSpecials.Order().Select(id => (JsonNode?)id)]),
        ["default_source"] = DefaultSource,
        ["default_target"] = DefaultTarget,
    };

    /// <summary>
    /// Reads <see cref="ToJson"/>'s form; an id outside its vocabulary (<paramref name="sourceSize"/>,
    /// <paramref name="targetSize"/>) or a malformed entry throws <see cref="InvalidDataException"/> naming <paramref name="path"/>.
    /// </summary>
    public static LanguageTable FromJson(JsonObject json, int sourceSize, int targetSize, string path)
    {
        Dictionary<string, int> Codes(string side, int size)
        {
            if (json[side] is not JsonObject codes) throw new InvalidDataException($"{path}: 'languages.{side}' must be an object of code → id");
            var result = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (code, node) in codes)
            {
                if (node is not JsonValue v || !v.TryGetValue<int>(out int id) || id < 0 || id >= size)
                    throw new InvalidDataException($"{path}: 'languages.{side}.{code}' must be an id below the vocabulary size {size}");
                result[code] = id;
            }
            return result;
        }
        string? Text(string key) => json[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => throw new InvalidDataException($"{path}: 'languages.{key}' must be a string or null"),
        };
        var source = Codes("source", sourceSize);
        var target = Codes("target", targetSize);
        var specials = new HashSet<int>();
        if (json["target_specials"] is JsonArray list)
            foreach (var item in list)
                specials.Add(item is JsonValue v && v.TryGetValue<int>(out int id) && id >= 0 && id < targetSize
                    ? id : throw new InvalidDataException($"{path}: 'languages.target_specials' must hold ids below {targetSize}"));
        return new LanguageTable(source, target, specials, Text("default_source"), Text("default_target"));
    }

    private static int Id(IReadOnlyDictionary<string, int> ids, string? code, string side)
    {
        if (code is null) throw new ArgumentException($"this model is multilingual: name the {side} language (e.g. {string.Join(", ", ids.Keys.Order(StringComparer.Ordinal).Take(3))})");
        return ids.TryGetValue(code, out int id) ? id : throw new ArgumentException($"{side} language: {LanguageCodes.Unknown(code, ids.Keys)}");
    }
}
