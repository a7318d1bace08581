using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Data;

/// <summary>A sentence pair as token ids, without special tokens.</summary>
/// <param name="Source">Source token ids.</param>
/// <param name="Target">Target token ids.</param>
internal sealed record EncodedPair(int[] Source, int[] Target);

/// <summary>
/// One mini-batch as tensors (d2l §10.5): sources with <c>&lt;eos&gt;</c> appended, truncated and padded;
/// decoder inputs that start with <c>&lt;bos&gt;</c> (teacher forcing); labels shifted by one.
/// </summary>
internal sealed class Seq2SeqBatch : IDisposable
{
    /// <summary>Source ids, (batch, source steps), int64.</summary>
    public required Tensor Source { get; init; }

    /// <summary>Number of non-pad source positions per row, (batch), int64.</summary>
    public required Tensor SourceValidLengths { get; init; }

    /// <summary>Decoder inputs: <c>&lt;bos&gt;</c> followed by the labels but the last, (batch, target steps).</summary>
    public required Tensor TargetInput { get; init; }

    /// <summary>Labels: target ids with <c>&lt;eos&gt;</c>, padded, (batch, target steps).</summary>
    public required Tensor TargetOutput { get; init; }

    /// <summary>Rows in the batch.</summary>
    public required int Size { get; init; }

    /// <summary>Non-pad label tokens (what the loss averages over).</summary>
    public required int TargetTokens { get; init; }

    /// <summary>Padded label positions (batch × steps).</summary>
    public required int TargetPositions { get; init; }

    /// <inheritdoc />
    public void Dispose()
    {
        Source.Dispose();
        SourceValidLengths.Dispose();
        TargetInput.Dispose();
        TargetOutput.Dispose();
    }
}

/// <summary>
/// Corpora of a run with their weights (<c>data.corpora</c>): the pairs of corpus <c>k</c> are the <c>Pairs[k]</c> after
/// those of the corpora before it.
/// </summary>
/// <param name="Pairs">Pairs of each corpus, in order.</param>
/// <param name="Weights">Weight of each corpus: how often an epoch sees each of its pairs on average.</param>
internal sealed record CorpusWeights(IReadOnlyList<int> Pairs, IReadOnlyList<double> Weights)
{
    /// <summary>
    /// The pairs of <paramref name="indices"/> as one epoch sees them: a pair of a corpus of weight <c>w</c> appears
    /// ⌊w⌋ times, and once more with probability w − ⌊w⌋ (drawn under <paramref name="seed"/> and <paramref name="draw"/>),
    /// so weight 2 doubles a corpus and weight 0.5 samples half of it, afresh each epoch.
    /// </summary>
    public IEnumerable<int> Sample(IEnumerable<int> indices, int seed, int draw)
    {
        var starts = new long[Pairs.Count + 1];
        for (int k = 0; k < Pairs.Count; k++) starts[k + 1] = starts[k] + Pairs[k];
        var random = new Random(unchecked(seed * 92_821 + draw * 31 + 7));
        foreach (int i in indices)
        {
            int k = Array.BinarySearch(starts, i);
            k = k < 0 ? ~k - 1 : k;
            while (k + 1 < Pairs.Count && starts[k + 1] == i) k++;   // skip empty corpora
            double w = Weights[k];
            int copies = (int)Math.Floor(w);
            if (random.NextDouble() < w - copies) copies++;
            for (int c = 0; c < copies; c++) yield return i;
        }
    }
}

/// <summary>Builds padded batches and shuffled mini-batch orders.</summary>
internal static class Batching
{
    /// <summary>
    /// d2l's <c>pad_or_trim</c>: appends <c>&lt;eos&gt;</c>, then cuts to <paramref name="maxSteps"/> (when given).
    /// A cut sequence loses its <c>&lt;eos&gt;</c>, exactly as in the book.
    /// </summary>
    public static int[] WithEos(int[] ids, int eos, int? maxSteps) => Frame(ids, new SpecialIds(0, 0, eos), maxSteps);

