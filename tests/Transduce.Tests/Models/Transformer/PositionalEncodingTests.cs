using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

public sealed class PositionalEncodingTests
{
    [Fact]
    public void PositionalEncodingFollowsTheBookFormulaAndHonoursTheOffset()
    {
        using var pe = new PositionalEncoding(Spec(hidden: 8, maxPositions: 50));
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

    /// <summary>A spec whose positions are as given (the rest is any valid size).</summary>
    internal static TransformerSpec Spec(int hidden, int maxPositions, SinusoidLayout layout = SinusoidLayout.Interleaved,
        PositionKind kind = PositionKind.Sinusoidal, int offset = 0) => new TransformerSpec
    {
        Hidden = hidden, Heads = 1, FfnSize = 4, EncoderLayers = 1, DecoderLayers = 1, SourceVocabulary = 4, TargetVocabulary = 4,
        MaxPositions = maxPositions, Positions = kind, SinusoidLayout = layout, PositionOffset = offset,
    }.Validate();

    [Fact]
    public void AnOffsetReadsTheTableFromThatRowAndLearnedPositionsAreAParameter()
    {
        using var plain = new PositionalEncoding(Spec(8, 20));
        using var shifted = new PositionalEncoding(Spec(8, 18, offset: 2));
        using var x = zeros(1, 3, 8);
        using var a = plain.call(x.clone(), 5);
        using var b = shifted.call(x.clone(), 3);
        Assert.True(a.allclose(b, 0, 0), "position p with offset 2 must read table row p + 2");
        using var tooLong = zeros(1, 17, 8);
        Assert.Throws<ArgumentException>(() => shifted.call(tooLong, 2)); // 19 positions, the spec allows 18

        using var learned = new PositionalEncoding(Spec(8, 10, kind: PositionKind.Learned, offset: 2));
        var weight = Assert.Single(learned.named_parameters());
        Assert.Equal("weight", weight.name);
        Assert.Equal(new long[] { 12, 8 }, weight.parameter.shape);
        using var y = learned.call(zeros(1, 1, 8), 4);
        Assert.True(y[0, 0].allclose(weight.parameter[6], 0, 0), "learned position 4 with offset 2 reads row 6");

        using var none = new PositionalEncoding(Spec(8, 10, kind: PositionKind.None));
        Assert.Empty(none.parameters());
        using var ones1 = ones(1, 2, 8);
        Assert.True(none.call(ones1.clone(), 0).allclose(ones1, 0, 0), "no positions adds nothing");
    }
}
