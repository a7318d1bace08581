using System.Numerics;
using System.Runtime.InteropServices;

namespace Transduce.Data;

/// <summary>What the filters of a training corpus dropped, by filter.</summary>
/// <param name="Identical">Pairs whose source and target are the same text.</param>
/// <param name="Duplicates">Repeats of an earlier pair.</param>
/// <param name="TooLong">Pairs with a side over the token limit.</param>
/// <param name="Ratio">Pairs whose longer side has too many times the tokens of the shorter.</param>
/// <param name="Empty">Pairs with an empty side: lines skipped as empty when reading (<c>data.skip_invalid</c>), and pairs a side of which encodes to no token.</param>
internal sealed record CorpusFilterCounts(int Identical = 0, int Duplicates = 0, int TooLong = 0, int Ratio = 0, int Empty = 0)
{
    /// <summary>Pairs dropped by any filter.</summary>
    public int Total => Identical + Duplicates + TooLong + Ratio + Empty;

    /// <summary>The counts as the summary line says them.</summary>
    public string Describe(int? maxLength, double? maxRatio) =>
        $"{Identical:N0} with identical sides, {Duplicates:N0} repeated, {TooLong:N0} with a side over {maxLength?.ToString() ?? "∞"} tokens, " +
        $"{Ratio:N0} with a length ratio over {maxRatio?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "∞"}, {Empty:N0} with an empty side";
}

/// <summary>
/// The filters toolkits apply to a training corpus before training (Marian's and fairseq's length and ratio limits,
/// deduplication): by text, before the tokenizers are trained, and by length in tokens, as the model sees the pairs.
/// Validation pairs are never filtered. One pass, pair by pair, so that a corpus larger than memory streams through it:
/// repeats are found by a 64-bit hash of the pair (8 bytes a distinct pair in an open-addressing table, about 256 MB for
/// 20 million; two different pairs share a hash with probability about n² / 2⁶⁵, 10⁻⁵ at 20 million).
/// </summary>
internal sealed class CorpusFilter(bool identical, bool duplicates, int? maxLength, double? maxRatio)
{
    private LongSet? seen = duplicates ? new LongSet() : null;
    private int same, repeated, tooLong, ratio, empty;

    /// <summary>Whether any text filter is on.</summary>
    public bool FiltersText => identical || duplicates;

    /// <summary>What was dropped so far (plus <paramref name="emptyLines"/> skipped when reading).</summary>
    public CorpusFilterCounts Counts(int emptyLines = 0) => new(same, repeated, tooLong, ratio, empty + emptyLines);

    /// <summary>False (and counted) for a pair with identical sides (<c>data.drop_identical</c>: copies teach the model to copy) or a repeat of an earlier pair (<c>data.drop_duplicates</c>).</summary>
    public bool KeepText(SentencePair pair)
    {
        if (identical && string.Equals(pair.Source, pair.Target, StringComparison.Ordinal)) { same++; return false; }
        if (seen is not null && !seen.Add(PairHash(pair.Source, pair.Target))) { repeated++; return false; }
        return true;
    }

    /// <summary>Lets the duplicate filter's hashes go once every pair went through <see cref="KeepText"/> (a streamed corpus's first pass).</summary>
    public void TextDone() => seen = null;

    /// <summary>
    /// False (and counted) for an encoded pair with an empty side, a side over <c>maxLength</c> tokens, or whose longer side has
    /// more than <c>maxRatio</c> times the tokens of the shorter (a misaligned pair, or a sentence against a paragraph).
    /// </summary>
    public bool KeepLength(EncodedPair pair)
    {
        int s = pair.Source.Length, t = pair.Target.Length;
        if (s == 0 || t == 0) { empty++; return false; }
        if (maxLength is int max && Math.Max(s, t) > max) { tooLong++; return false; }
        if (maxRatio is double r && Math.Max(s, t) > r * Math.Max(1, Math.Min(s, t))) { ratio++; return false; }
        return true;
    }

    /// <summary>A 64-bit hash of a pair's two texts (the side boundary included), the same in every process.</summary>
    public static ulong PairHash(string source, string target)
    {
        ulong h = Hash(source, 0x243F6A8885A308D3UL);
        return Mix(h ^ BitOperations.RotateLeft(Hash(target, h ^ 0x13198A2E03707344UL), 29)) | 1;   // never 0 (the empty slot)
    }

    private static ulong Hash(string text, ulong seed)
    {
        var chars = text.AsSpan();
        ulong h = seed ^ ((ulong)chars.Length * 0x9E3779B97F4A7C15UL);
        var words = MemoryMarshal.Cast<char, ulong>(chars);
        foreach (ulong w in words) h = BitOperations.RotateLeft((h ^ w) * 0x9E3779B97F4A7C15UL, 31) * 0xBF58476D1CE4E5B9UL;
        foreach (char c in chars[(words.Length * 4)..]) h = (h ^ c) * 0x94D049BB133111EBUL;
        return Mix(h);
    }

    private static ulong Mix(ulong h)
    {
        h ^= h >> 33; h *= 0xFF51AFD7ED558CCDUL;
        h ^= h >> 33; h *= 0xC4CEB9FE1A85EC53UL;
        return h ^ (h >> 33);
    }

    /// <summary>A set of non-zero 64-bit values, open addressing with linear probing, grown at three quarters full.</summary>
    private sealed class LongSet
    {
        private ulong[] slots = new ulong[1 << 16];
        private int count;

        public bool Add(ulong value)
        {
            if ((count + 1) * 4L > slots.Length * 3L) Grow();
            if (!Insert(slots, value)) return false;
            count++;
            return true;
        }

        private static bool Insert(ulong[] table, ulong value)
        {
            int mask = table.Length - 1;
            for (int i = (int)(value >> 20) & mask; ; i = (i + 1) & mask)
            {
                if (table[i] == value) return false;
                if (table[i] == 0) { table[i] = value; return true; }
            }
        }

        private void Grow()
        {
            if (slots.Length >= 1 << 30) throw new InvalidOperationException("data.drop_duplicates: more than 800 million distinct pairs");
            var bigger = new ulong[slots.Length * 2];
            foreach (ulong v in slots) if (v != 0) Insert(bigger, v);
            slots = bigger;
        }
    }
}

/// <summary>The <see cref="CorpusFilter"/> over pairs held in memory.</summary>
internal static class CorpusFilters
{
    /// <summary><paramref name="pairs"/> without the pairs <see cref="CorpusFilter.KeepText"/> drops, in order.</summary>
    public static IReadOnlyList<SentencePair> ByText(IReadOnlyList<SentencePair> pairs, bool identical, bool duplicates, out CorpusFilterCounts counts)
    {
        counts = new CorpusFilterCounts();
        if (!identical && !duplicates) return pairs;
        var filter = new CorpusFilter(identical, duplicates, null, null);
        var kept = pairs.Where(filter.KeepText).ToList();
        counts = filter.Counts();
        return kept;
    }

    /// <summary><paramref name="pairs"/> without the pairs <see cref="CorpusFilter.KeepLength"/> drops (null switches a limit off), in order.</summary>
    public static IReadOnlyList<EncodedPair> ByLength(IReadOnlyList<EncodedPair> pairs, int? maxLength, double? maxRatio, out CorpusFilterCounts counts)
    {
        var filter = new CorpusFilter(false, false, maxLength, maxRatio);
        var kept = pairs.Where(filter.KeepLength).ToList();
        counts = filter.Counts();
        return counts.Total == 0 ? pairs : kept;
    }
}