    /// <summary>
    /// A sequence as batching frames it: <see cref="WithEos"/> when <paramref name="specials"/> appends the end token,
    /// else the family's whole sequence cut to <paramref name="maxSteps"/>.
    /// </summary>
    public static int[] Frame(int[] ids, SpecialIds specials, int? maxSteps)
    {
        if (!specials.AppendEos) return maxSteps is int cut && ids.Length > cut ? ids[..cut] : ids;
        int length = maxSteps is int m ? Math.Min(ids.Length + 1, m) : ids.Length + 1;
        var result = new int[length];
        Array.Copy(ids, result, Math.Min(ids.Length, length));
        if (length == ids.Length + 1) result[^1] = specials.Eos;
        return result;
    }

    /// <summary>The length of a sequence of <paramref name="length"/> ids as <see cref="Frame"/> frames it, without framing it.</summary>
    public static int FramedLength(int length, SpecialIds specials, int? maxSteps)
    {
        int framed = specials.AppendEos ? length + 1 : length;
        return maxSteps is int cut ? Math.Min(framed, cut) : framed;
    }

    /// <summary>
    /// The framed lengths (<see cref="FramedLength"/>) of every pair's source and target; for a source that knows its
    /// lengths (<see cref="IPairLengths"/>: pairs in mapped shards) they are views computed when read, with no copy and
    /// without reading any ids.
    /// </summary>
    public static (IReadOnlyList<int> Source, IReadOnlyList<int> Target) FramedLengths(IReadOnlyList<EncodedPair> pairs, SpecialIds specials, int? maxSteps)
    {
        if (pairs is IPairLengths known)
            return (new FramedView(pairs.Count, i => FramedLength(known.SourceLength(i), specials, maxSteps)),
                new FramedView(pairs.Count, i => FramedLength(known.TargetLength(i), specials, maxSteps)));
        var source = new int[pairs.Count];
        var target = new int[pairs.Count];
        for (int i = 0; i < pairs.Count; i++)
        {
            source[i] = FramedLength(pairs[i].Source.Length, specials, maxSteps);
            target[i] = FramedLength(pairs[i].Target.Length, specials, maxSteps);
        }
        return (source, target);
    }

    private sealed class FramedView(int count, Func<int, int> length) : IReadOnlyList<int>
    {
        public int this[int index] => length(index);
        public int Count => count;
        public IEnumerator<int> GetEnumerator()
        {
            for (int i = 0; i < count; i++) yield return length(i);
        }
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>
    /// Builds the tensors of one batch from <paramref name="pairs"/>. Rows are padded to the longest
    /// row of the batch (after truncation to <paramref name="maxSteps"/>), which gives the same loss as
    /// padding to <paramref name="maxSteps"/> with less work: padding is masked out of the loss and packed out of the encoder.
    /// </summary>
    public static Seq2SeqBatch Build(IReadOnlyList<EncodedPair> pairs, SpecialIds ids, int? maxSteps)
    {
        if (pairs.Count == 0) throw new ArgumentException("a batch needs at least one pair", nameof(pairs));
        var sources = new int[pairs.Count][];
        var labels = new int[pairs.Count][];
        int srcSteps = 1, tgtSteps = 1, tokens = 0;
        for (int i = 0; i < pairs.Count; i++)
        {
            sources[i] = Frame(pairs[i].Source, ids, maxSteps);
            labels[i] = Frame(pairs[i].Target, ids, maxSteps);
            srcSteps = Math.Max(srcSteps, sources[i].Length);
            tgtSteps = Math.Max(tgtSteps, labels[i].Length);
            tokens += labels[i].Length;
        }

        var src = new long[pairs.Count * srcSteps];
        var lengths = new long[pairs.Count];
        var tgtIn = new long[pairs.Count * tgtSteps];
        var tgtOut = new long[pairs.Count * tgtSteps];
        Array.Fill(src, ids.Pad);
        Array.Fill(tgtIn, ids.Pad);
        Array.Fill(tgtOut, ids.Pad);
        for (int i = 0; i < pairs.Count; i++)
        {
            var s = sources[i];
            for (int t = 0; t < s.Length; t++) src[i * srcSteps + t] = s[t];
            lengths[i] = Math.Max(1, s.Length);
            var y = labels[i];
            tgtIn[i * tgtSteps] = ids.Bos;
            for (int t = 0; t < y.Length; t++)
            {
                tgtOut[i * tgtSteps + t] = y[t];
                if (t + 1 < tgtSteps) tgtIn[i * tgtSteps + t + 1] = y[t];
            }
        }

        return new Seq2SeqBatch
        {
            Source = tensor(src, [pairs.Count, srcSteps]),
            SourceValidLengths = tensor(lengths),
            TargetInput = tensor(tgtIn, [pairs.Count, tgtSteps]),
            TargetOutput = tensor(tgtOut, [pairs.Count, tgtSteps]),
            Size = pairs.Count,
            TargetTokens = tokens,
            TargetPositions = pairs.Count * tgtSteps,
        };
    }

