using Transduce.Architecture;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>
/// The recompute-the-prefix twin of a model: the same modules, but its <see cref="EncoderDecoder.BeginDecoding"/>
/// carries no decoder state and re-runs the decoder over the whole prefix at every step, as d2l's Transformer chapter
/// predicts. It gives the same outputs as incremental decoding at a cost that grows with the prefix — the baseline that
/// incremental decoding is measured against, and a check that it is exact.
/// </summary>
internal static class RecomputePrefix
{
    /// <summary>A view of <paramref name="model"/> that decodes by recomputing the prefix. It shares the model's modules: do not dispose it.</summary>
    public static EncoderDecoder Of(EncoderDecoder model) =>
        new DecodingView(model, "recompute-prefix", (source, lengths, _) => model.BeginDecoding(source, lengths, recomputePrefix: true));
}
