using Transduce.Data;

namespace Transduce.Tests.Training;

public sealed class BatchingTests
{
    private static readonly SpecialIds Ids = new(Pad: 0, Bos: 1, Eos: 2);

    [Fact]
    public void WithEosAppendsEosAndTruncatesLikeD2l()
    {
        Assert.Equal([7, 8, 2], Batching.WithEos([7, 8], 2, null));
        Assert.Equal([7, 8, 2], Batching.WithEos([7, 8], 2, 3));
        // Too long: cut to max steps, losing <eos> as the book's pad_or_trim does.
        Assert.Equal([7, 8, 9], Batching.WithEos([7, 8, 9, 10], 2, 3));
    }

    [Fact]
    public void BatchHasTeacherForcingShiftValidLengthsAndPadding()
    {
        using var b = Batching.Build([new EncodedPair([5, 6, 7], [8]), new EncodedPair([9], [10, 11, 12])], Ids, null);
        Assert.Equal(new long[] { 5, 6, 7, 2, 9, 2, 0, 0 }, b.Source.data<long>().ToArray());
        Assert.Equal(new long[] { 4, 2 }, b.SourceValidLengths.data<long>().ToArray());
        Assert.Equal(new long[] { 8, 2, 0, 0, 10, 11, 12, 2 }, b.TargetOutput.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 8, 2, 0, 1, 10, 11, 12 }, b.TargetInput.data<long>().ToArray());
        Assert.Equal(6, b.TargetTokens);
        Assert.Equal(8, b.TargetPositions);
    }

    [Fact]
    public void EpochOrderIsASeededPermutationThatChangesPerEpoch()
    {
        var a = Batching.EpochOrder(100, seed: 4, epoch: 1);
        Assert.Equal(Enumerable.Range(0, 100), a.Order());
        Assert.Equal(a, Batching.EpochOrder(100, seed: 4, epoch: 1));
        Assert.NotEqual(a, Batching.EpochOrder(100, seed: 4, epoch: 2));
        Assert.NotEqual(a, Batching.EpochOrder(100, seed: 5, epoch: 1));
        Assert.Equal(new[] { 3, 3, 1 }, Batching.Chunk([0, 1, 2, 3, 4, 5, 6], 3).Select(c => c.Length));
    }
}
