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
        var names = BartLayout.Names(config);
        names["decoder.dense.bias"] = ["final_logits_bias"];
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
            extra: (name, shape) => name is "model.encoder.embed_positions.weight" or "model.decoder.embed_positions.weight"
                ? shape.SequenceEqual([config.MaxPositions, config.HiddenSize]) ? null
                    : $"tensor '{name}' has shape [{string.Join(", ", shape)}], the model needs [{config.MaxPositions}, {config.HiddenSize}]"
                : WeightMapping.Unexpected(name));
}
