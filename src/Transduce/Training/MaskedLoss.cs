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

    /// <summary>
    /// Logits one chunk of the fused loss turns into float32 probabilities (4 MB; 128 rows of an 8,000-word vocabulary).
    /// Measured with <c>Transduce.Bench train-parts</c>: a quarter of this was as fast on an idle machine and much slower
    /// on a loaded one (each chunk is a dozen parallel operations, each a barrier of the intra-op threads).
    /// </summary>
    internal const long FusedChunkValues = 1 << 20;

    /// <summary>
    /// <see cref="MaskedCrossEntropy"/> and its backward pass in one: returns the loss and sends
    /// d loss / d logits ÷ <paramref name="accumulate"/> into <paramref name="logits"/>' graph. With <paramref name="fused"/>
    /// the gradient is written directly, a chunk of rows at a time — for each row, softmax(z) − (1 − ε)·onehot(label) − ε/V,
    /// over the number of non-pad labels — so the float32 copy of the (tokens × vocabulary) logits, its log-softmax and
    /// their gradients are never materialised whole, and the bfloat16 logits are read once and their gradient written
    /// once. The value is the same sum as <see cref="MaskedCrossEntropy"/>'s (only the order of float additions differs). A
    /// model with output rows it can never produce (−∞ logits, smoothed over the producible classes) takes autograd's path.
    /// </summary>
    /// <param name="logits">(batch, steps, vocabulary), float32 or bfloat16, part of an autograd graph.</param>
    /// <param name="labels">(batch, steps), int64.</param>
    /// <param name="padId">The padding id to ignore.</param>
    /// <param name="labelSmoothing">Label smoothing ε (0 for none).</param>
    /// <param name="accumulate">Mini-batches summed per update: the gradient is divided by it; the loss returned is not.</param>
    /// <param name="fused">False for autograd's log-softmax and cross-entropy (the reference path).</param>
    /// <param name="chunkValues">Logits turned into probabilities at a time (rows × vocabulary, at least one row).</param>
    public static float Backward(Tensor logits, Tensor labels, int padId, double labelSmoothing, int accumulate, bool fused, long chunkValues = FusedChunkValues)
    {
        using var scope = NewDisposeScope();
        long vocab = logits.shape[^1];
        var flatLogits = logits.reshape(-1, vocab);
        long rows = flatLogits.shape[0];
        bool fusable = fused && rows > 0 && logits.dtype is ScalarType.Float32 or ScalarType.BFloat16;
        if (fusable && labelSmoothing > 0)
            fusable = !flatLogits[0].isneginf().any().item<bool>();
        if (!fusable)
        {
            var loss = MaskedCrossEntropy(logits, labels, padId, labelSmoothing);
            (accumulate == 1 ? loss : loss / accumulate).backward();
            return loss.item<float>();
        }
        // The gradient is computed here, not recorded: under grad mode, copying the logits into the working buffer made it
        // part of the graph, and every in-place step after it saved tensors in nodes that outlived the step (about three
        // logits' worth leaked per call: BENCHMARKS.md, "A faster bf16 step").
        Tensor grad, rowLosses, keep;
        long count;
        using (no_grad())
            (grad, rowLosses, keep, count) = FusedGradient(flatLogits, labels, padId, labelSmoothing, accumulate, chunkValues);
        var total = rowLosses.masked_select(keep).sum(ScalarType.Float64).item<double>() / count;
        logits.backward([grad.reshape(logits.shape)], create_graph: false, retain_graph: false);
        return (float)total;
    }

    // The fused path's per-row losses and d loss / d logits (flattened to rows × vocabulary), chunk by chunk; run without grad.
    private static (Tensor Grad, Tensor RowLosses, Tensor Keep, long Count) FusedGradient(Tensor flatLogits, Tensor labels, int padId,
        double labelSmoothing, int accumulate, long chunkValues)
    {
        long rows = flatLogits.shape[0], vocab = flatLogits.shape[1];
        var flatLabels = labels.reshape(-1, 1);
        var keep = flatLabels.ne(padId);
        long count = keep.sum().item<long>();
        var safeLabels = flatLabels.masked_fill(keep.logical_not(), 0);
        // Each row's weight in the mean (0 for padding) over the accumulated batches; a batch of padding only gives NaN, as cross_entropy does.
        var weights = keep.to_type(ScalarType.Float32).div_((double)count * accumulate);
        var grad = empty_like(flatLogits);
        var rowLosses = empty(rows, 1, ScalarType.Float32);
        double epsilon = labelSmoothing;
        long chunk = Math.Min(rows, Math.Max(1, chunkValues / vocab));
        // One float32 working buffer for every chunk, made before the loop: no large block is allocated and freed per chunk.
        var work = empty(chunk, vocab, ScalarType.Float32);
        for (long start = 0; start < rows; start += chunk)
        {
            using var inner = NewDisposeScope();
            long n = Math.Min(chunk, rows - start);
            var z = work.narrow(0, 0, n);
            z.copy_(flatLogits.narrow(0, start, n));
            var label = safeLabels.narrow(0, start, n);
            var weight = weights.narrow(0, start, n);
            // Shifted by the row's maximum: −log p_label = log Σ exp(z) − z_label, the smoothing term
            // −mean_k log p_k = log Σ exp(z) − mean_k z_k, both unchanged by the shift.
            z.sub_(z.amax([1L], keepdim: true));
            var rowLoss = z.gather(1, label).mul_(-(1 - epsilon));
            if (epsilon > 0) rowLoss.sub_(z.mean([1L], keepdim: true).mul_(epsilon));
            var p = z.exp_();
            var sum = p.sum(1, keepdim: true);
            rowLosses.narrow(0, start, n).copy_(rowLoss.add_(sum.log()));
            // weight · (softmax − (1 − ε)·onehot − ε/V)
            p.mul_(weight / sum);
            p.scatter_add_(1, label, weight * -(1 - epsilon));
            if (epsilon > 0) p.sub_(weight * (epsilon / vocab));
            grad.narrow(0, start, n).copy_(p);
        }
        return (grad, rowLosses, keep, count);
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
