namespace Transduce.Data;

/// <summary>
/// A uniform sample of at most <c>size</c> items of a stream of unknown length, in one pass (Vitter's algorithm R under a
/// seeded generator: the same stream and seed give the same sample). A stream of at most <c>size</c> items is kept whole,
/// in order.
/// </summary>
internal sealed class ReservoirSample<T>(int size, int seed)
{
    private readonly List<T> items = [];
    private readonly Random random = new(seed);
    private long seen;

    /// <summary>Items offered so far.</summary>
    public long Seen => seen;

    /// <summary>The sample.</summary>
    public IReadOnlyList<T> Items => items;

    /// <summary>Offers the next item of the stream.</summary>
    public void Add(T item)
    {
        seen++;
        if (items.Count < size) items.Add(item);
        else if (random.NextInt64(seen) is long j && j < size) items[(int)j] = item;
    }

    /// <summary>The sample of <paramref name="stream"/>.</summary>
    public static IReadOnlyList<T> Of(IEnumerable<T> stream, int size, int seed)
    {
        var sample = new ReservoirSample<T>(size, seed);
        foreach (var item in stream) sample.Add(item);
        return sample.Items;
    }
}
