using System.Security.Cryptography;
using System.Text.Json.Serialization;
using Transduce.Checkpoints;

namespace Transduce.Serving;

/// <summary>What <c>GET /v1/models</c> reports about the served checkpoint.</summary>
public sealed record ModelInfo
{
    /// <summary>The name requests use to choose this model (<c>"model"</c>); the first model served is the default.</summary>
    public string Name { get; init; } = "default";

    /// <summary>Checkpoint id: the first 16 hex digits of the SHA-256 of the weights file (<c>model.safetensors</c>, or a MarianMT folder's <c>pytorch_model.bin</c>).</summary>
    public required string Id { get; init; }

    /// <summary>Architecture name (one of <see cref="Models.ModelRegistry"/>'s: <c>gru</c>, <c>bahdanau</c>, <c>transformer</c>, …).</summary>
    public required string Architecture { get; init; }

    /// <summary>What the architecture is, from <see cref="Models.ModelRegistry"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Description { get; init; }

    /// <summary>The whole model configuration as the checkpoint stores it (every option of its architecture).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public System.Text.Json.Nodes.JsonObject? Config { get; init; }

    /// <summary>Embedding width.</summary>
    public int EmbeddingSize { get; init; }

    /// <summary>Hidden (model) width.</summary>
    public int HiddenSize { get; init; }

    /// <summary>Layers (or blocks) in encoder and decoder.</summary>
    public int Layers { get; init; }

    /// <summary>Attention heads (the config's <c>heads</c>); null for models without them.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Heads { get; init; }

    /// <summary>Trainable parameters.</summary>
    public long Parameters { get; init; }

    /// <summary>Source vocabulary size.</summary>
    public int SourceVocabSize { get; init; }

    /// <summary>Target vocabulary size.</summary>
    public int TargetVocabSize { get; init; }

    /// <summary>Source language, from the checkpoint's training info (<c>source_language</c>), else <c>"source"</c>.</summary>
    public string SourceLanguage { get; init; } = "source";

    /// <summary>Target language, from the checkpoint's training info (<c>target_language</c>), else <c>"target"</c>.</summary>
    public string TargetLanguage { get; init; } = "target";

    /// <summary>
    /// The beam a request that names none gets from this model (a MarianMT folder's <c>num_beams</c>); null: the
    /// service's default (greedy).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DefaultBeam { get; init; }

    /// <summary>The language codes of a multilingual model (NLLB), which requests name in <c>source_lang</c> / <c>target_lang</c>; null for others.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Languages { get; init; }

    /// <summary>The tasks of the model (a T5 folder's <c>task_specific_params</c>, which <c>transduce translate --task</c> takes); null for none.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Tasks { get; init; }

    /// <summary>The source language a request that names none gets (a multilingual model's default), or null.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? DefaultSourceLang { get; init; }

    /// <summary>The target language a request that names none gets, or null (then requests must name one).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? DefaultTargetLang { get; init; }

    /// <summary>Whether translations can come with cross-attention weights (<c>"attention": true</c>).</summary>
    public bool Attention { get; init; }

    /// <summary>Free-form facts about the training run, as stored in the checkpoint.</summary>
    public IReadOnlyDictionary<string, string> Training { get; init; } = new Dictionary<string, string>();

    /// <summary>Describes the checkpoint loaded from <paramref name="directory"/>, served as <paramref name="name"/>.</summary>
    public static ModelInfo From(Checkpoint checkpoint, string directory, string name = "default")
    {
        var config = checkpoint.ModelConfig;
        var fields = config.ToJson();
        string Language(string key, string fallback) =>
            checkpoint.TrainingInfo.TryGetValue(key, out var v) && !string.IsNullOrWhiteSpace(v) ? v : fallback;
        return new ModelInfo
        {
            Name = name,
            Id = HashPrefix(WeightsOf(directory)),
            Architecture = config.Architecture,
            Description = Models.ModelRegistry.Get(config.Architecture).Description,
            Config = fields,
            EmbeddingSize = config.EmbeddingSize,
            HiddenSize = config.HiddenSize,
            Layers = config.Layers,
            Heads = fields["heads"] is System.Text.Json.Nodes.JsonValue heads && heads.TryGetValue<int>(out int h) ? h : null,
            Parameters = checkpoint.Model.parameters().Sum(p => p.numel()),
            SourceVocabSize = config.SourceVocabSize,
            TargetVocabSize = config.TargetVocabSize,
            SourceLanguage = Language("source_language", "source"),
            TargetLanguage = Language("target_language", "target"),
            Training = checkpoint.TrainingInfo,
            Attention = checkpoint.Model.HasCrossAttention,
            DefaultBeam = checkpoint.Generation.NumBeams,
            Languages = checkpoint.Languages?.Codes,
            Tasks = checkpoint.Tasks.Count > 0 ? [.. checkpoint.Tasks.Keys] : null,
            DefaultSourceLang = checkpoint.Languages?.DefaultSource,
            DefaultTargetLang = checkpoint.Languages?.DefaultTarget,
        };
    }

    /// <summary>The weights file a folder was loaded from: <c>model.safetensors</c>, else (Hugging Face folders) <c>pytorch_model.bin</c> or a shard index.</summary>
    private static string WeightsOf(string directory)
    {
        string safetensors = Path.Combine(directory, Checkpoint.WeightsFile);
        if (File.Exists(safetensors)) return safetensors;
        try
        {
            // A Hugging Face folder: pytorch_model.bin, or the index of sharded weights (which names every shard).
            return Import.HuggingFace.HuggingFaceWeights.Find(new Import.HuggingFace.HuggingFaceFolder(directory, "model")).Path;
        }
        catch (FileNotFoundException)
        {
            return safetensors;
        }
    }

    private static string HashPrefix(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream))[..16];
    }
}
