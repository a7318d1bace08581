using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Models;
using Transduce.Models.Gru;
using Transduce.Models.Transformer;
using Transduce.Import.Marian;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// Checkpoints with random weights at the sizes users run, made by our own code, for speed measurements that need no
/// training: <c>opus-mt</c> is the network an OPUS-MT (MarianMT) en→de folder maps onto (d_model 512, 6+6 layers,
/// 8 heads, FFN 2048, swish, post-norm, attention biases, Marian's sinusoid layout, one shared and tied 58,101-piece
/// vocabulary) — its configuration comes from <see cref="MarianImport.ReadModelConfig"/> reading a MarianMT
/// <c>config.json</c> with those values; <c>base-cpu</c> is the <c>transformer-base-cpu</c> preset's network (8k BPE);
/// <c>gru</c> the word-level GRU of BENCHMARKS.md (2 × 256, vocabularies 9,897/17,644).
/// Vocabularies are placeholder tokens (<c>w4</c>, <c>w5</c>, …): the benchmark feeds ids, not text.
/// </summary>
internal static class Synthetic
{
    public static IReadOnlyList<string> Names { get; } = ["opus-mt", "base-cpu", "gru"];

    /// <summary>The configuration of a named synthetic model.</summary>
    public static ModelConfig Config(string name) => name switch
    {
        "opus-mt" => OpusMtConfig(),
        "base-cpu" => new TransformerConfig
        {
            SourceVocabSize = 8000, TargetVocabSize = 8000, EmbeddingSize = 256, HiddenSize = 256,
            Layers = 3, Heads = 4, FfnSize = 1024, Dropout = 0.1, PreNorm = true, TieEmbeddings = true, ShareEmbeddings = true,
        },
        "gru" => new GruConfig
        {
            SourceVocabSize = 9897, TargetVocabSize = 17644, EmbeddingSize = 256, HiddenSize = 256, Layers = 2, Dropout = 0.2,
        },
        _ => throw new ArgumentException($"unknown synthetic model '{name}' (known: {string.Join(", ", Names)})"),
    };

    /// <summary>
    /// Makes the named model with random weights (seeded) and writes it as a checkpoint to <paramref name="directory"/>, so
    /// that the PyTorch twin loads exactly the same weights. An existing checkpoint there with the same configuration is reused.
    /// </summary>
    public static Checkpoint Create(string name, string directory, int seed = 1)
    {
        var config = Config(name);
        if (File.Exists(Path.Combine(directory, Checkpoint.ConfigFile)))
        {
            var existing = Checkpoint.Load(directory);
            if (existing.ModelConfig == config) return existing;
            existing.Dispose();
        }
        manual_seed(seed);
        var model = ModelRegistry.Create(config);
        model.eval();
        var checkpoint = new Checkpoint
        {
            Model = model,
            ModelConfig = config,
            TextConfig = new TextConfig { Normalizer = "none", Tokenizer = "word" },
            SourceVocabulary = Placeholders(config.SourceVocabSize),
            TargetVocabulary = Placeholders(config.TargetVocabSize),
            TrainingInfo = new Dictionary<string, string> { ["synthetic"] = name, ["seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture) },
        };
        checkpoint.Save(directory);
        return checkpoint;
    }

    /// <summary>A vocabulary of exactly <paramref name="size"/> ids: the four specials, then <c>w4</c> … <c>w{size−1}</c>.</summary>
    private static Vocabulary Placeholders(int size) =>
        Vocabulary.Build([Enumerable.Range(4, size - 4).Select(i => $"w{i}")]);

    /// <summary>Helsinki-NLP/opus-mt-en-de's <c>config.json</c> values, read by the Marian importer.</summary>
    private static ModelConfig OpusMtConfig()
    {
        var json = new JsonObject
        {
            ["model_type"] = "marian", ["d_model"] = 512, ["encoder_layers"] = 6, ["decoder_layers"] = 6,
            ["encoder_attention_heads"] = 8, ["decoder_attention_heads"] = 8, ["encoder_ffn_dim"] = 2048, ["decoder_ffn_dim"] = 2048,
            ["activation_function"] = "swish", ["vocab_size"] = 58101, ["decoder_vocab_size"] = 58101, ["pad_token_id"] = 58100,
            ["eos_token_id"] = 0, ["decoder_start_token_id"] = 58100, ["max_position_embeddings"] = 512, ["scale_embedding"] = true,
            ["share_encoder_decoder_embeddings"] = true, ["tie_word_embeddings"] = true, ["static_position_embeddings"] = true,
            ["normalize_before"] = false, ["normalize_embedding"] = false, ["add_final_layer_norm"] = false, ["dropout"] = 0.1,
        };
        string path = Path.Combine(Path.GetTempPath(), $"opus-mt-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        try
        {
            return MarianImport.ReadModelConfig(path) with { PadId = 0 };
        }
        finally
        {
            File.Delete(path);
        }
    }
}
