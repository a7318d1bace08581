using System.Globalization;

using Transduce.Text;

namespace Transduce.Evaluation;

/// <summary>Settings of sacreBLEU-compatible chrF.</summary>
/// <param name="CharOrder">Highest character n-gram order (6).</param>
/// <param name="WordOrder">Highest word n-gram order: 0 for chrF, 2 for chrF++.</param>
/// <param name="Beta">Weight of recall relative to precision (2).</param>
/// <param name="Lowercase">Lowercase hypotheses and references first.</param>
/// <param name="Whitespace">Keep whitespace inside character n-grams (sacreBLEU removes it by default).</param>
/// <param name="EpsSmoothing">Average per-order F-scores with epsilon smoothing (chrF++.py/Moses/NLTK style)
/// instead of sacreBLEU's default effective-order averaging of precision and recall.</param>
public sealed record ChrFOptions(
    int CharOrder = 6,
    int WordOrder = 0,
    int Beta = 2,
    bool Lowercase = false,
    bool Whitespace = false,
    bool EpsSmoothing = false)
{
    /// <summary>The chrF++ settings (word order 2).</summary>
    public static ChrFOptions ChrFPlusPlus { get; } = new(WordOrder: 2);
}

/// <summary>A chrF result.</summary>
/// <param name="Score">chrF on a 0–100 scale.</param>
/// <param name="Name">The metric name as sacreBLEU prints it: <c>chrF2</c>, <c>chrF2++</c>, ….</param>
/// <param name="Signature">sacreBLEU's reproducibility signature for these settings.</param>
public sealed record ChrFScore(double Score, string Name, string Signature)
{
    /// <summary>sacreBLEU's one-line rendering, e.g. <c>chrF2++ = 75.55</c>.</summary>
    /// <returns>The formatted score.</returns>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Name} = {Score:F2}");
}

/// <summary>
/// chrF and chrF++ computed as sacreBLEU (version <see cref="SacreBleu.Version"/>) does: character n-grams
/// over the text with whitespace removed, word n-grams over whitespace-split words with one leading or
/// trailing ASCII punctuation mark split off, statistics of the best-scoring reference per segment,
/// summed over the corpus.
/// </summary>
public static class ChrF
{
    private const string Puncts = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    /// <summary>Corpus-level chrF.</summary>
    /// <param name="hyps">One hypothesis per segment.</param>
    /// <param name="refStreams">One or more reference streams, each with one reference per segment.</param>
    /// <param name="options">Settings; <c>null</c> for chrF2 (character order 6, no word n-grams).</param>
    /// <returns>The score.</returns>
    /// <exception cref="ArgumentException">No reference stream, a stream of the wrong length, or invalid settings.</exception>
    public static ChrFScore CorpusScore(IReadOnlyList<string> hyps, IReadOnlyList<IReadOnlyList<string>> refStreams,
        ChrFOptions? options = null)
    {
        options = Checked(options);
        MetricArgs.CheckStreams(hyps, refStreams);
        int orders = options.CharOrder + options.WordOrder;
        var sum = new long[3 * orders];
        for (int seg = 0; seg < hyps.Count; seg++)
        {
            long[] stats = SegmentStatistics(hyps[seg], refStreams.Select(s => s[seg]), options);
            for (int i = 0; i < sum.Length; i++) sum[i] += stats[i];
        }
        return Result(sum, refStreams.Count, options);
    }

    /// <summary>Sentence-level chrF of one hypothesis against one or more references.</summary>
    /// <param name="hyp">The hypothesis.</param>
    /// <param name="refs">Its references.</param>
    /// <param name="options">Settings; <c>null</c> for chrF2.</param>
    /// <returns>The score.</returns>
    /// <exception cref="ArgumentException">No reference, or invalid settings.</exception>
    public static ChrFScore SentenceScore(string hyp, IReadOnlyList<string> refs, ChrFOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(hyp);
        ArgumentNullException.ThrowIfNull(refs);
        options = Checked(options);
        MetricArgs.CheckStreams([hyp], refs.Select(r => (IReadOnlyList<string>)[r]).ToArray());
        return Result(SegmentStatistics(hyp, refs, options), refs.Count, options);
    }

    /// <summary>sacreBLEU's signature string for these settings and reference count.</summary>
    /// <param name="nrefs">Number of references per segment.</param>
    /// <param name="options">The settings.</param>
    /// <returns>E.g. <c>nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0</c>.</returns>
    public static string Signature(int nrefs, ChrFOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return $"nrefs:{nrefs}|case:{(options.Lowercase ? "lc" : "mixed")}|eff:{(options.EpsSmoothing ? "no" : "yes")}" +
               $"|nc:{options.CharOrder}|nw:{options.WordOrder}|space:{(options.Whitespace ? "yes" : "no")}" +
               $"|version:{SacreBleu.Version}";
    }

