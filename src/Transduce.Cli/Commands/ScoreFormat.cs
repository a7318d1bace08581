using System.Globalization;
using System.Numerics;

namespace Transduce.Evaluation;

/// <summary>sacreBLEU's text rendering of scores, with Python's number formatting.</summary>
internal static class ScoreFormat
{
    /// <summary>Python's <c>f"{value:.{decimals}f}"</c>: the exact binary value rounded half-to-even.</summary>
    /// <param name="value">The number.</param>
    /// <param name="decimals">Digits after the decimal point (0 or more).</param>
    /// <returns>The formatted number, e.g. <c>6.2</c> for 6.25 with one decimal.</returns>
    public static string Fixed(double value, int decimals)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(decimals);
        if (double.IsNaN(value)) return "nan";
        if (double.IsInfinity(value)) return value > 0 ? "inf" : "-inf";

        long bits = BitConverter.DoubleToInt64Bits(value);
        bool negative = bits < 0;
        int exponent = (int)((bits >> 52) & 0x7FF);
        long mantissa = bits & 0xFFFFFFFFFFFFFL;
        if (exponent == 0) exponent = 1; else mantissa |= 1L << 52;
        exponent -= 1075; // |value| = mantissa * 2^exponent

        BigInteger scaled = mantissa * BigInteger.Pow(10, decimals);
        BigInteger q;
        if (exponent >= 0)
        {
            q = scaled << exponent;
        }
        else
        {
            BigInteger den = BigInteger.One << -exponent;
            q = BigInteger.DivRem(scaled, den, out BigInteger rem);
            int cmp = (rem * 2).CompareTo(den);
            if (cmp > 0 || (cmp == 0 && !q.IsEven)) q += 1;
        }
        string digits = q.ToString(CultureInfo.InvariantCulture).PadLeft(decimals + 1, '0');
        string text = decimals == 0 ? digits : digits[..^decimals] + "." + digits[^decimals..];
        return negative ? "-" + text : text;
    }

    /// <summary>BLEU's details as sacreBLEU prints them after the score, e.g.
    /// <c>78.0/65.8/57.0/48.9 (BP = 1.000 ratio = 1.053 hyp_len = 3707 ref_len = 3522)</c>.</summary>
    /// <param name="score">The score.</param>
    /// <returns>The details.</returns>
    public static string Verbose(BleuScore score)
    {
        ArgumentNullException.ThrowIfNull(score);
        string precisions = string.Join('/', score.Precisions.Select(p => Fixed(p, 1)));
        return $"{precisions} (BP = {Fixed(score.BrevityPenalty, 3)} ratio = {Fixed(score.Ratio, 3)} " +
               string.Create(CultureInfo.InvariantCulture, $"hyp_len = {score.SysLen} ref_len = {score.RefLen})");
    }

    /// <summary>sacreBLEU's text line for BLEU, e.g.
    /// <c>BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 61.5 78.0/65.8/57.0/48.9 (BP = …)</c>.</summary>
    /// <param name="score">The score.</param>
    /// <param name="width">Decimals of the score (the <c>sacrebleu</c> command's default is 1).</param>
    /// <returns>The line.</returns>
    public static string Text(BleuScore score, int width = 1)
    {
        ArgumentNullException.ThrowIfNull(score);
        return $"BLEU|{score.Signature} = {Fixed(score.Score, width)} {Verbose(score)}";
    }

    /// <summary>sacreBLEU's text line for chrF, e.g. <c>chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 75.7</c>.</summary>
    /// <param name="score">The score.</param>
    /// <param name="width">Decimals of the score (the <c>sacrebleu</c> command's default is 1).</param>
    /// <returns>The line.</returns>
    public static string Text(ChrFScore score, int width = 1)
    {
        ArgumentNullException.ThrowIfNull(score);
        return $"{score.Name}|{score.Signature} = {Fixed(score.Score, width)}";
    }
}
