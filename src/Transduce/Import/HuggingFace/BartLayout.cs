using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// The parameter names of transformers' BART-family encoder–decoders (BART, mBART, Marian, M2M100 / NLLB, …), whose blocks
/// all name their parts alike, against a <see cref="TransformerSeq2Seq"/>'s.
/// </summary>
internal static class BartLayout
{
    /// <summary>
    /// The stack sizes of a BART-family <c>config.json</c> — <c>d_model</c>, attention heads, feed-forward width and layers
    /// of each side (the config class defaults where absent, each bounded) — as a <see cref="TransformerConfig"/> that the
    /// family completes. Encoder and decoder must share heads and feed-forward width (one error line naming the keys).
    /// </summary>
    public static TransformerConfig ReadStacks(HfJsonFile json)
    {
        int dModel = json.Size("d_model", ModelConfig.MaxWidth) ?? 1024;
        int encoderHeads = json.Size("encoder_attention_heads", ModelConfig.MaxHeads) ?? 16, decoderHeads = json.Size("decoder_attention_heads", ModelConfig.MaxHeads) ?? 16;
        int encoderFfn = json.Size("encoder_ffn_dim", ModelConfig.MaxFfn) ?? 4096, decoderFfn = json.Size("decoder_ffn_dim", ModelConfig.MaxFfn) ?? 4096;
        int encoderLayers = json.Size("encoder_layers", ModelConfig.MaxLayers) ?? 12, decoderLayers = json.Size("decoder_layers", ModelConfig.MaxLayers) ?? 12;
        if (encoderHeads != decoderHeads)
            throw json.Error($"'encoder_attention_heads' {encoderHeads} and 'decoder_attention_heads' {decoderHeads} differ, which is not supported");
        if (encoderFfn != decoderFfn)
            throw json.Error($"'encoder_ffn_dim' {encoderFfn} and 'decoder_ffn_dim' {decoderFfn} differ, which is not supported");
        return new TransformerConfig
        {
            EmbeddingSize = dModel,
            HiddenSize = dModel,
            Layers = encoderLayers,
            DecoderLayers = decoderLayers == encoderLayers ? null : decoderLayers,
            Heads = encoderHeads,
            FfnSize = encoderFfn,
        };
    }

    /// <summary>
    /// Ours → transformers' names for the embeddings, the output projection and every block (<see cref="AddBlocks"/>), preferred
    /// first: <c>model.shared.weight</c> / <c>model.{encoder,decoder}.embed_tokens.weight</c> for the embeddings (one tensor when
    /// <see cref="TransformerConfig.ShareEmbeddings"/>), <c>lm_head.weight</c> for the output projection (the decoder embedding
    /// when <see cref="TransformerConfig.TieEmbeddings"/>). A family adds its own extras (biases, final norms).
    /// </summary>
    public static Dictionary<string, IReadOnlyList<string>> Names(TransformerConfig config)
    {
        const string shared = "model.shared.weight", encoderEmbed = "model.encoder.embed_tokens.weight",
            decoderEmbed = "model.decoder.embed_tokens.weight", lmHead = "lm_head.weight";
        var names = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        string[] decoderEmbedding = config.ShareEmbeddings ? [shared, encoderEmbed, decoderEmbed] : [decoderEmbed];
        names["encoder.embedding.weight"] = config.ShareEmbeddings ? decoderEmbedding : [encoderEmbed, shared];
        names["decoder.embedding.weight"] = config.TieEmbeddings ? [.. decoderEmbedding, lmHead] : decoderEmbedding;
        names["decoder.dense.weight"] = config.TieEmbeddings ? names["decoder.embedding.weight"] : [lmHead];
        if (config.ShareEmbeddings) names["encoder.embedding.weight"] = names["decoder.embedding.weight"];
        AddBlocks(names, config);
        return names;
    }

    /// <summary>
    /// Adds, for every block, ours → transformers' name: encoder block i's <c>self_attn.{q,k,v,out}_proj</c> →
    /// <c>attention.W_{q,k,v,o}</c>, <c>self_attn_layer_norm</c> → <c>addNorm1.norm</c>, <c>fc1</c>/<c>fc2</c> →
    /// <c>ffn.dense1</c>/<c>ffn.dense2</c>, <c>final_layer_norm</c> → <c>addNorm2.norm</c>; decoder block i's <c>self_attn</c> →
    /// <c>SelfAttention</c>, <c>self_attn_layer_norm</c> → <c>addNorm1.norm</c>, <c>encoder_attn</c> → <c>CrossAttention</c>,
    /// <c>encoder_attn_layer_norm</c> → <c>addNorm2.norm</c>, <c>fc1</c>/<c>fc2</c>, <c>final_layer_norm</c> → <c>addNorm3.norm</c>
    /// (the same names whether the model normalises before or after each sub-layer). Weights and biases alike.
    /// </summary>
    public static void AddBlocks(Dictionary<string, IReadOnlyList<string>> names, TransformerConfig config)
    {
        (string Ours, string Theirs)[] encoderBlock =
            [("attention", "self_attn"), ("addNorm1.norm", "self_attn_layer_norm"), ("ffn.dense1", "fc1"), ("ffn.dense2", "fc2"), ("addNorm2.norm", "final_layer_norm")];
        (string Ours, string Theirs)[] decoderBlock =
            [("SelfAttention", "self_attn"), ("addNorm1.norm", "self_attn_layer_norm"), ("CrossAttention", "encoder_attn"),
             ("addNorm2.norm", "encoder_attn_layer_norm"), ("ffn.dense1", "fc1"), ("ffn.dense2", "fc2"), ("addNorm3.norm", "final_layer_norm")];
        void Blocks(int count, string ours, string theirs, (string Ours, string Theirs)[] parts)
        {
            for (int i = 0; i < count; i++)
                foreach (var (o, t) in parts)
                {
                    bool attention = t.EndsWith("_attn", StringComparison.Ordinal);
                    var projections = attention ? new[] { ("W_q.", "q_proj."), ("W_k.", "k_proj."), ("W_v.", "v_proj."), ("W_o.", "out_proj.") } : [("", "")];
                    foreach (var (op, tp) in projections)
                        foreach (var p in new[] { "weight", "bias" })
                            names[$"{ours}.{i}.{o}.{op}{p}"] = [$"{theirs}.{i}.{t}.{tp}{p}"];
                }
        }
        Blocks(config.Layers, "encoder.blocks", "model.encoder.layers", encoderBlock);
        Blocks(config.DecoderLayerCount, "decoder.blocks", "model.decoder.layers", decoderBlock);
    }
}
