using System.Text.Json.Nodes;
using Transduce.Inference;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// <c>config.json</c>'s <c>task_specific_params</c> as transformers' pipelines apply an entry when built for that task
/// (<c>pipelines/base.py</c>): the entry's <c>prefix</c> is taken out and put before every input (without one, the
/// config's own <c>prefix</c>, else none), and its other keys update the model's generation config
/// (<c>GenerationConfig.update</c>: the keys it knows are set, the others ignored). Each task's settings are read by
/// <see cref="HfGenerationConfig"/> from the folder's generation keys with the entry's put over them, so a task is checked
/// exactly as the folder's own settings are; the file is untrusted: the count of tasks, their names and prefixes are
/// bounded and a wrong type is one line naming <c>config.json</c>, the task and the key.
/// </summary>
internal static class HfTaskParams
{
    /// <summary>The key of <c>config.json</c>.</summary>
    public const string Key = "task_specific_params";

    /// <summary>Special ids a task may not change (our vocabulary layout is built from the folder's).</summary>
    private static readonly string[] FixedIds = ["decoder_start_token_id", "eos_token_id", "pad_token_id", "bos_token_id"];

    /// <summary>
    /// The tasks of the folder <paramref name="directory"/>, in file order (none when <c>config.json</c> has no
    /// <c>task_specific_params</c>), each with its prefix and decoding settings in the folder's ids.
    /// </summary>
    /// <param name="directory">The Hugging Face folder.</param>
    /// <param name="folder">The folder's own decoding settings (<see cref="HfGenerationConfig.Read"/>).</param>
    /// <param name="defaults">The model family's config-class defaults for the special ids.</param>
    /// <param name="vocabularySize">The decoder's vocabulary.</param>
    /// <param name="maxPositions">The decoder's positions, or null.</param>
    public static IReadOnlyList<(string Name, string Prefix, HfGenerationConfig Generation)> Read(string directory, HfGenerationConfig folder,
        HfConfigDefaults defaults, int vocabularySize, int? maxPositions = null)
    {
        var model = new HfJsonFile(Path.Combine(directory, HfGenerationConfig.ConfigFile), required: true);
        var generation = new HfJsonFile(Path.Combine(directory, HfGenerationConfig.GenerationConfigFile), required: false);
        var node = model.Node(Key);
        if (node is null) return [];
        if (node is not JsonObject entries) throw model.Error($"'{Key}' must be an object of tasks (got {Shown(node)})");
        if (entries.Count > TaskSettings.MaxTasks)
            throw model.Error($"'{Key}' has {entries.Count} tasks, more than the {TaskSettings.MaxTasks} supported");
        string configPrefix = model.String("prefix") ?? "";
        var tasks = new List<(string, string, HfGenerationConfig)>(entries.Count);
        foreach (var (name, value) in entries)
        {
            if (TaskSettings.CheckName(name) is { } problem) throw model.Error($"'{Key}': {problem} (got {Shown(JsonValue.Create(name))})");
            string context = $"{Key} '{name}'";
            if (value is not JsonObject entry) throw model.Error($"{context} must be an object of settings (got {Shown(value)})");
            var settings = entry.DeepClone().AsObject();
            string prefix = configPrefix;
            if (settings.Remove("prefix", out var p))
                prefix = p is null ? "" : p is JsonValue v && v.TryGetValue<string>(out var text)
                    ? text : throw model.Error($"{context}: 'prefix' must be a string (got {Shown(p)})");
            if (prefix.Length > TaskSettings.MaxPrefixLength)
                throw model.Error($"{context}: 'prefix' is longer than {TaskSettings.MaxPrefixLength} characters");
            // transformers updates the model's generation config: generation_config.json when the folder has one, else
            // the one derived from config.json.
            var task = generation.Exists
                ? HfGenerationConfig.ReadFiles(model, generation.With(settings, model.Path, context), defaults, vocabularySize, maxPositions)
                : HfGenerationConfig.ReadFiles(model.With(settings, null, context), generation, defaults, vocabularySize, maxPositions);
            foreach (string key in FixedIds)
                if (settings.ContainsKey(key) && !SameIds(key, task, folder))
                    throw model.Error($"{context}: '{key}' differs from the model's, which is not supported");
            tasks.Add((name, prefix, task));
        }
        return tasks;
    }

    private static bool SameIds(string key, HfGenerationConfig a, HfGenerationConfig b) => key switch
    {
        "decoder_start_token_id" => a.DecoderStartTokenId == b.DecoderStartTokenId,
        "eos_token_id" => a.EosTokenIds.SequenceEqual(b.EosTokenIds),
        "pad_token_id" => a.PadTokenId == b.PadTokenId,
        _ => a.BosTokenId == b.BosTokenId,
    };

    /// <summary>A JSON value for an error line, cut short.</summary>
    private static string Shown(JsonNode? node)
    {
        string text = node?.ToJsonString() ?? "null";
        return text.Length <= 80 ? text : text[..80] + "…";
    }
}
