using System.Globalization;

using Transduce.Text;

namespace Transduce.Evaluation;

/// <summary>Settings of sacreBLEU-compatible BLEU.</summary>
/// <param name="Tokenize">Tokenizer name, see <see cref="BleuTokenizer.Names"/> (sacreBLEU's default is <c>13a</c>).</param>
/// <param name="Lowercase">Lowercase hypotheses and references before tokenizing (signature <c>case:lc</c>).</param>
/// <param name="Smooth">Smoothing: <c>exp</c> (default), <c>none</c>, <c>floor</c> or <c>add-k</c>.</param>
/// <param name="SmoothValue">The value for <c>floor</c> (default 0.1) and <c>add-k</c> (default 1); ignored otherwise.</param>
/// <param name="EffectiveOrder">Ignore n-gram orders the hypothesis has none of. <c>null</c> means sacreBLEU's
/// function defaults: off for <see cref="SacreBleu.CorpusScore"/>, on for <see cref="SacreBleu.SentenceScore"/>.</param>
/// <param name="MaxNgramOrder">Highest n-gram order (4).</param>
public sealed record BleuOptions(
    string Tokenize = "13a",
    bool Lowercase = false,
    string Smooth = "exp",
    double? SmoothValue = null,
    bool? EffectiveOrder = null,
    int MaxNgramOrder = 4);

/// <summary>A BLEU result with sacreBLEU's sufficient statistics.</summary>
/// <param name="Score">BLEU on a 0–100 scale.</param>
/// <param name="Counts">Matched (clipped) n-grams per order, 1..max order.</param>
/// <param name="Totals">Hypothesis n-grams per order. With <c>add-k</c> smoothing these (and
/// <paramref name="Counts"/>) are the unsmoothed statistics, whereas sacreBLEU reports them after adding k.</param>
/// <param name="Precisions">Per-order precisions in percent, after smoothing.</param>
/// <param name="BrevityPenalty">The brevity penalty.</param>
/// <param name="SysLen">Total hypothesis length in tokens.</param>
/// <param name="RefLen">Total (closest) reference length in tokens.</param>
/// <param name="Signature">sacreBLEU's reproducibility signature for these settings.</param>
public sealed record BleuScore(
    double Score,
    IReadOnlyList<long> Counts,
    IReadOnlyList<long> Totals,
    IReadOnlyList<double> Precisions,
    double BrevityPenalty,
    long SysLen,
    long RefLen,
    string Signature)
{
    /// <summary>Hypothesis length over reference length (0 when the reference length is 0).</summary>
    public double Ratio => RefLen == 0 ? 0 : (double)SysLen / RefLen;

    /// <summary>sacreBLEU's one-line rendering, e.g.
    /// <c>BLEU = 61.48 78.0/65.8/57.0/48.9 (BP = 1.000 ratio = 1.053 hyp_len = 3707 ref_len = 3522)</c>.</summary>
    /// <returns>The formatted score.</returns>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        string precs = string.Join('/', Precisions.Select(p => p.ToString("F1", c)));
        return string.Create(c,
            $"BLEU = {Score:F2} {precs} (BP = {BrevityPenalty:F3} ratio = {Ratio:F3} hyp_len = {SysLen} ref_len = {RefLen})");
    }
}

/// <summary>
/// BLEU computed exactly as sacreBLEU does it (version <see cref="Version"/>): tokenization,
/// clipping against the per-n-gram maximum over references, the closest reference length
/// (shorter wins a tie) for the brevity penalty, and its smoothing methods.
/// </summary>
public static class SacreBleu
{
    /// <summary>The sacreBLEU version whose behaviour (and signature text) these metrics reproduce.</summary>
    public const string Version = "2.6.0";

    /// <summary>The tokenizers <see cref="BleuOptions"/> accepts, by sacreBLEU's names: <c>13a</c>, <c>intl</c>, <c>none</c>.</summary>
    public static IReadOnlyList<string> Tokenizers => BleuTokenizer.Names;

    /// <summary>
    /// The segments of a plain-text file, one per line, read exactly as the <c>sacrebleu</c> command reads hypotheses
    /// and references (strict UTF-8, trailing whitespace removed, no segment after a final newline).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">A line is not valid UTF-8 (the message names the file and line).</exception>
    public static IReadOnlyList<string> ReadSegments(string path) => SegmentFiles.Read(path);

