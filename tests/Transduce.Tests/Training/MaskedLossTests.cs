using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

public sealed class MaskedLossTests
{
    [Fact]
    public void LogitsAtPaddedPositionsChangeNeitherLossNorGradient()
    {
        const int pad = 0;
        manual_seed(5);
        using var labels = tensor(new long[] { 4, 5, 2, pad, pad, 6, 2, pad, pad, pad }, [2, 5]);
        using var baseLogits = randn(2, 5, 9);
        using var mask = labels.ne(pad).unsqueeze(-1);
        using var noise = randn(2, 5, 9) * 100;
        using var changed = where(mask, baseLogits, baseLogits + noise);

        using var a = baseLogits.detach().requires_grad_(true);
        using var b = changed.detach().requires_grad_(true);
        using var la = Seq2SeqLoss.MaskedCrossEntropy(a, labels, pad);
        using var lb = Seq2SeqLoss.MaskedCrossEntropy(b, labels, pad);
        Assert.Equal(la.item<float>(), lb.item<float>(), 5);
        la.backward();
        lb.backward();
        Assert.True(allclose(a.grad!, b.grad!, atol: 1e-7));
        // Padded positions get no gradient at all.
        using var padGrad = a.grad!.masked_select(mask.logical_not().expand_as(a));
        Assert.Equal(0f, padGrad.abs().max().item<float>());
    }

    [Fact]
    public void LossIsTheMeanOverNonPadTokens()
    {
        const int pad = 0;
        using var labels = tensor(new long[] { 1, 2, pad }, [1, 3]);
        using var logits = zeros(1, 3, 4); // uniform: every token costs ln 4
        using var loss = Seq2SeqLoss.MaskedCrossEntropy(logits, labels, pad);
        Assert.Equal(Math.Log(4), loss.item<float>(), 5);
    }

    [Fact]
    public void LabelSmoothingMixesTheTargetWithTheUniformDistributionOverNonPadTokens()
    {
        // With ε, each non-pad position costs (1 − ε)·(−log p_y) + ε·mean_k(−log p_k); padded positions still cost nothing.
        const int pad = 0;
        const double epsilon = 0.1;
        var row0 = new float[] { 0.5f, 2f, -1f, 0.25f };
        var row1 = new float[] { 1f, -0.5f, 0f, 3f };
        using var logits = tensor(row0.Concat(row1).Concat(new float[] { 9, 9, 9, 9 }).ToArray(), [1, 3, 4]);
        using var labels = tensor(new long[] { 1, 3, pad }, [1, 3]);
        static double Cost(float[] z, int y, double eps)
        {
            double logSum = Math.Log(z.Sum(v => Math.Exp(v)));
            var nll = z.Select(v => logSum - v).ToArray();
            return (1 - eps) * nll[y] + eps * nll.Average();
        }
        double expected = (Cost(row0, 1, epsilon) + Cost(row1, 3, epsilon)) / 2;
        using var smoothed = Seq2SeqLoss.MaskedCrossEntropy(logits, labels, pad, epsilon);
        Assert.Equal(expected, smoothed.item<float>(), 5);
        using var plain = Seq2SeqLoss.MaskedCrossEntropy(logits, labels, pad);
        Assert.Equal((Cost(row0, 1, 0) + Cost(row1, 3, 0)) / 2, plain.item<float>(), 5);
        Assert.True(smoothed.item<float>() > plain.item<float>()); // the targets are already the likeliest tokens
    }

    [Fact]
    public void LabelSmoothingLeavesOutClassesTheModelCanNeverProduce()
    {
        // A converted model's duplicate <bos> output row has bias −∞: smoothing over the other classes keeps the loss
        // finite, and equals the plain formula over the vocabulary without that class.
        const int pad = 0;
        const double epsilon = 0.1;
        var row0 = new float[] { 0.5f, float.NegativeInfinity, 2f, -1f, 0.25f };
        var row1 = new float[] { 1f, float.NegativeInfinity, -0.5f, 0f, 3f };
        using var logits = tensor(row0.Concat(row1).Concat(new float[] { 9, float.NegativeInfinity, 9, 9, 9 }).ToArray(), [1, 3, 5]);
        using var labels = tensor(new long[] { 2, 4, pad }, [1, 3]);
        static double Cost(float[] z, int y)
        {
            var producible = z.Where(v => !float.IsNegativeInfinity(v)).ToArray();
            double logSum = Math.Log(producible.Sum(v => Math.Exp(v)));
            return (1 - epsilon) * (logSum - z[y]) + epsilon * producible.Average(v => logSum - v);
        }
        using var smoothed = Seq2SeqLoss.MaskedCrossEntropy(logits, labels, pad, epsilon);
        Assert.True(float.IsFinite(smoothed.item<float>()));
        Assert.Equal((Cost(row0, 2) + Cost(row1, 4)) / 2, smoothed.item<float>(), 5);
    }
}
