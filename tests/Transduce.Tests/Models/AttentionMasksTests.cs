using Transduce.Models;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

public sealed class AttentionMasksTests
{
    [Fact]
    public void MaskedSoftmaxGivesPaddedKeysExactlyZeroAndSumsToOneOverValidKeys()
    {
        manual_seed(1);
        using var scores = randn(2, 1, 3, 5) * 10;
        using var lengths = tensor(new long[] { 2, 4 });
        using var mask = AttentionMasks.FromValidLengths(lengths, 5);
        using var w = AttentionMasks.MaskedSoftmax(scores, mask);
        Assert.Equal(0f, w[0, .., .., TensorIndex.Slice(2, null)].abs().sum().item<float>());
        Assert.Equal(0f, w[1, .., .., 4].abs().sum().item<float>());
        using var sums = w.sum(-1);
        Assert.True(sums.allclose(ones_like(sums), atol: 1e-6));
    }

    [Fact]
    public void CausalMaskLetsEachQuerySeeItsPastOnlyAtAnyOffset()
    {
        using var full = AttentionMasks.Causal(3, 0);
        Assert.Equal(new[] { true, false, false, true, true, false, true, true, true }, full.data<bool>().ToArray());
        using var step = AttentionMasks.Causal(1, 4);
        Assert.Equal(new long[] { 1, 1, 1, 5 }, step.shape);
        Assert.All(step.data<bool>().ToArray(), Assert.True);
    }
}