    /// <summary>Corpus-level BLEU.</summary>
    /// <param name="hyps">One hypothesis per segment.</param>
    /// <param name="refStreams">One or more reference streams, each with one reference per segment.</param>
    /// <param name="options">Settings; <c>null</c> for sacreBLEU's defaults.</param>
    /// <returns>The score and its statistics.</returns>
    /// <exception cref="ArgumentException">No reference stream, a stream of the wrong length, or unknown settings.</exception>
    public static BleuScore CorpusScore(IReadOnlyList<string> hyps, IReadOnlyList<IReadOnlyList<string>> refStreams,
        BleuOptions? options = null)
    {
        options ??= new BleuOptions();
        MetricArgs.CheckStreams(hyps, refStreams);
        return Score(hyps, refStreams, options, options.EffectiveOrder ?? false);
    }

    /// <summary>Sentence-level BLEU of one hypothesis against one or more references.</summary>
    /// <param name="hyp">The hypothesis.</param>
    /// <param name="refs">Its references.</param>
    /// <param name="options">Settings; <c>null</c> for sacreBLEU's <c>sentence_bleu</c> defaults (effective order on).</param>
    /// <returns>The score and its statistics.</returns>
    /// <exception cref="ArgumentException">No reference, or unknown settings.</exception>
    public static BleuScore SentenceScore(string hyp, IReadOnlyList<string> refs, BleuOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(hyp);
        ArgumentNullException.ThrowIfNull(refs);
        options ??= new BleuOptions();
        var streams = refs.Select(r => (IReadOnlyList<string>)[r]).ToArray();
        MetricArgs.CheckStreams([hyp], streams);
        return Score([hyp], streams, options, options.EffectiveOrder ?? true);
    }

    /// <summary>sacreBLEU's signature string for these settings and reference count.</summary>
    /// <param name="nrefs">Number of references per segment.</param>
    /// <param name="options">The settings.</param>
    /// <param name="effectiveOrder">Whether effective order is used.</param>
    /// <returns>E.g. <c>nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0</c>.</returns>
    public static string Signature(int nrefs, BleuOptions options, bool effectiveOrder)
    {
        ArgumentNullException.ThrowIfNull(options);
        string smooth = options.Smooth;
        double? def = DefaultSmoothValue(options.Smooth);
        if (def is not null)
            smooth += string.Create(CultureInfo.InvariantCulture, $"[{options.SmoothValue ?? def.Value:F2}]");
        return $"nrefs:{nrefs}|case:{(options.Lowercase ? "lc" : "mixed")}|eff:{(effectiveOrder ? "yes" : "no")}" +
               $"|tok:{options.Tokenize}|smooth:{smooth}|version:{Version}";
    }

    private static double? DefaultSmoothValue(string smooth) => smooth switch
    {
        "none" or "exp" => null,
        "floor" => 0.1,
        "add-k" => 1,
        _ => throw new ArgumentException($"Unknown BLEU smoothing '{smooth}'; expected none, floor, add-k or exp.", nameof(smooth)),
    };

    private static BleuScore Score(IReadOnlyList<string> hyps, IReadOnlyList<IReadOnlyList<string>> refStreams,
        BleuOptions o, bool effectiveOrder)
    {
        BleuTokenizer.Validate(o.Tokenize);
        _ = DefaultSmoothValue(o.Smooth);
        if (o.MaxNgramOrder < 1)
            throw new ArgumentException("MaxNgramOrder must be at least 1.", nameof(o));

        int order = o.MaxNgramOrder;
        var correct = new long[order];
        var total = new long[order];
        long sysLen = 0, refLen = 0;
        var refNgrams = new Dictionary<string, int>[order];

        for (int seg = 0; seg < hyps.Count; seg++)
        {
            // Reference n-gram counts: per n-gram, the maximum over references.
            for (int n = 0; n < order; n++) refNgrams[n] = new Dictionary<string, int>(StringComparer.Ordinal);
            var refLens = new List<int>(refStreams.Count);
            foreach (var stream in refStreams)
            {
                var tokens = PyText.Split(Preprocess(stream[seg], o));
                refLens.Add(tokens.Count);
                for (int n = 1; n <= order; n++)
                    foreach (var (ng, c) in Ngrams(tokens, n))
                        if (!refNgrams[n - 1].TryGetValue(ng, out int prev) || c > prev) refNgrams[n - 1][ng] = c;
            }

            var hypTokens = PyText.Split(Preprocess(hyps[seg], o));
            sysLen += hypTokens.Count;
            refLen += ClosestRefLength(hypTokens.Count, refLens);
            for (int n = 1; n <= order; n++)
            {
                foreach (var (ng, c) in Ngrams(hypTokens, n))
                {
                    total[n - 1] += c;
                    if (refNgrams[n - 1].TryGetValue(ng, out int rc)) correct[n - 1] += Math.Min(c, rc);
                }
            }
        }

        return Compute(correct, total, sysLen, refLen, o, effectiveOrder,
            Signature(refStreams.Count, o, effectiveOrder));
    }

