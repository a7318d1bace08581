using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// A JSON object file of a Hugging Face folder (<c>config.json</c>, <c>generation_config.json</c>,
/// <c>tokenizer_config.json</c>, a shard index) with typed accessors whose errors name the file and the key.
/// </summary>
internal sealed class JsonFile
{
    private readonly string path;
    private readonly JsonObject? root;

    /// <summary>Reads <paramref name="path"/>; a missing file throws when <paramref name="required"/>, else reads as absent (<see cref="Exists"/> false).</summary>
    public JsonFile(string path, bool required)
    {
        this.path = path;
        if (!File.Exists(path))
        {
            if (required) throw new FileNotFoundException($"{path}: not found — is this a Hugging Face model folder?", path);
            return;
        }
        try
        {
            // A duplicate key (which transformers' json.load would silently resolve to the last) is refused at parse time.
            root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject
                ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (Exception e) when (e is JsonException or ArgumentException or DecoderFallbackException)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>The file.</summary>
    public string Path => path;

    /// <summary>True when the file was there.</summary>
    public bool Exists => root is not null;

    /// <summary>An error naming the file: "<c>path: message</c>".</summary>
    public InvalidDataException Error(string message) => new($"{path}: {message}");

    /// <summary>True when the file has <paramref name="key"/> (even with a null value).</summary>
    public bool Has(string key) => root?.ContainsKey(key) == true;

    /// <summary>The value of <paramref name="key"/>, or null.</summary>
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

    /// <summary>An integer (a whole number written as 2.0 is accepted), or null when absent.</summary>
    public int? Int(string key) => Get<int>(key, "an integer");

    /// <summary>A size: an integer from 1 to <paramref name="max"/> (a bound far above any real model).</summary>
    public int? Size(string key, int max)
    {
        int? value = Int(key);
        if (value is <= 0) throw Error($"'{key}' must be positive (got {value})");
        if (value > max) throw Error($"'{key}' {value} is larger than any supported model (at most {max})");
        return value;
    }

    /// <summary>A number, or null when absent.</summary>
    public double? Double(string key) => Get<double>(key, "a number");

    /// <summary>true or false, or null when absent.</summary>
    public bool? Bool(string key) => Get<bool>(key, "true or false");

    /// <summary>A string, or null when absent.</summary>
    public string? String(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        return node is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Error($"'{key}' must be a string (got {node.ToJsonString()})");
    }

    /// <summary>A token id that may be written as a one-element list (transformers allows lists of eos ids).</summary>
    public int? TokenId(string key)
    {
        if (Node(key) is JsonArray list)
        {
            if (list.Count == 1 && list[0] is JsonValue v && v.TryGetValue<int>(out int id)) return id;
            throw Error($"'{key}': only a single id is supported (got {list.ToJsonString()})");
        }
        return Int(key);
    }
}
