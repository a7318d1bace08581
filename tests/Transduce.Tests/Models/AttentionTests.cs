using Transduce.Models;
using Transduce.Models.Bahdanau;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

public sealed class AttentionTests
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

    [Fact]
    public void AdditiveAttentionWeightsSumToOneOverValidKeysAndIgnorePadding()
    {
        manual_seed(2);
        using var attention = new AdditiveAttention(4, 6, 8, dropout: 0);
        attention.eval();
        using var q = randn(2, 3, 4);
        using var kv = randn(2, 5, 6);
        using var lengths = tensor(new long[] { 5, 2 });
        using var mask = AttentionMasks.FromValidLengths(lengths, 5);
        var (output, weights) = attention.call(q, kv, kv, mask);
        using (output)
        using (weights)
        {
            Assert.Equal(new long[] { 2, 3, 6 }, output.shape);
            Assert.Equal(0f, weights[1, .., TensorIndex.Slice(2, null)].abs().sum().item<float>());
            using var sums = weights.sum(-1);
            Assert.True(sums.allclose(ones_like(sums), atol: 1e-6));
            // Changing padded keys/values of row 1 leaves its output unchanged.
            using var changed = kv.clone();
            changed[1, TensorIndex.Slice(2, null)] = randn(3, 6) * 100;
            var (output2, weights2) = attention.call(q, changed, changed, mask);
            using (output2) using (weights2)
                Assert.True(output[1].allclose(output2[1], atol: 1e-6));
        }
    }

    [Fact]
    public void MultiHeadAttentionShapesAndWeights()
    {
        manual_seed(3);
        using var mha = new MultiHeadAttention(16, heads: 4, dropout: 0, bias: true);
        mha.eval();
        using var scope = NewDisposeScope();
        var x = randn(2, 3, 16);
        var mem = randn(2, 7, 16);
        var mask = AttentionMasks.FromValidLengths(tensor(new long[] { 7, 3 }), 7);
        var y = mha.call(x, mem, mem, mask);
        Assert.Equal(new long[] { 2, 3, 16 }, y.shape);
        var q = mha.ProjectQuery(x);
        var (k, v) = mha.ProjectKeyValue(mem, mem);
        var same = mha.Attend(q, k, v, mask, out var w);
        Assert.True(same.allclose(y, atol: 1e-6));
        Assert.Equal(new long[] { 2, 4, 3, 7 }, w.shape);
        Assert.Equal(0f, w[1, .., .., TensorIndex.Slice(3, null)].abs().sum().item<float>());
        var sums = w.sum(-1);
        Assert.True(sums.allclose(ones_like(sums), atol: 1e-6));
    }

    [Fact]
    public void PositionalEncodingFollowsTheBookFormulaAndHonoursTheOffset()
    {
        using var pe = new PositionalEncoding(8, dropout: 0, maxPositions: 50);
        pe.eval();
        using var x = zeros(1, 4, 8);
        using var p = pe.call(x, 10);
        // Position 12, dimension pair i=1: sin(12 / 10000^(2/8)), cos(…)
        double angle = 12 / Math.Pow(10000, 2.0 / 8);
        Assert.Equal(Math.Sin(angle), p[0, 2, 2].item<float>(), 5);
        Assert.Equal(Math.Cos(angle), p[0, 2, 3].item<float>(), 5);
        using var tooLong = zeros(1, 60, 8);
        Assert.Throws<ArgumentException>(() => pe.call(tooLong, 0));
    }
}