    /// <summary>The smaller of two optional length limits (null = no limit).</summary>
    public static int? MinLimit(int? a, int? b) => a is null ? b : b is null ? a : Math.Min(a.Value, b.Value);

    /// <summary>
    /// Source tensors for inference: ids with <c>&lt;eos&gt;</c>, padded to the longest row.
    /// </summary>
    public static (Tensor Source, Tensor ValidLengths) BuildSources(IReadOnlyList<int[]> sources, SpecialIds ids, int? maxSteps)
    {
        var rows = sources.Select(s => Frame(s, ids, maxSteps)).ToArray();
        int steps = Math.Max(1, rows.Max(r => r.Length));
        var src = new long[rows.Length * steps];
        Array.Fill(src, ids.Pad);
        var lengths = new long[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            for (int t = 0; t < rows[i].Length; t++) src[i * steps + t] = rows[i][t];
            lengths[i] = Math.Max(1, rows[i].Length);
        }
        return (tensor(src, [rows.Length, steps]), tensor(lengths));
    }

    /// <summary>
    /// The row order of one epoch: a permutation of <c>0..count-1</c> that depends only on
    /// <paramref name="seed"/> and <paramref name="epoch"/>, so a resumed run sees the same batches.
    /// </summary>
    /// <param name="count">Pairs.</param>
    /// <param name="seed">Run seed.</param>
    /// <param name="epoch">1-based epoch.</param>
    /// <param name="shuffle">False keeps corpus order.</param>
    /// <param name="weights">Corpora with weights: each pair appears as many times as <see cref="CorpusWeights.Sample"/> draws.</param>
    public static int[] EpochOrder(int count, int seed, int epoch, bool shuffle = true, CorpusWeights? weights = null)
    {
        var order = weights is null ? Enumerable.Range(0, count).ToArray() : weights.Sample(Enumerable.Range(0, count), seed, epoch).ToArray();
        if (shuffle) new Random(unchecked(seed * 1_000_003 + epoch)).Shuffle(order);
        return order;
    }

    /// <summary>Pairs in one chunk of <see cref="ChunkedEpochOrder"/>: neighbours in the corpus, read from the same pages.</summary>
    public const int ShuffleChunkPairs = 100_000;

    /// <summary>Chunks shuffled together in <see cref="ChunkedEpochOrder"/>.</summary>
    public const int ShuffleWindowChunks = 10;

