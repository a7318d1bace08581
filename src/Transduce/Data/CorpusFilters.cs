namespace Transduce.Data;

/// <summary>What the filters of a training corpus dropped, by filter.</summary>
/// <param name="Identical">Pairs whose source and target are the same text.</param>
/// <param name="Duplicates">Repeats of an earlier pair.</param>
/// <param name="TooLong">Pairs with a side over the token limit.</param>
/// <param name="Ratio">Pairs whose longer side has too many times the tokens of the shorter.</param>
internal sealed record CorpusFilterCounts(int Identical = 0, int Duplicates = 0, int TooLong = 0, int Ratio = 0)
{
    /// <summary>Pairs dropped by any filter.</summary>
    public int Total => Identical + Duplicates + TooLong + Ratio;
}

/// <summary>
/// The filters toolkits apply to a training corpus before training (Marian's and fairseq's length and ratio limits,
/// deduplication): by text, before the tokenizers are trained, and by length in tokens, as the model sees the pairs.
/// Validation pairs are never filtered. Empty sides need no filter: reading the corpus refuses them.
/// </summary>
internal static class CorpusFilters
{
    /// <summary>
    /// <paramref name="pairs"/> without the pairs whose two sides are the same text (<paramref name="identical"/>: copies
    /// teach the model to copy) and without repeats of an earlier pair (<paramref name="duplicates"/>), in order.
    /// </summary>
    public static IReadOnlyList<SentencePair> ByText(IReadOnlyList<SentencePair> pairs, bool identical, bool duplicates, out CorpusFilterCounts counts)
    {
        counts = new CorpusFilterCounts();
        if (!identical && !duplicates) return pairs;
        var seen = duplicates ? new HashSet<(string, string)>() : null;
        var kept = new List<SentencePair>(pairs.Count);
        int same = 0, repeated = 0;
        foreach (var pair in pairs)
        {
            if (identical && string.Equals(pair.Source, pair.Target, StringComparison.Ordinal)) same++;
            else if (seen is not null && !seen.Add((pair.Source, pair.Target))) repeated++;
            else kept.Add(pair);
        }
        counts = new CorpusFilterCounts(Identical: same, Duplicates: repeated);
        return kept;
    }

    /// <summary>
    /// <paramref name="pairs"/> without those with a side over <paramref name="maxLength"/> tokens, or whose longer side
    /// has more than <paramref name="maxRatio"/> times the tokens of the shorter (a misaligned pair, or a sentence
    /// against a paragraph); null switches a filter off.
    /// </summary>
    public static IReadOnlyList<EncodedPair> ByLength(IReadOnlyList<EncodedPair> pairs, int? maxLength, double? maxRatio, out CorpusFilterCounts counts)
    {
        counts = new CorpusFilterCounts();
        if (maxLength is null && maxRatio is null) return pairs;
        var kept = new List<EncodedPair>(pairs.Count);
        int tooLong = 0, ratio = 0;
        foreach (var pair in pairs)
        {
            int s = pair.Source.Length, t = pair.Target.Length;
            if (maxLength is int max && Math.Max(s, t) > max) tooLong++;
            else if (maxRatio is double r && Math.Max(s, t) > r * Math.Max(1, Math.Min(s, t))) ratio++;
            else kept.Add(pair);
        }
        counts = new CorpusFilterCounts(TooLong: tooLong, Ratio: ratio);
        return kept;
    }
}
