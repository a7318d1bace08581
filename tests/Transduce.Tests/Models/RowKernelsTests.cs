using Transduce.Models;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

/// <summary>The managed kernels give what libtorch gives on the same numbers.</summary>
public sealed class RowKernelsTests
{
    [Fact]
    public void ArgMaxRowsPicksWhatLibtorchsMaxPicks()
    {
        manual_seed(9);
        var scores = randn(7, 1003);
        scores[1, 500] = scores[1].max() + 1;                      // a clear winner late in the row
        scores[1, 700] = scores[1, 500];                           // a tie: the first one wins
        scores[2] = full(1003, float.NegativeInfinity);            // every token banned
        scores[3, 9] = float.NaN;                                  // NaN counts as the largest
        scores[3, 20] = float.NaN;
        scores[4, 1002] = 100f;                                    // in the scalar tail
        scores[5] = zeros(1003);                                   // all equal
        scores[6, 0] = 100f;
        var picks = RowKernels.ArgMaxRows(scores);
        Assert.NotNull(picks);
        Assert.Equal(scores.max(-1).indexes.data<long>().ToArray(), picks);
        Assert.Equal(new long[] { 500, 0, 9, 1002, 0, 0 }, picks![1..]);
    }

    [Fact]
    public void ArgMaxRowsHandlesShortRowsAndDeclinesOtherTensors()
    {
        var short3 = tensor(new float[] { 1, 3, 2, -1, -5, -1 }).reshape(2, 3);
        Assert.Equal(new long[] { 1, 0 }, RowKernels.ArgMaxRows(short3));
        Assert.Null(RowKernels.ArgMaxRows(short3.t()));                        // not contiguous
        Assert.Null(RowKernels.ArgMaxRows(short3.to_type(ScalarType.Float64)));
        Assert.Null(RowKernels.ArgMaxRows(zeros(2, 3, 4)));
    }
}