    /// <summary>
    /// The row order of one epoch over pairs read from files, shuffled in chunks as Marian shuffles a corpus larger than
    /// memory: the pairs are cut into chunks of <paramref name="chunkPairs"/> neighbours, the chunks are shuffled, and the
    /// pairs of each window of <paramref name="windowChunks"/> consecutive chunks (in the shuffled order) are shuffled
    /// together, so that an epoch reads one window's pages at a time. Like <see cref="EpochOrder"/> it depends only on
    /// <paramref name="seed"/> and <paramref name="epoch"/>; a corpus that fits in one window gets exactly
    /// <see cref="EpochOrder"/> (the same batches as training from memory).
    /// </summary>
    public static int[] ChunkedEpochOrder(int count, int seed, int epoch, int chunkPairs = ShuffleChunkPairs, int windowChunks = ShuffleWindowChunks,
        CorpusWeights? weights = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkPairs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(windowChunks, 1);
        if ((long)chunkPairs * windowChunks >= count) return EpochOrder(count, seed, epoch, weights: weights);
        int chunks = (int)((count + (long)chunkPairs - 1) / chunkPairs);
        var chunkOrder = Enumerable.Range(0, chunks).ToArray();
        var random = new Random(unchecked(seed * 1_000_003 + epoch * 65_537 + 17));
        random.Shuffle(chunkOrder);
        // Unweighted, the order is a permutation written in place; weighted, each chunk's pairs are drawn (their own draw).
        var order = weights is null ? new int[count] : null;
        var drawn = weights is null ? null : new List<int>(count);
        int at = 0;
        foreach (var window in chunkOrder.Chunk(windowChunks))
        {
            int start = at;
            foreach (int c in window)
            {
                int first = c * chunkPairs, end = (int)Math.Min(count, (long)(c + 1) * chunkPairs);
                if (order is not null)
                    for (int i = first; i < end; i++) order[at++] = i;
                else
                {
                    drawn!.AddRange(weights!.Sample(Enumerable.Range(first, end - first), seed, unchecked(epoch * 1_000_003 + c)));
                    at = drawn.Count;
                }
            }
            var span = order is not null ? order.AsSpan(start, at - start) : System.Runtime.InteropServices.CollectionsMarshal.AsSpan(drawn)[start..];
            random.Shuffle(span);
        }
        return order ?? [.. drawn!];
    }

    /// <summary>
    /// The mini-batches of one epoch, length-bucketed: the seeded epoch order is cut into pools of
    /// ~100 batches, each pool is sorted by length and cut into batches of at most <paramref name="batchSize"/>
    /// pairs and (when given) <paramref name="maxTokens"/> padded tokens on either side, and the batches are
    /// shuffled again. Batches hold sentences of similar length, so little padding is computed, and the
    /// result depends only on the seed and the epoch (a resumed run sees the same batches).
    /// </summary>
    /// <param name="sourceLengths">Per pair: source length in tokens (incl. <c>&lt;eos&gt;</c>).</param>
    /// <param name="targetLengths">Per pair: target length in tokens (incl. <c>&lt;eos&gt;</c>).</param>
    /// <param name="batchSize">Most pairs per batch.</param>
    /// <param name="maxTokens">Most padded tokens per batch (rows × longest row), or null.</param>
    /// <param name="seed">Run seed.</param>
    /// <param name="epoch">1-based epoch.</param>
    /// <param name="order">The epoch's row order; default <see cref="EpochOrder"/>.</param>
    public static List<int[]> BucketedEpoch(IReadOnlyList<int> sourceLengths, IReadOnlyList<int> targetLengths, int batchSize, int? maxTokens, int seed, int epoch,
        int[]? order = null)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), "batch size must be positive");
        order ??= EpochOrder(sourceLengths.Count, seed, epoch);
        int poolSize = Math.Max(batchSize * 100, 1);
        var batches = new List<int[]>();
        foreach (var pool in order.Chunk(poolSize))
        {
            var sorted = pool.OrderBy(i => Math.Max(sourceLengths[i], targetLengths[i])).ThenBy(i => i).ToArray();
            var current = new List<int>();
            int longest = 0;
            foreach (int i in sorted)
            {
                int length = Math.Max(sourceLengths[i], targetLengths[i]);
                int widest = Math.Max(longest, length);
                bool full = current.Count == batchSize || (maxTokens is int cap && current.Count > 0 && widest * (current.Count + 1) > cap);
                if (full)
                {
                    batches.Add([.. current]);
                    current.Clear();
                    widest = length;
                }
                current.Add(i);
                longest = widest;
            }
            if (current.Count > 0) batches.Add([.. current]);
        }
        new Random(unchecked(seed * 7_919 + epoch * 104_729)).Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(batches));
        return batches;
    }

    /// <summary>Splits an epoch order into mini-batches of at most <paramref name="batchSize"/> rows (the last may be smaller).</summary>
    public static IEnumerable<int[]> Chunk(int[] order, int batchSize)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), "batch size must be positive");
        return order.Chunk(batchSize);
    }
}
