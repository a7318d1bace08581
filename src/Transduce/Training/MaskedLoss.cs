using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>Loss functions for sequence-to-sequence training.</summary>
internal static class Seq2SeqLoss
{
    /// <summary>
    /// Softmax cross-entropy averaged over non-pad label positions (d2l §10.7's masked loss).
    /// Positions whose label is <paramref name="padId"/> contribute nothing, whatever their logits.
    /// </summary>
    /// <param name="logits">(batch, steps, vocabulary); computed in float32 whatever their type.</param>
    /// <param name="labels">(batch, steps), int64.</param>
    /// <param name="padId">The padding id to ignore.</param>
    /// <param name="labelSmoothing">Label smoothing ε (0 for none).</param>
    public static Tensor MaskedCrossEntropy(Tensor logits, Tensor labels, int padId, double labelSmoothing = 0)
    {
        long vocab = logits.shape[^1];
        // Logits from bf16 matmuls are scored in float32: the log-softmax over the vocabulary and the mean stay exact.
        using var full = logits.dtype == ScalarType.Float32 ? logits.alias() : logits.to_type(ScalarType.Float32);
        using var flatLogits = full.reshape(-1, vocab);
        using var flatLabels = labels.reshape(-1);
        return nn.functional.cross_entropy(flatLogits, flatLabels, ignore_index: padId, label_smoothing: labelSmoothing);
    }
}
