using Transduce.Data;
using Transduce.Text;

namespace Transduce.Tests.Data;

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

public sealed class BucketedBatchingTests
{
    [Fact]
    public void BucketedEpochCoversEveryPairOnceWithinLimitsAndIsSeeded()
    {
        var rng = new Random(1);
        var src = Enumerable.Range(0, 1000).Select(_ => rng.Next(1, 40)).ToArray();
        var tgt = src.Select(n => Math.Max(1, n + rng.Next(-3, 4))).ToArray(); // target lengths follow the source, as in real corpora
        var batches = Batching.BucketedEpoch(src, tgt, batchSize: 32, maxTokens: 300, seed: 3, epoch: 1);
        Assert.Equal(Enumerable.Range(0, 1000), batches.SelectMany(b => b).Order());
        foreach (var b in batches)
        {
            Assert.True(b.Length <= 32);
            int widest = b.Max(i => Math.Max(src[i], tgt[i]));
            Assert.True(b.Length == 1 || widest * b.Length <= 300, $"batch of {b.Length} × {widest} exceeds 300 tokens");
        }
        Assert.Equal(batches, Batching.BucketedEpoch(src, tgt, 32, 300, 3, 1));
        Assert.NotEqual(batches, Batching.BucketedEpoch(src, tgt, 32, 300, 3, 2));

        // Far less padding than plain shuffled batches.
        static double Padding(IEnumerable<int[]> bs, int[] len) =>
            1 - bs.Sum(b => b.Sum(i => (double)len[i])) / bs.Sum(b => (double)b.Length * b.Max(i => len[i]));
        var plain = Batching.Chunk(Batching.EpochOrder(1000, 3, 1), 32).ToList();
        Assert.True(Padding(batches, tgt) < Padding(plain, tgt) / 2);
    }
}