    private static string Preprocess(string s, BleuOptions o)
    {
        if (o.Lowercase) s = PyText.Lower(s);
        return BleuTokenizer.Tokenize(o.Tokenize, PyText.RStrip(s));
    }

    private static Dictionary<string, int> Ngrams(List<string> tokens, int n)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i + n <= tokens.Count; i++)
        {
            string key = n == 1 ? tokens[i] : string.Join(' ', tokens.GetRange(i, n));
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        return counts;
    }

    // The reference length closest to the hypothesis length; ties go to the shorter reference.
    private static int ClosestRefLength(int hypLen, List<int> refLens)
    {
        int bestDiff = -1, best = -1;
        foreach (int len in refLens)
        {
            int diff = Math.Abs(hypLen - len);
            if (bestDiff == -1 || diff < bestDiff) { bestDiff = diff; best = len; }
            else if (diff == bestDiff && len < best) best = len;
        }
        return best;
    }

    private static BleuScore Compute(long[] correct, long[] total, long sysLen, long refLen, BleuOptions o,
        bool effectiveOrder, string signature)
    {
        int order = correct.Length;
        double bp = 1.0;
        if (sysLen < refLen) bp = sysLen > 0 ? Math.Exp(1 - (double)refLen / sysLen) : 0.0;

        var precisions = new double[order];
        if (correct.All(c => c == 0))
            return new BleuScore(0.0, correct, total, precisions, bp, sysLen, refLen, signature);

        double smoothValue = o.SmoothValue ?? DefaultSmoothValue(o.Smooth) ?? 0;
        double smoothMteval = 1.0;
        int effOrder = order;
        for (int n = 1; n <= order; n++)
        {
            double c = correct[n - 1], t = total[n - 1];
            if (o.Smooth == "add-k" && n > 1) { c += smoothValue; t += smoothValue; }
            if (t == 0) break;
            if (effectiveOrder) effOrder = n;
            if (c == 0)
            {
                if (o.Smooth == "exp")
                {
                    smoothMteval *= 2;
                    precisions[n - 1] = 100.0 / (smoothMteval * t);
                }
                else if (o.Smooth == "floor")
                {
                    precisions[n - 1] = 100.0 * smoothValue / t;
                }
            }
            else
            {
                precisions[n - 1] = 100.0 * c / t;
            }
        }

        double logSum = 0;
        for (int i = 0; i < effOrder; i++) logSum += precisions[i] == 0.0 ? -9999999999.0 : Math.Log(precisions[i]);
        double score = bp * Math.Exp(logSum / effOrder);
        return new BleuScore(score, correct, total, precisions, bp, sysLen, refLen, signature);
    }
}

/// <summary>Argument checks shared by the corpus metrics.</summary>
internal static class MetricArgs
{
    public static void CheckStreams(IReadOnlyList<string> hyps, IReadOnlyList<IReadOnlyList<string>> refStreams)
    {
        ArgumentNullException.ThrowIfNull(hyps);
        ArgumentNullException.ThrowIfNull(refStreams);
        if (refStreams.Count == 0)
            throw new ArgumentException("At least one reference stream is required.", nameof(refStreams));
        for (int s = 0; s < refStreams.Count; s++)
        {
            ArgumentNullException.ThrowIfNull(refStreams[s]);
            if (refStreams[s].Count != hyps.Count)
                throw new ArgumentException(
                    $"Reference stream {s} has {refStreams[s].Count} segments but there are {hyps.Count} hypotheses.",
                    nameof(refStreams));
            foreach (var r in refStreams[s])
                if (r is null) throw new ArgumentException($"Reference stream {s} contains null.", nameof(refStreams));
        }
        foreach (var h in hyps)
            if (h is null) throw new ArgumentException("The hypotheses contain null.", nameof(hyps));
    }
}
