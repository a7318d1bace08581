using Transduce.Checkpoints;
using Transduce.Import.HuggingFace;
using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.T5;

/// <summary>
/// Loads a Hugging Face <c>T5ForConditionalGeneration</c> folder (T5, T5 v1.1, Flan-T5): maps <c>config.json</c> onto the
/// <see cref="TransformerConfig"/> of an equivalent <see cref="TransformerSeq2Seq"/> and the weights onto its parameters.
/// Every problem throws naming the file and what is wrong.
/// </summary>
/// <remarks>
/// <para><b>Architecture</b> (transformers' <c>modeling_t5.py</c>): pre-norm blocks with RMS norms (ε =
/// <c>layer_norm_epsilon</c>) and final norms on both stacks; no biases anywhere; attention scores not divided by √d;
/// heads of <c>d_kv</c> (heads × d_kv may differ from d_model: flan-t5-small); self-attention scores get a learned bias
/// by bucketed relative distance (<c>relative_attention_num_buckets</c>, <c>relative_attention_max_distance</c>;
/// bidirectional in the encoder, causal in the decoder), held by the first block of each stack and shared by all;
/// embeddings not scaled, no absolute positions; <c>feed_forward_proj</c> <c>relu</c>, or <c>gated-gelu</c> (whose
/// activation is <c>gelu_new</c>, the tanh GELU), or <c>[gated-]act</c>; one shared embedding; with
/// <c>tie_word_embeddings</c> (T5) the output is the embedding, the decoder output multiplied by d_model^−½ first;
/// without (T5 v1.1, Flan-T5) a separate <c>lm_head</c> and no rescale. Dropout is not used at inference.</para>
/// <para><b>Parameter names</b> (transformers → ours), block i: <c>shared.weight</c> (also <c>encoder.embed_tokens</c>,
/// <c>decoder.embed_tokens</c>, and <c>lm_head</c> when tied) → both embeddings; <c>lm_head.weight</c> →
/// <c>decoder.dense.weight</c>; <c>{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias.weight</c> →
/// <c>{encoder,decoder}.relativeBias.weight</c>; <c>encoder.block.i.layer.0.SelfAttention.{q,k,v,o}</c> →
/// <c>encoder.blocks.i.attention.W_{q,k,v,o}</c>, <c>layer.0.layer_norm</c> → <c>addNorm1.norm</c>,
/// <c>layer.1.DenseReluDense.{wi | wi_0, wi_1}</c> → <c>ffn.dense1 | ffn.dense1, ffn.up</c>, <c>wo</c> → <c>ffn.dense2</c>,
/// <c>layer.1.layer_norm</c> → <c>addNorm2.norm</c>; in the decoder <c>layer.0</c> is self-attention (<c>SelfAttention</c>,
/// <c>addNorm1</c>), <c>layer.1.EncDecAttention</c> cross-attention (<c>CrossAttention</c>, <c>addNorm2</c>),
/// <c>layer.2</c> the feed-forward network (<c>addNorm3</c>); <c>{encoder,decoder}.final_layer_norm</c> →
/// <c>{encoder,decoder}.finalNorm</c>.</para>
/// </remarks>
internal static class T5Import
{
    /// <summary>File names inside a T5 folder.</summary>
    public const string ConfigFile = HuggingFaceFolder.ConfigFile, SentencePieceFile = "spiece.model", TokenizerConfigFile = HuggingFaceFolder.TokenizerConfigFile;

    /// <summary>The family's name in messages.</summary>
    public const string Family = "T5";

    /// <summary>Positions the converted model accepts per side (T5 has no position table; this bounds the decoder's bucket lookup).</summary>
    public const int DefaultMaxPositions = 2048;

