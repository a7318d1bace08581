using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

public sealed class PositionalEncodingTests
{
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
