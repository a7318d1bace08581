using Transduce.Import.HuggingFace;

using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>Mapping a MarianMT state dict onto a <see cref="TransformerSeq2Seq"/>, by parameter name.</summary>
internal static partial class MarianImport
{
    /// <summary>
    /// For each tensor of a <see cref="TransformerSeq2Seq"/> built from <paramref name="config"/>, the Hugging Face names that
    /// can supply it, preferred first (several when weights are shared or tied: they must then hold equal values).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> ParameterNames(TransformerConfig config)
    {
        const string shared = "model.shared.weight", encoderEmbed = "model.encoder.embed_tokens.weight",
            decoderEmbed = "model.decoder.embed_tokens.weight", lmHead = "lm_head.weight";
        var names = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        string[] decoderEmbedding = config.ShareEmbeddings ? [shared, encoderEmbed, decoderEmbed] : [decoderEmbed];
        names["encoder.embedding.weight"] = config.ShareEmbeddings ? decoderEmbedding : [encoderEmbed, shared];
        names["decoder.embedding.weight"] = config.TieEmbeddings ? [.. decoderEmbedding, lmHead] : decoderEmbedding;
        names["decoder.dense.weight"] = config.TieEmbeddings ? names["decoder.embedding.weight"] : [lmHead];
        names["decoder.dense.bias"] = ["final_logits_bias"];
        if (config.ShareEmbeddings) names["encoder.embedding.weight"] = names["decoder.embedding.weight"];

        // Each block's sub-modules, ours and transformers' (attention blocks map their four projections).
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
        return names;
    }

    /// <summary>
    /// Copies MarianMT weights (<see cref="HuggingFaceWeights"/>: one file or shards) into <paramref name="model"/> by
    /// <see cref="ParameterNames"/> (<see cref="WeightMapping.Copy"/>): a missing <c>final_logits_bias</c> starts at zero, as
    /// in transformers; an older checkpoint's stored sinusoid table is only checked for its shape (the table is computed).
    /// </summary>
    public static void LoadWeights(TransformerSeq2Seq model, TransformerConfig config, HuggingFaceWeights weights) =>
        WeightMapping.Copy(model, ParameterNames(config), weights, "MarianMT",
            zeroWhenMissing: ours => ours == "decoder.dense.bias",
            extra: (name, tensor) => name is "model.encoder.embed_positions.weight" or "model.decoder.embed_positions.weight"
                ? tensor.shape.SequenceEqual([config.MaxPositions, config.HiddenSize]) ? null
                    : $"tensor '{name}' has shape [{string.Join(", ", tensor.shape)}], the model needs [{config.MaxPositions}, {config.HiddenSize}]"
                : WeightMapping.Unexpected(name));
}
