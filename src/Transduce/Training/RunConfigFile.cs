using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Transduce.IO;
using Transduce.Models;

namespace Transduce.Training;

/// <summary>
/// Reading, layering, checking and writing <see cref="RunConfig"/>s. Every layer (a preset, a file, flags) is a JSON
/// tree; its keys are checked against the configuration types (an unknown key or a mistyped value is an error that
/// names the source, the line when known and the dotted key), then the layers are merged and deserialised once.
/// </summary>
internal static partial class RunConfigFile
{
    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower, allowIntegerValues: false) },
        TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private const string PresetResourcePrefix = "Transduce.Presets.";

    private static readonly Lazy<Dictionary<string, RunConfig>> Presets = new(LoadPresets);

    public static IReadOnlyList<string> PresetNames => [.. Presets.Value.Keys];

    public static RunConfig Preset(string name) => Presets.Value.TryGetValue(name, out var preset)
        ? preset
        : throw new ArgumentException($"unknown preset '{ErrorText.OneLine(name, 80)}' (known: {string.Join(", ", Presets.Value.Keys)})");

    private static Dictionary<string, RunConfig> LoadPresets()
    {
        var assembly = typeof(RunConfigFile).Assembly;
        var files = new Dictionary<string, (JsonObject Node, Dictionary<string, int> Lines)>(StringComparer.Ordinal);
        foreach (string resource in assembly.GetManifestResourceNames().Where(r => r.StartsWith(PresetResourcePrefix, StringComparison.Ordinal)))
        {
            string name = Path.GetFileNameWithoutExtension(resource[PresetResourcePrefix.Length..]);
            using var reader = new StreamReader(assembly.GetManifestResourceStream(resource)!);
            var (node, lines) = ReadYaml(reader.ReadToEnd(), $"preset {name}");
            files[name] = ((JsonObject?)node ?? [], lines);
        }
        var presets = new Dictionary<string, RunConfig>(StringComparer.Ordinal);
        RunConfig Resolve(string name, int depth)
        {
            if (presets.TryGetValue(name, out var done)) return done;
            var (node, lines) = files[name];
            // A preset may build on another (the d2l presets share their data settings).
            var basis = node["preset"] is JsonValue v && v.TryGetValue<string>(out var on) && files.ContainsKey(on) && depth < 8
                ? Resolve(on, depth + 1) : new RunConfig();
            return presets[name] = Compose(basis, node, lines, $"preset {name}") with { Preset = name };
        }
        foreach (string name in files.Keys.Order(StringComparer.Ordinal)) Resolve(name, 0);
        return presets.OrderBy(p => p.Key == "d2l-gru" ? 0 : p.Key == "d2l-bahdanau" ? 1 : p.Key == "d2l-transformer" ? 2 : 3)
            .ThenBy(p => p.Key, StringComparer.Ordinal).ToDictionary(StringComparer.Ordinal);
    }

    /// <summary>The largest configuration file read (a written-out configuration is a few kilobytes).</summary>
    internal const int MaxFileBytes = 1 << 20;

    private static void CheckSize(long length, string source)
    {
        if (length > MaxFileBytes)
            throw new InvalidDataException($"{source}: {length:N0} bytes; a run configuration is at most {MaxFileBytes:N0}");
    }

    /// <summary>A configuration file's text, its size checked before it is read.</summary>
    private static string ReadBounded(string path)
    {
        CheckSize(new FileInfo(path).Length, path);
        return Text.StrictUtf8.ReadText(path);
    }

    public static RunConfig Load(string path, RunConfig? over)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: configuration file not found", path);
        string text = ReadBounded(path);
        if (Path.GetExtension(path).Equals(".json", StringComparison.OrdinalIgnoreCase))
        {
            JsonNode? node;
            try
            {
                node = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}:{(e.LineNumber ?? 0) + 1}: not valid JSON ({ErrorText.OneLine(e.Message.Split(" Path:")[0])})", e);
            }
            return FromLayer(node, [], path, over);
        }
        return Parse(text, path, over);
    }

    public static RunConfig Parse(string text, string sourceName, RunConfig? over)
    {
        var (node, lines) = ReadYaml(text, sourceName);
        return FromLayer(node, lines, sourceName, over);
    }

    /// <summary>A file's tree over its base: the preset it names, else <paramref name="over"/>, else the defaults.</summary>
    private static RunConfig FromLayer(JsonNode? node, Dictionary<string, int> lines, string source, RunConfig? over)
    {
        if (node is not null and not JsonObject)
            throw new InvalidDataException($"{source}: a configuration is a mapping of sections (model, text, training, validation, data), not a {Kind(node)}");
        var layer = (JsonObject?)node ?? [];
        RunConfig basis = over ?? new RunConfig();
        if (layer["preset"] is JsonValue pv && pv.TryGetValue<string>(out var presetName))
        {
            try
            {
                basis = Preset(presetName);
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"{Where(source, lines, "preset")}: {e.Message}");
            }
        }
        return Compose(basis, layer, lines, source);
    }

    public static RunConfig With(RunConfig basis, IEnumerable<KeyValuePair<string, object?>> values, string source)
    {
        var layer = new JsonObject();
        foreach (var (key, value) in values)
        {
            var parts = key.Split('.');
            JsonObject at = layer;
            foreach (string part in parts[..^1])
            {
                if (at[part] is not JsonObject next) at[part] = next = [];
                at = next;
            }
            at[parts[^1]] = value switch
            {
                null => null,
                JsonNode n => n.DeepClone(),
                TimeSpan t => JsonSerializer.SerializeToNode<TimeSpan?>(t, new JsonSerializerOptions { Converters = { new DurationConverter() } }),
                Enum e => JsonValue.Create(EnumName(e.GetType(), e.ToString())),
                _ => JsonSerializer.SerializeToNode(value, value.GetType()),
            };
        }
        try
        {
            return Compose(basis, layer, [], source);
        }
        catch (InvalidDataException e)
        {
            throw new ArgumentException(e.Message, e);
        }
    }

    /// <summary>Checks <paramref name="layer"/>'s keys and values, merges it over <paramref name="basis"/> and deserialises.</summary>
    private static RunConfig Compose(RunConfig basis, JsonObject layer, Dictionary<string, int> lines, string source)
    {
        Check(layer, typeof(RunConfig), "", lines, source);
        var merged = JsonSerializer.SerializeToNode(basis, Json)!.AsObject();
        Merge(merged, layer);
        // model.extra holds an architecture's own settings as text: a number or boolean in a file is read as its text.
        if (merged["model"]?["extra"] is JsonObject extra)
            foreach (var (key, value) in extra.ToList())
                if (value is JsonValue v && v.GetValueKind() != JsonValueKind.String) extra[key] = v.ToJsonString();
        try
        {
            return merged.Deserialize<RunConfig>(Json) ?? new RunConfig();
        }
        catch (JsonException e)
        {
            string key = (e.Path ?? "$").TrimStart('$').TrimStart('.');
            throw new InvalidDataException($"{Where(source, lines, key)}: '{key}': {e.Message.Split(" Path:")[0]}", e);
        }
    }

    private static void Merge(JsonObject into, JsonObject over)
    {
        foreach (var (key, value) in over.ToList())
        {
            if (value is JsonObject o && into[key] is JsonObject existing) Merge(existing, o);
            else into[key] = value?.DeepClone();
        }
    }

    // ---- checking keys and value types against the configuration records ----

    private static void Check(JsonNode? node, Type type, string path, Dictionary<string, int> lines, string source)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        var info = Json.GetTypeInfo(type);
        if (node is null) return;
        switch (info.Kind)
        {
            case JsonTypeInfoKind.Object:
                if (node is not JsonObject obj) throw Mistyped(node, "a mapping of keys", path, lines, source);
                foreach (var (key, value) in obj)
                {
                    string at = path.Length == 0 ? key : $"{path}.{key}";
                    var property = info.Properties.FirstOrDefault(p => p.Name == key && p.Set is not null);
                    if (property is null)
                    {
                        var known = info.Properties.Where(p => p.Set is not null).Select(p => p.Name).ToList();
                        string hint = ErrorText.Closest(key, known, maxDistance: 2) is { } near ? $"did you mean '{near}'? " : "";
                        throw new InvalidDataException(
                            $"{Where(source, lines, at)}: unknown key '{Clip(at)}' ({hint}{(path.Length == 0 ? "sections" : path)}: {string.Join(", ", known)})");
                    }
                    Check(value, property.PropertyType, at, lines, source);
                }
                return;
            case JsonTypeInfoKind.Dictionary:
                // A mapping of free keys (model.extra) to single values: numbers, booleans or text.
                if (node is not JsonObject entries) throw Mistyped(node, "a mapping of keys", path, lines, source);
                foreach (var (key, value) in entries)
                {
                    string at = $"{path}.{key}";
                    if (value is null) throw new InvalidDataException($"{Where(source, lines, at)}: '{at}' must be a number, a boolean or text (got null)");
                    if (value is not JsonValue entry || entry.GetValueKind() is not (JsonValueKind.String or JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False))
                        throw Mistyped(value, "a number, a boolean or text", at, lines, source);
                }
                return;
            case JsonTypeInfoKind.Enumerable:
                if (node is not JsonArray array) throw Mistyped(node, "a list", path, lines, source);
                for (int i = 0; i < array.Count; i++) Check(array[i], info.ElementType!, $"{path}[{i}]", lines, source);
                return;
        }
        if (node is not JsonValue v) throw Mistyped(node, Expected(type), path, lines, source);
        var kind = v.GetValueKind();
        bool ok = type == typeof(string) ? kind == JsonValueKind.String
            : type == typeof(bool) ? kind is JsonValueKind.True or JsonValueKind.False
            : type == typeof(int) ? kind == JsonValueKind.Number && IsWhole(v)
            : type == typeof(double) ? kind == JsonValueKind.Number
            : type == typeof(TimeSpan) ? kind == JsonValueKind.String && Duration(v, path, lines, source) is not null
            : type.IsEnum ? kind == JsonValueKind.String && EnumNames(type).Contains(v.GetValue<string>())
            : true;
        if (!ok) throw Mistyped(node, Expected(type), path, lines, source);
    }

    private static TimeSpan? Duration(JsonValue v, string path, Dictionary<string, int> lines, string source)
    {
        try
        {
            return DurationConverter.Parse(v.GetValue<string>());
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{Where(source, lines, path)}: '{path}' {e.Message} (got {Shown(v)})", e);
        }
    }

    private static bool IsWhole(JsonValue v) =>
        double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue;

    private static IReadOnlyList<string> EnumNames(Type type) => [.. Enum.GetNames(type).Select(n => EnumName(type, n))];

    /// <summary>An enum member as the files spell it: its <see cref="JsonStringEnumMemberNameAttribute"/> if it has one (bfloat16), else kebab-case.</summary>
    private static string EnumName(Type type, string member) =>
        type.GetField(member)?.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name ?? JsonNamingPolicy.KebabCaseLower.ConvertName(member);

    private static string Expected(Type type) =>
        type == typeof(string) ? "text"
        : type == typeof(bool) ? "true or false"
        : type == typeof(int) ? "a whole number"
        : type == typeof(double) ? "a number"
        : type == typeof(TimeSpan) ? "a duration such as 90m, 1.5h, 45s or 01:30:00"
        : type.IsEnum ? $"one of: {string.Join(", ", EnumNames(type))}"
        : type.Name;

    private static InvalidDataException Mistyped(JsonNode node, string expected, string path, Dictionary<string, int> lines, string source) =>
        new($"{Where(source, lines, path)}: '{path}' must be {expected} (got {Shown(node)})");

    private static string Shown(JsonNode node) => node switch
    {
        JsonObject => "a mapping",
        JsonArray => "a list",
        _ => Clip(node.ToJsonString(Json)),
    };

    /// <summary>At most 80 characters of text from a file, on one line (a key may hold a line break), for an error line.</summary>
    private static string Clip(string text) => ErrorText.OneLine(text, 80);

    private static string Kind(JsonNode node) => node switch { JsonArray => "list", JsonObject => "mapping", _ => "single value" };

    private static string Where(string source, Dictionary<string, int> lines, string path) =>
        lines.TryGetValue(path, out int line) ? $"{source}:{line}" : source;

    // ---- the train.json of runs made before the run configuration existed ----

    /// <summary>Reads a run directory's <c>train.json</c>: a <see cref="RunConfig"/>, or the flat settings older versions wrote.</summary>
    public static RunConfig ReadRunFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(ReadBounded(path))?.AsObject() ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({ErrorText.OneLine(e.Message)})", e);
        }
        if (root.ContainsKey("options") && root.ContainsKey("architecture")) root = FromLegacy(root);
        // The configuration is complete: it is read over the defaults, never over the preset it names.
        root.Remove("preset", out var named);
        var config = FromLayer(root, [], path, null);
        return named is JsonValue nv && nv.TryGetValue<string>(out var name) ? config with { Preset = name } : config;
    }

    /// <summary>The flat <c>TrainSettings</c> of earlier versions, key by key, as a configuration tree.</summary>
    private static JsonObject FromLegacy(JsonObject old)
    {
        // Keys the old file left out keep their defaults, which have not changed.
        void Put(JsonObject section, string key, string oldKey)
        {
            if (old.TryGetPropertyValue(oldKey, out var value)) section[key] = value?.DeepClone();
        }
        var model = new JsonObject();
        foreach (var (key, oldKey) in new[] { ("architecture", "architecture"), ("embedding_size", "embedding"), ("hidden_size", "hidden"),
            ("layers", "layers"), ("heads", "heads"), ("ffn_size", "ffn"), ("activation", "activation"), ("pre_norm", "pre_norm"),
            ("tie_embeddings", "tie"), ("share_embeddings", "share"), ("dropout", "dropout") })
            Put(model, key, oldKey);
        var text = new JsonObject();
        foreach (var (key, oldKey) in new[] { ("tokenizer", "tokenizer"), ("normalizer", "normalizer"), ("bpe_vocab_size", "bpe_vocab"),
            ("min_frequency", "min_frequency"), ("max_steps", "max_steps"), ("spm_model", "spm_model"), ("spm_target_model", "spm_target_model") })
            Put(text, key, oldKey);
        var training = new JsonObject();
        foreach (var (key, value) in old["options"]?.AsObject() ?? [])
        {
            // TimeSpan was written as "hh:mm:ss", which the duration reader takes as it is.
            if (key is "max_updates" or "keep_last" or "average_last" or "threads") continue;
            training[key] = value?.DeepClone();
        }
        Put(training, "threads", "threads");
        Put(training, "keep_last", "keep_last");
        var validation = new JsonObject();
        foreach (var (key, oldKey) in new[] { ("file", "valid"), ("every", "valid_every"), ("max_pairs", "valid_max"), ("metric", "keep_best"), ("patience", "patience") })
            Put(validation, key, oldKey);
        var data = new JsonObject();
        foreach (var (key, oldKey) in new[] { ("train", "data"), ("target", "data_target"), ("max_pairs", "train_pairs"), ("vocabulary_pairs", "vocabulary_pairs"),
            ("skip_invalid", "skip_invalid"), ("source_language", "source_language"), ("target_language", "target_language") })
            Put(data, key, oldKey);
        var config = new JsonObject { ["model"] = model, ["text"] = text, ["training"] = training, ["validation"] = validation, ["data"] = data };
        if (old["preset"] is JsonValue pv && pv.TryGetValue<string>(out var preset) && PresetNames.Contains(preset))
        {
            config["preset"] = preset;
            config["description"] = Preset(preset).Description;
            config["examples"] = JsonSerializer.SerializeToNode(Preset(preset).Examples, Json);
        }
        return config;
    }

    // ---- validation of values ----

    /// <summary>Most corpora in <c>data.corpora</c>.</summary>
    internal const int MaxCorpora = 256;

    /// <summary>Largest corpus weight (an epoch then sees each of its pairs this many times).</summary>
    internal const double MaxCorpusWeight = 1000;

    public static void Validate(RunConfig c)
    {
        static void Positive(int? value, string key)
        {
            if (value is <= 0) throw new ArgumentException($"'{key}' must be positive (got {value})");
        }
        var m = c.Model;
        if (!ModelRegistry.Names.Contains(m.Architecture))
            throw new ArgumentException($"'model.architecture': unknown '{m.Architecture}' (known: {string.Join(", ", ModelRegistry.Names)})");
        Positive(m.EmbeddingSize, "model.embedding_size");
        Positive(m.HiddenSize, "model.hidden_size");
        Positive(m.Layers, "model.layers");
        Positive(m.Heads, "model.heads");
        Positive(m.FfnSize, "model.ffn_size");
        if (m.Dropout is < 0 or >= 1) throw new ArgumentException($"'model.dropout' must be in [0, 1) (got {m.Dropout})");
        if (m.Extra is { Count: > 0 } && m.Architecture is "gru" or "bahdanau" or "transformer")
            throw new ArgumentException($"'model.extra': the built-in architecture '{m.Architecture}' takes no extra settings (got {string.Join(", ", m.Extra.Keys)})");
        if (m.Architecture == "transformer" && m.HiddenSize % m.Heads != 0)
            throw new ArgumentException($"'model.hidden_size' {m.HiddenSize} must be divisible by 'model.heads' {m.Heads}");

        var x = c.Text;
        Positive(x.MinFrequency, "text.min_frequency");
        Positive(x.MaxSteps, "text.max_steps");
        Positive(x.BpeSamplePairs, "text.bpe_sample_pairs");
        if (c.Init is not null)
        {
            if (string.IsNullOrWhiteSpace(c.Init)) throw new ArgumentException("'init' must name a checkpoint or model folder (got an empty path)");
            // The model started from brings its tokenizers and architecture: files and settings only a new model uses are refused.
            if ((x.SpmModel ?? x.SpmTargetModel) is not null)
                throw new ArgumentException("'text.spm_model': a run with 'init' (--init) encodes with the tokenizers of the model it starts from; leave out --spm-model/--spm-target-model");
            if (m.Extra is { Count: > 0 })
                throw new ArgumentException("'model.extra': a run with 'init' (--init) keeps the architecture of the model it starts from; leave out model.extra");
        }
        else if (x.Tokenizer == TokenizerKind.Bpe && x.BpeVocabSize < Text.BpeTrainingOptions.MinVocabSize)
            throw new ArgumentException($"'text.bpe_vocab_size' must be at least {Text.BpeTrainingOptions.MinVocabSize} (got {x.BpeVocabSize})");
        if (c.Init is null && x.Tokenizer == TokenizerKind.Spm && x.SpmModel is null)
            throw new ArgumentException("'text.tokenizer' spm needs 'text.spm_model' (--spm-model FILE, a SentencePiece model trained beforehand, e.g. with spm_train)");
        if (c.Init is null && x.Tokenizer != TokenizerKind.Spm && (x.SpmModel ?? x.SpmTargetModel) is not null)
            throw new ArgumentException("'text.spm_model' and 'text.spm_target_model' need 'text.tokenizer' spm (--tokenizer spm)");

        var t = c.Training;
        Positive(t.Epochs, "training.epochs");
        Positive(t.BatchSize, "training.batch_size");
        Positive(t.WarmupSteps, "training.warmup_steps");
        Positive(t.AccumulateSteps, "training.accumulate_steps");
        Positive(t.MaxTokens, "training.max_tokens");
        Positive(t.MaxUpdates, "training.max_updates");
        Positive(t.SaveEverySteps, "training.save_every_steps");
        Positive(t.KeepLast, "training.keep_last");
        Positive(t.Threads, "training.threads");
        if (t.AverageLast is < 2) throw new ArgumentException($"'training.average_last' must be at least 2 (got {t.AverageLast})");
        if (!(t.LearningRate > 0)) throw new ArgumentException($"'training.learning_rate' must be positive (got {t.LearningRate})");
        if (t.GradientClip < 0) throw new ArgumentException($"'training.gradient_clip' must not be negative (got {t.GradientClip})");
        if (t.LabelSmoothing is < 0 or >= 1) throw new ArgumentException($"'training.label_smoothing' must be in [0, 1) (got {t.LabelSmoothing})");
        if (t.TimeLimit is { } limit && limit <= TimeSpan.Zero) throw new ArgumentException("'training.time_limit' must be positive");
        if (t.TimeLimit > DurationConverter.Longest)
            throw new ArgumentException($"'training.time_limit' must be at most {DurationConverter.LongestText} (got {t.TimeLimit.Value.TotalDays:0.#} days)");

        var v = c.Validation;
        Positive(v.Every, "validation.every");
        if (v.EveryFraction is { } f && !(f > 0 && f <= 1)) throw new ArgumentException($"'validation.every_fraction' must be in (0, 1] (got {f})");
        Positive(v.MaxPairs, "validation.max_pairs");
        Positive(v.Patience, "validation.patience");
        Positive(c.Data.MaxPairs, "data.max_pairs");
        Positive(c.Data.VocabularyPairs, "data.vocabulary_pairs");
        Positive(c.Data.MaxLength, "data.max_length");
        if (c.Data.Corpora is { } corpora)
        {
            if (corpora.Count == 0) throw new ArgumentException("'data.corpora' lists no corpus (give at least one {path, weight})");
            if (corpora.Count > MaxCorpora) throw new ArgumentException($"'data.corpora' lists {corpora.Count} corpora; at most {MaxCorpora}");
            if (c.Data.Train is not null || c.Data.Target is not null)
                throw new ArgumentException("'data.corpora' replaces 'data.train' (--data) and 'data.target': give one or the other");
            for (int i = 0; i < corpora.Count; i++)
            {
                if (corpora[i] is null) throw new ArgumentException($"'data.corpora[{i}]' must be a mapping with 'path' and 'weight' (got null)");
                if (string.IsNullOrWhiteSpace(corpora[i].Path)) throw new ArgumentException($"'data.corpora[{i}].path' must name a corpus file, folder or known corpus");
                if (!(corpora[i].Weight > 0 && corpora[i].Weight <= MaxCorpusWeight))
                    throw new ArgumentException($"'data.corpora[{i}].weight' must be a number in (0, {MaxCorpusWeight}] (got {corpora[i].Weight.ToString(CultureInfo.InvariantCulture)})");
            }
        }
        if (c.Data.MaxLengthRatio is { } ratio && !(ratio >= 1 && double.IsFinite(ratio)))
            throw new ArgumentException($"'data.max_length_ratio' must be a number of at least 1 (got {ratio})");
    }
}
