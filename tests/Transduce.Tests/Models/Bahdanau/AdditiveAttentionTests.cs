using Transduce.Models;
using Transduce.Models.Bahdanau;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Bahdanau;

public sealed class AdditiveAttentionTests
{
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
}
