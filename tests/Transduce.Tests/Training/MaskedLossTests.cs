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
}
