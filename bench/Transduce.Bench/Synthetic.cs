using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Models;
using Transduce.Models.Gru;
using Transduce.Models.Transformer;
using Transduce.Import.HuggingFace;
using Transduce.Import.M2M100;
using Transduce.Import.Marian;
using Transduce.Import.T5;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// Checkpoints with random weights at the sizes users run, made by our own code, for speed measurements that need no
/// training: <c>opus-mt</c> is the network an OPUS-MT (MarianMT) en→de folder maps onto (d_model 512, 6+6 layers,
/// 8 heads, FFN 2048, swish, post-norm, attention biases, Marian's sinusoid layout, one shared and tied 58,101-piece
/// vocabulary) — its configuration comes from <see cref="MarianImport.ReadModelConfig"/> reading a MarianMT
/// <c>config.json</c> with those values; <c>nllb-600m</c>, <c>t5-base</c> and <c>flan-t5-base</c> are the networks
/// facebook/nllb-200-distilled-600M, t5-base and google/flan-t5-base map onto, their configurations read by the NLLB / M2M100
/// and T5 importers from those folders' <c>config.json</c> values; <c>base-cpu</c> is the <c>transformer-base-cpu</c>
/// preset's network (8k BPE); <c>gru</c> the word-level GRU of BENCHMARKS.md (2 × 256, vocabularies 9,897/17,644).
/// Vocabularies are placeholder tokens (<c>w4</c>, <c>w5</c>, …) with our special ids first: the benchmark feeds ids, not
/// text, so the imported configs keep everything but the padding id (which only the vocabulary uses).
/// </summary>
internal static class Synthetic
{
    public static IReadOnlyList<string> Names { get; } = ["opus-mt", "nllb-600m", "t5-base", "flan-t5-base", "base-cpu", "gru"];

    /// <summary>The configuration of a named synthetic model.</summary>
    public static ModelConfig Config(string name) => name switch
    {
        "opus-mt" => OpusMtConfig(),
        "nllb-600m" => Nllb600MConfig(),
        "t5-base" => T5Config(flan: false),
        "flan-t5-base" => T5Config(flan: true),
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
    private static ModelConfig OpusMtConfig() => Imported(new JsonObject
    {
        ["model_type"] = "marian", ["d_model"] = 512, ["encoder_layers"] = 6, ["decoder_layers"] = 6,
        ["encoder_attention_heads"] = 8, ["decoder_attention_heads"] = 8, ["encoder_ffn_dim"] = 2048, ["decoder_ffn_dim"] = 2048,
        ["activation_function"] = "swish", ["vocab_size"] = 58101, ["decoder_vocab_size"] = 58101, ["pad_token_id"] = 58100,
        ["eos_token_id"] = 0, ["decoder_start_token_id"] = 58100, ["max_position_embeddings"] = 512, ["scale_embedding"] = true,
        ["share_encoder_decoder_embeddings"] = true, ["tie_word_embeddings"] = true, ["static_position_embeddings"] = true,
        ["normalize_before"] = false, ["normalize_embedding"] = false, ["add_final_layer_norm"] = false, ["dropout"] = 0.1,
    }, MarianImport.ReadModelConfig);

    /// <summary>
    /// facebook/nllb-200-distilled-600M's <c>config.json</c> values, read by the NLLB / M2M100 importer: 12+12 × 1024, 16 heads,
    /// FFN 4096 relu, 256,206 pieces shared and tied, pre-norm with final norms, scaled embeddings, fairseq sinusoids from row
    /// padding id + 1 = 2, attention biases, no output bias, 1024 positions.
    /// </summary>
    private static ModelConfig Nllb600MConfig() => Imported(new JsonObject
    {
        ["model_type"] = "m2m_100", ["d_model"] = 1024, ["encoder_layers"] = 12, ["decoder_layers"] = 12,
        ["encoder_attention_heads"] = 16, ["decoder_attention_heads"] = 16, ["encoder_ffn_dim"] = 4096, ["decoder_ffn_dim"] = 4096,
        ["activation_function"] = "relu", ["vocab_size"] = 256206, ["pad_token_id"] = 1, ["bos_token_id"] = 0, ["eos_token_id"] = 2,
        ["decoder_start_token_id"] = 2, ["max_position_embeddings"] = 1024, ["scale_embedding"] = true, ["dropout"] = 0.1,
        ["encoder_layerdrop"] = 0, ["decoder_layerdrop"] = 0, ["attention_dropout"] = 0.1, ["activation_dropout"] = 0.0,
    }, path => M2M100Import.ReadModelConfig(new HfJsonFile(path, required: true)));

    /// <summary>
    /// t5-base's <c>config.json</c> values (12+12 × 768, 12 heads × d_kv 64, FFN 3072 relu, 32,128 pieces tied with the d^−½
    /// rescale), or google/flan-t5-base's (FFN 2048 gated-gelu, untied <c>lm_head</c>), read by the T5 importer: RMS norm
    /// ε 1e-6, relative positions (32 buckets, max distance 128), unscaled attention, no biases.
    /// </summary>
    private static ModelConfig T5Config(bool flan) => Imported(new JsonObject
    {
        ["model_type"] = "t5", ["d_model"] = 768, ["d_kv"] = 64, ["d_ff"] = flan ? 2048 : 3072, ["num_heads"] = 12, ["num_layers"] = 12,
        ["num_decoder_layers"] = 12, ["feed_forward_proj"] = flan ? "gated-gelu" : "relu", ["vocab_size"] = 32128,
        ["relative_attention_num_buckets"] = 32, ["relative_attention_max_distance"] = 128, ["layer_norm_epsilon"] = 1e-6,
        ["dropout_rate"] = 0.1, ["tie_word_embeddings"] = !flan, ["pad_token_id"] = 0, ["eos_token_id"] = 1, ["decoder_start_token_id"] = 0,
    }, T5Import.ReadModelConfig);

    /// <summary>
    /// The configuration an importer's reader <paramref name="read"/> makes of a <c>config.json</c> holding <paramref name="json"/>,
    /// with our vocabularies' padding id 0.
    /// </summary>
    private static TransformerConfig Imported(JsonObject json, Func<string, TransformerConfig> read)
    {
        string path = Path.Combine(Path.GetTempPath(), $"synthetic-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        try
        {
            return read(path) with { PadId = 0 };
        }
        finally
        {
            File.Delete(path);
        }
    }
}