    /// <summary>The options (chrF2's when null), checked.</summary>
    private static ChrFOptions Checked(ChrFOptions? options)
    {
        var o = options ?? new ChrFOptions();
        if (o.CharOrder < 0 || o.WordOrder < 0 || o.CharOrder + o.WordOrder == 0)
            throw new ArgumentException("chrF needs non-negative n-gram orders, at least one of them positive.", nameof(options));
        if (o.Beta < 0)
            throw new ArgumentException("chrF's beta must be non-negative.", nameof(options));
        return o;
    }

    private static ChrFScore Result(long[] stats, int nrefs, ChrFOptions o) =>
        new(FScore(stats, o), $"chrF{o.Beta}" + new string('+', o.WordOrder), Signature(nrefs, o));

    // Per order: [hypothesis n-grams, reference n-grams, matches], for the reference with the best F.
    private static long[] SegmentStatistics(string hyp, IEnumerable<string> refs, ChrFOptions o)
    {
        var hypNgrams = Extract(Preprocess(hyp, o), o);
        long[]? best = null;
        double bestF = -1.0;
        foreach (string r in refs)
        {
            var refNgrams = Extract(Preprocess(r, o), o);
            var stats = new long[3 * hypNgrams.Count];
            for (int i = 0; i < hypNgrams.Count; i++)
            {
                long hypCount = 0, match = 0, refCount = 0;
                foreach (var (ng, c) in hypNgrams[i])
                {
                    hypCount += c;
                    if (refNgrams[i].TryGetValue(ng, out int rc)) match += Math.Min(c, rc);
                }
                foreach (int c in refNgrams[i].Values) refCount += c;
                stats[3 * i] = refNgrams[i].Count > 0 ? hypCount : 0; // no credit without reference n-grams
                stats[3 * i + 1] = refCount;
                stats[3 * i + 2] = match;
            }
            double f = FScore(stats, o);
            if (f > bestF) { bestF = f; best = stats; }
        }
        return best!;
    }

    private static string Preprocess(string s, ChrFOptions o) => o.Lowercase ? PyText.Lower(s) : s;

    private static List<Dictionary<string, int>> Extract(string s, ChrFOptions o)
    {
        var all = new List<Dictionary<string, int>>(o.CharOrder + o.WordOrder);
        string chars = o.Whitespace ? s : PyText.RemoveSpaces(s);
        int[] starts = PyText.CodePointStarts(chars);
        int len = starts.Length - 1;
        for (int n = 1; n <= o.CharOrder; n++)
        {
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + n <= len; i++)
            {
                string key = chars.Substring(starts[i], starts[i + n] - starts[i]);
                counts[key] = counts.GetValueOrDefault(key) + 1;
            }
            all.Add(counts);
        }
        if (o.WordOrder > 0)
        {
            List<string> words = SplitPunctuation(s);
            for (int n = 1; n <= o.WordOrder; n++)
            {
                var counts = new Dictionary<string, int>(StringComparer.Ordinal);
                for (int i = 0; i + n <= words.Count; i++)
                {
                    string key = string.Join(' ', words.GetRange(i, n));
                    counts[key] = counts.GetValueOrDefault(key) + 1;
                }
                all.Add(counts);
            }
        }
        return all;
    }

    // Words of the line; a trailing (else a leading) ASCII punctuation mark of a longer word becomes its own word.
    private static List<string> SplitPunctuation(string s)
    {
        var words = new List<string>();
        foreach (string w in PyText.Split(s))
        {
            if (PyText.CodePointStarts(w).Length - 1 == 1) words.Add(w);
            else if (Puncts.Contains(w[^1])) { words.Add(w[..^1]); words.Add(w[^1..]); }
            else if (Puncts.Contains(w[0])) { words.Add(w[..1]); words.Add(w[1..]); }
            else words.Add(w);
        }
        return words;
    }

    private static double FScore(long[] stats, ChrFOptions o)
    {
        const double eps = 1e-16;
        int orders = stats.Length / 3;
        double factor = (double)o.Beta * o.Beta;
        double epsScore = 0, avgPrec = 0, avgRec = 0;
        int effectiveOrder = 0;
        for (int i = 0; i < orders; i++)
        {
            long nHyp = stats[3 * i], nRef = stats[3 * i + 1], nMatch = stats[3 * i + 2];
            double prec = nHyp > 0 ? (double)nMatch / nHyp : eps;
            double rec = nRef > 0 ? (double)nMatch / nRef : eps;
            double denom = factor * prec + rec;
            epsScore += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
            if (nHyp > 0 && nRef > 0)
            {
                avgPrec += prec;
                avgRec += rec;
                effectiveOrder++;
            }
        }

        if (o.EpsSmoothing) return 100 * epsScore / orders;

        if (effectiveOrder == 0) return 0.0;
        avgPrec /= effectiveOrder;
        avgRec /= effectiveOrder;
        if (avgPrec + avgRec == 0) return 0.0;
        return 100 * ((1 + factor) * avgPrec * avgRec / (factor * avgPrec + avgRec));
    }
}