    /// <summary>Maps a T5 <c>config.json</c> onto the <see cref="TransformerConfig"/> of an equivalent <see cref="TransformerSeq2Seq"/>.</summary>
    public static TransformerConfig ReadModelConfig(string configPath)
    {
        var json = new HfJsonFile(configPath, required: true);
        string? modelType = json.String("model_type");
        if (modelType is not null && modelType != "t5")
            throw json.Error($"'model_type' is '{modelType}', not 't5'");
        int dModel = json.Size("d_model", ModelConfig.MaxWidth) ?? 512;
        int heads = json.Size("num_heads", ModelConfig.MaxHeads) ?? 8;
        int dKv = json.Size("d_kv", ModelConfig.MaxWidth) ?? 64;
        if ((long)heads * dKv > ModelConfig.MaxWidth)
            throw json.Error($"'num_heads' {heads} × 'd_kv' {dKv} is larger than any supported model (at most {ModelConfig.MaxWidth})");
        int layers = json.Size("num_layers", ModelConfig.MaxLayers) ?? 6;
        int decoderLayers = json.Size("num_decoder_layers", ModelConfig.MaxLayers) ?? layers;
        int buckets = json.Size("relative_attention_num_buckets", 4096) ?? 32;
        int maxDistance = json.Size("relative_attention_max_distance", ModelConfig.MaxPositionCount) ?? 128;
        if (buckets < 4) throw json.Error($"'relative_attention_num_buckets' must be at least 4 (got {buckets})");
        if (maxDistance <= buckets / 2)
            throw json.Error($"'relative_attention_max_distance' {maxDistance} must be above half of 'relative_attention_num_buckets' {buckets}");
        bool tie = json.Bool("tie_word_embeddings") ?? true;
        string projection = json.String("feed_forward_proj") ?? "relu";
        var config = new TransformerConfig
        {
            SourceVocabSize = json.Size("vocab_size", ModelConfig.MaxVocabulary) ?? 32128,
            TargetVocabSize = json.Size("vocab_size", ModelConfig.MaxVocabulary) ?? 32128,
            EmbeddingSize = dModel,
            HiddenSize = dModel,
            Heads = heads,
            HeadSize = (long)heads * dKv == dModel ? null : dKv,
            FfnSize = json.Size("d_ff", ModelConfig.MaxFfn) ?? 2048,
            Layers = layers,
            DecoderLayers = decoderLayers == layers ? null : decoderLayers,
            Activation = FeedForward(projection, json),
            FfnBias = false,
            Norm = "rms_norm",
            NormEpsilon = json.Double("layer_norm_epsilon") ?? 1e-6,
            PreNorm = true,
            FinalNorm = true,
            ScaleAttention = false,
            AttentionBias = false,
            ScaleEmbedding = false,
            Positions = "relative",
            RelativeBuckets = buckets,
            RelativeMaxDistance = maxDistance,
            MaxPositions = DefaultMaxPositions,
            ShareEmbeddings = true,
            TieEmbeddings = tie,
            OutputScale = tie ? Math.Pow(dModel, -0.5) : 1.0,
            OutputBias = false,
            Dropout = json.Double("dropout_rate") ?? 0.1,
            PadId = json.Int("pad_token_id") ?? 0,
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw json.Error(e.Message);
        }
        return config;
    }

    /// <summary>
    /// <c>feed_forward_proj</c> as <c>T5Config</c> parses it: <c>[gated-]act</c>, where <c>gated-gelu</c> means the tanh
    /// GELU (<c>gelu_new</c>) for backward compatibility, and <c>act</c> is one of transformers' activation names.
    /// </summary>
    private static string FeedForward(string projection, HfJsonFile json)
    {
        var parts = projection.Split('-');
        bool gated = parts.Length == 2 && parts[0] == "gated";
        if (parts.Length > 2 || (parts.Length == 2 && !gated))
            throw json.Error($"'feed_forward_proj' '{projection}' is not of the form '[gated-]act' (e.g. 'relu', 'gated-gelu')");
        string act = projection == "gated-gelu" ? "gelu_new" : parts[^1];
        string plain = act switch
        {
            "relu" => "relu",
            "gelu" => "gelu",
            "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => "gelu_tanh",
            "silu" or "swish" => "swish",
            _ => throw json.Error($"'feed_forward_proj' '{projection}': activation '{act}' is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)"),
        };
        if (!gated) return plain;
        return plain switch { "relu" => "gated_relu", "gelu" => "gated_gelu", "gelu_tanh" => "gated_gelu_tanh", _ => "swiglu" };
    }

