using Transduce.Models;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

public sealed class MultiHeadAttentionTests
{
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
}
