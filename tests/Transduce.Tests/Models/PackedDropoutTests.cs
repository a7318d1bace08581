using Transduce.Models;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

public sealed class PackedDropoutTests
{
    [Fact]
    public void DropsTheRightShareScalesTheRestAndKeepsTheMean()
    {
        using var dropout = new PackedDropout(0.1);
        dropout.train();
        manual_seed(4);
        using var x = ones(1000, 1001);   // an odd count: the last draw is split
        using var y = dropout.call(x);
        using var zeros = y.eq(0);
        double droppedShare = zeros.to_type(ScalarType.Float64).mean().item<double>();
        Assert.InRange(droppedShare, 0.098, 0.102);
        Assert.Equal(0.100006103515625, dropout.Probability);
        using var kept = y.masked_select(zeros.logical_not());
        Assert.Equal(1 / (1 - dropout.Probability), kept.max().item<float>(), 5);
        Assert.Equal(kept.min().item<float>(), kept.max().item<float>());
        Assert.InRange(y.mean().item<float>(), 0.997f, 1.003f);
    }

    [Fact]
    public void TheSameSeedGivesTheSameMaskAndEvalModeChangesNothing()
    {
        using var dropout = new PackedDropout(0.3);
        dropout.train();
        using var x = randn(37, 11);
        manual_seed(9);
        using var a = dropout.call(x);
        using var b = dropout.call(x);
        manual_seed(9);
        using var c = dropout.call(x);
        Assert.True(a.eq(c).all().item<bool>());
        Assert.False(a.eq(b).all().item<bool>());
        dropout.eval();
        using var d = dropout.call(x);
        Assert.True(d.eq(x).all().item<bool>());
    }

    [Fact]
    public void GradientsPassOnlyThroughKeptElements()
    {
        using var dropout = new PackedDropout(0.5);
        dropout.train();
        using var x = ones(64, 64).requires_grad_();
        using var y = dropout.call(x);
        y.sum().backward();
        Assert.True(x.grad!.eq(y.detach()).all().item<bool>());
    }

    [Fact]
    public void AProbabilityOutsideZeroToOneIsAClearError()
    {
        Assert.Contains("[0, 1)", Assert.Throws<ArgumentException>(() => new PackedDropout(1.0)).Message);
    }
}