    /// <summary>For each tensor of the model <paramref name="config"/> builds, the transformers names that can supply it, preferred first.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> ParameterNames(TransformerConfig config)
    {
        const string shared = "shared.weight", lmHead = "lm_head.weight";
        string[] embedding = config.TieEmbeddings
            ? [shared, "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", lmHead]
            : [shared, "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];
        var names = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal)
        {
            ["encoder.embedding.weight"] = embedding,
            ["decoder.embedding.weight"] = embedding,
            ["decoder.dense.weight"] = config.TieEmbeddings ? embedding : [lmHead],
            ["encoder.relativeBias.weight"] = ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
            ["decoder.relativeBias.weight"] = ["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
            ["encoder.finalNorm.weight"] = ["encoder.final_layer_norm.weight"],
            ["decoder.finalNorm.weight"] = ["decoder.final_layer_norm.weight"],
        };
        bool gated = FeedForwardKinds.Parse(config.Activation).IsGated();
        void Block(string ours, string theirs, (string Ours, string Theirs)[] attention, int ffnLayer, string ffnNorm)
        {
            foreach (var (o, t) in attention)
                foreach (var (op, tp) in new[] { ("W_q", "q"), ("W_k", "k"), ("W_v", "v"), ("W_o", "o") })
                    names[$"{ours}.{o}.{op}.weight"] = [$"{theirs}.{t}.{tp}.weight"];
            string ffn = $"{theirs}.layer.{ffnLayer}.DenseReluDense";
            names[$"{ours}.ffn.dense1.weight"] = [gated ? $"{ffn}.wi_0.weight" : $"{ffn}.wi.weight"];
            if (gated) names[$"{ours}.ffn.up.weight"] = [$"{ffn}.wi_1.weight"];
            names[$"{ours}.ffn.dense2.weight"] = [$"{ffn}.wo.weight"];
            for (int n = 0; n <= ffnLayer; n++) names[$"{ours}.addNorm{n + 1}.norm.weight"] = [$"{theirs}.layer.{n}.layer_norm.weight"];
        }
        for (int i = 0; i < config.Layers; i++)
            Block($"encoder.blocks.{i}", $"encoder.block.{i}", [("attention", "layer.0.SelfAttention")], 1, "");
        for (int i = 0; i < config.DecoderLayerCount; i++)
            Block($"decoder.blocks.{i}", $"decoder.block.{i}", [("SelfAttention", "layer.0.SelfAttention"), ("CrossAttention", "layer.1.EncDecAttention")], 2, "");
        return names;
    }

    /// <summary>Loads the folder <paramref name="directory"/>'s network, in eval mode, and the config it was built from.</summary>
    public static (TransformerSeq2Seq Model, TransformerConfig Config) LoadModel(string directory) => LoadModel(new HuggingFaceFolder(directory, Family));

    /// <summary>Loads <paramref name="folder"/>'s network, in eval mode, and the config it was built from.</summary>
    public static (TransformerSeq2Seq Model, TransformerConfig Config) LoadModel(HuggingFaceFolder folder)
    {
        string configPath = folder.File(ConfigFile);
        var config = ReadModelConfig(configPath);
        var weights = folder.Weights();
        config.CheckFits(weights.Describe(), configPath);
        TransformerSeq2Seq model;
        using (ModelConstruction.WithoutWeights()) model = new TransformerSeq2Seq(config); // the files supply every weight
        try
        {
            WeightMapping.Copy(model, ParameterNames(config), weights, Family, zeroWhenMissing: _ => false, extra: (name, _) => WeightMapping.Unexpected(name));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return (model, config);
    }
}
