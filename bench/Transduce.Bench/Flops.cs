using Transduce.Models.Transformer;
using Transduce.Models;

namespace Transduce.Bench;

/// <summary>
/// Model FLOPs of the Transformer, counted from the architecture: every matrix multiplication (projections, attention
/// scores and context, feed-forward, output layer) at 2 FLOPs per multiply–add. Element-wise work (softmax, layer norm,
/// dropout, the loss) is left out, as in the usual MFU definition. A training step costs ≈ 3× its forward pass
/// (the backward pass computes two matmuls per forward one).
/// </summary>
internal static class Flops
{
    /// <summary>Forward FLOPs of teacher-forced training on a batch of <paramref name="batch"/> rows, source length
    /// <paramref name="sourceSteps"/> and target length <paramref name="targetSteps"/> (padded shapes: what the step computes).</summary>
    public static double TransformerForward(TransformerConfig c, long batch, long sourceSteps, long targetSteps)
    {
        double d = c.HiddenSize, f = c.FfnSize, v = c.TargetVocabSize, b = batch, s = sourceSteps, t = targetSteps;
        double encoderLayer = 2 * b * s * (4 * d * d + 2 * d * f) + 2 * b * (2 * s * s * d);
        double decoderLayer = 2 * b * t * (4 * d * d + 2 * d * d + 2 * d * f) // self-attention Q,K,V,O; cross Q,O; FFN
                              + 2 * b * s * (2 * d * d)                       // cross-attention K,V of the encoder output
                              + 2 * b * (2 * t * t * d + 2 * t * s * d);      // self and cross scores and contexts
        return c.Layers * encoderLayer + c.DecoderLayerCount * decoderLayer + 2 * b * t * d * v;
    }

    /// <summary>FLOPs of one training step (forward + backward ≈ 3× forward).</summary>
    public static double TransformerTrainStep(TransformerConfig c, long batch, long sourceSteps, long targetSteps) =>
        3 * TransformerForward(c, batch, sourceSteps, targetSteps);

    /// <summary>
    /// FLOPs of incremental (key/value-cached) decoding of one sentence: the encoder over its
    /// <paramref name="sourceSteps"/> tokens, the cross-attention keys/values once, and then one position per emitted
    /// token (<paramref name="outputSteps"/> including &lt;eos&gt;), each attending over the prefix and the source.
    /// </summary>
    public static double TransformerDecode(TransformerConfig c, long sourceSteps, long outputSteps)
    {
        double d = c.HiddenSize, f = c.FfnSize, v = c.TargetVocabSize, s = sourceSteps;
        double encoder = c.Layers * (2 * s * (4 * d * d + 2 * d * f) + 2 * (2 * s * s * d));
        double cross = c.DecoderLayerCount * 2 * s * (2 * d * d);
        double steps = 0;
        for (long i = 1; i <= outputSteps; i++)
            steps += c.DecoderLayerCount * (2 * (6 * d * d + 2 * d * f) + 2 * (2 * i * d + 2 * s * d)) + 2 * d * v;
        return encoder + cross + steps;
    }
}
