using Transduce.IO;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// A JSON object file of a Hugging Face folder (<c>config.json</c>, <c>generation_config.json</c>,
/// <c>tokenizer_config.json</c>) with typed accessors whose errors name the file and the key.
/// </summary>
internal sealed class HfJsonFile
{
    private readonly string path;
    private readonly JsonObject? root;
    private readonly string context = "";

    /// <summary>Reads <paramref name="path"/>; a missing file is an error when <paramref name="required"/>, else an empty object.</summary>
    /// <param name="path">The file.</param>
    /// <param name="required">Whether the file must exist.</param>
    /// <param name="folderKind">What folder a missing required file suggests this is not (for the error).</param>
    public HfJsonFile(string path, bool required, string folderKind = "Hugging Face model")
    {
        this.path = path;
        if (!File.Exists(path))
        {
            if (required) throw new FileNotFoundException($"{path}: not found — is this a {folderKind} folder?", path);
            return;
        }
        try
        {
            // A duplicate key (which Python's json.load silently resolves to the last) is refused at parse time.
            root = JsonNode.Parse(Text.StrictUtf8.ReadText(path), documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject
                ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            string detail = ErrorText.OneLine(e.Message); // the parser quotes the input, line breaks and all
            throw new InvalidDataException($"{path}: not valid JSON ({detail})", e);
        }
    }

    /// <summary>
    /// A view of <paramref name="root"/>, read from <paramref name="path"/>: errors name the file and then
    /// <paramref name="context"/> (e.g. <c>task_specific_params 'summarization'</c>).
    /// </summary>
    private HfJsonFile(string path, JsonObject root, string context)
    {
        this.path = path;
        this.root = root;
        this.context = context;
    }

    /// <summary>
    /// This file's keys with <paramref name="overrides"/>' keys put over them (a copy; this file is unchanged), as
    /// transformers' <c>GenerationConfig.update</c> sets the attributes it is given. Errors of the copy name
    /// <paramref name="path"/> (null: this file) and <paramref name="context"/>.
    /// </summary>
    public HfJsonFile With(JsonObject overrides, string? path, string context)
    {
        var merged = root?.DeepClone().AsObject() ?? [];
        foreach (var (key, value) in overrides) merged[key] = value?.DeepClone();
        return new HfJsonFile(path ?? this.path, merged, context);
    }

    /// <summary>The file.</summary>
    public string Path => path;

    /// <summary>True when the file was there.</summary>
    public bool Exists => root is not null;

    public InvalidDataException Error(string message) => new(context.Length == 0 ? $"{path}: {message}" : $"{path}: {context}: {message}");

    public bool Has(string key) => root?.ContainsKey(key) == true;

    public JsonNode? Node(string key) => root?[key];

    private T? Get<T>(string key, string kind) where T : struct
    {
        var node = Node(key);
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<T>(out var value)) return value;
        if (typeof(T) == typeof(int) && node is JsonValue d && d.TryGetValue<double>(out double x) && x == Math.Floor(x) && Math.Abs(x) <= int.MaxValue)
            return (T)(object)(int)x;
        if (typeof(T) == typeof(double) && node is JsonValue n && n.TryGetValue<long>(out long l)) return (T)(object)(double)l;
        throw Error($"'{key}' must be {kind} (got {node.ToJsonString()})");
    }

    public int? Int(string key) => Get<int>(key, "an integer");

    /// <summary>A size: an integer from 1 to <paramref name="max"/> (a bound far above any real model).</summary>
    public int? Size(string key, int max)
    {
        int? value = Int(key);
        if (value is <= 0) throw Error($"'{key}' must be positive (got {value})");
        if (value > max) throw Error($"'{key}' {value} is larger than any supported model (at most {max})");
        return value;
    }

    public double? Double(string key) => Get<double>(key, "a number");

    public bool? Bool(string key) => Get<bool>(key, "true or false");

    public string? String(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        return node is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Error($"'{key}' must be a string (got {node.ToJsonString()})");
    }

    /// <summary>A token id that may be written as a one-element list (transformers allows lists of eos ids).</summary>
    public int? TokenId(string key)
    {
        var ids = TokenIds(key);
        if (ids is null) return null;
        if (ids.Distinct().Count() == 1) return ids[0];
        throw Error($"'{key}': only a single id is supported (got {Node(key)!.ToJsonString()})");
    }

    /// <summary>An id or a non-empty list of ids (transformers' <c>eos_token_id</c> may be either); null when absent.</summary>
    public int[]? TokenIds(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        if (node is not JsonArray list) return [Int(key)!.Value];
        if (list.Count == 0) throw Error($"'{key}' is an empty list");
        return list.Select(item => item is JsonValue v && v.TryGetValue<int>(out int id)
            ? id
            : throw Error($"'{key}' must be an id or a list of ids (got {node.ToJsonString()})")).ToArray();
    }
}
