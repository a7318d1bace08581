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
        if (labelSmoothing > 0 && flatLogits.shape[0] > 0)
        {
            // A converted model has output rows it can never produce (our <bos> copy of the decoder start, bias −∞:
            // VocabularyRemap). Smoothing spreads ε over the classes the model can produce; over all of them it would put
            // mass on a log-probability of −∞ and the loss would be infinite.
            using var first = flatLogits[0];
            using var never = first.isneginf();
            if (never.any().item<bool>()) return SmoothedOverProducible(flatLogits, flatLabels, padId, labelSmoothing, never);
        }
        return nn.functional.cross_entropy(flatLogits, flatLabels, ignore_index: padId, label_smoothing: labelSmoothing);
    }

    // cross_entropy's label smoothing — (1 − ε)·(−log p_label) + ε·mean(−log p) over the classes, averaged over non-pad
    // labels — with the mean taken over the classes not in never (−∞ in every row).
    private static Tensor SmoothedOverProducible(Tensor logits, Tensor labels, int padId, double epsilon, Tensor never)
    {
        using var scope = NewDisposeScope();
        var logProbs = logits.log_softmax(-1);
        var keep = labels.ne(padId);
        var picked = logProbs.gather(1, labels.masked_fill(keep.logical_not(), 0).unsqueeze(1)).squeeze(1);
        var producible = never.logical_not();
        var smooth = logProbs.masked_fill(never.unsqueeze(0), 0).sum(-1).div(producible.sum());
        var perLabel = picked.mul(1 - epsilon).add(smooth.mul(epsilon)).neg();
        return perLabel.masked_select(keep).mean().MoveToOuterDisposeScope();
    }
}
