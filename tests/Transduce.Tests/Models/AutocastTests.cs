using Transduce.Models;
using Transduce.Native;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

public sealed class AutocastTests
{
    [Fact]
    public void LinearLayersComputeInBf16InsideTheScopeAndInFloat32Outside()
    {
        using var linear = nn.Linear(8, 4);
        using var x = randn(3, 8);
        using (Autocast.Enter(ScalarType.BFloat16))
        {
            Assert.True(Autocast.IsActive);
            using var inside = linear.call(x);
            Assert.Equal(ScalarType.BFloat16, inside.dtype);
        }
        Assert.False(Autocast.IsActive);
        using var outside = linear.call(x);
        Assert.Equal(ScalarType.Float32, outside.dtype);
        Assert.Equal(ScalarType.Float32, linear.weight!.dtype);
    }

    [Fact]
    public void Float32ScopeChangesNothingAndNestedScopesRestoreTheOuterOne()
    {
        using var linear = nn.Linear(8, 4);
        using var x = randn(3, 8);
        using (Autocast.Enter(ScalarType.Float32))
        using (var y = linear.call(x))
            Assert.Equal(ScalarType.Float32, y.dtype);
        using (Autocast.Enter(ScalarType.BFloat16))
        {
            using (Autocast.Enter(ScalarType.BFloat16)) { }
            Assert.True(Autocast.IsActive);
            using var y = linear.call(x);
            Assert.Equal(ScalarType.BFloat16, y.dtype);
        }
        Assert.False(Autocast.IsActive);
    }

    [Fact]
    public void EachScopeSeesTheWeightsAsTheyAreNowNotACachedCopy()
    {
        // libtorch caches the bf16 copy of a weight within a scope; leaving the scope must drop it, or a training step
        // would compute with the weights from before the previous optimiser update.
        using var linear = nn.Linear(8, 4, hasBias: false);
        using var x = ones(1, 8);
        float Output()
        {
            using var _ = Autocast.Enter(ScalarType.BFloat16);
            using var y = linear.call(x);
            return y.sum().to_type(ScalarType.Float32).item<float>();
        }
        float before = Output();
        using (no_grad()) linear.weight!.add_(1.0);
        float after = Output();
        Assert.Equal(before + 32, after, 0.5);
    }

    [Fact]
    public void GradientsReachTheFloat32WeightsAsFloat32()
    {
        using var linear = nn.Linear(8, 4);
        using var x = randn(5, 8);
        Tensor y;
        using (Autocast.Enter(ScalarType.BFloat16)) y = linear.call(x);
        using (y)
        using (var loss = y.to_type(ScalarType.Float32).square().mean())
            loss.backward();
        Assert.Equal(ScalarType.Float32, linear.weight!.grad!.dtype);
        Assert.True(linear.weight.grad.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void SoftmaxOfBf16ScoresIsComputedAndReturnedInFloat32()
    {
        using var scores = randn(2, 4, 3, 5).to_type(ScalarType.BFloat16);
        using var mask = AttentionMasks.FromValidLengths(tensor(new long[] { 5, 2 }), 5);
        using var weights = AttentionMasks.MaskedSoftmax(scores, mask);
        Assert.Equal(ScalarType.Float32, weights.dtype);
        using var expected = AttentionMasks.MaskedSoftmax(scores.to_type(ScalarType.Float32), mask);
        Assert.True(weights.allclose(expected));
        Assert.Equal(0f, weights[1, .., .., 2..].abs().max().item<float>());
    }

    [Fact]
    public void LossOfBf16LogitsIsTheFloat32LossOfTheSameValues()
    {
        using var logits = randn(2, 3, 7).to_type(ScalarType.BFloat16);
        using var labels = tensor(new long[] { 1, 2, 0, 4, 0, 0 }).reshape(2, 3);
        using var loss = Seq2SeqLoss.MaskedCrossEntropy(logits, labels, 0, 0.1);
        using var expected = Seq2SeqLoss.MaskedCrossEntropy(logits.to_type(ScalarType.Float32), labels, 0, 0.1);
        Assert.Equal(ScalarType.Float32, loss.dtype);
        Assert.Equal(expected.item<float>(), loss.item<float>());
    }

    [Fact]
    public void Int8IsForDecodingNotForAutocast()
    {
        Assert.Throws<ArgumentException>(() => Autocast.Enter(ScalarType.Int8));
    }
}
