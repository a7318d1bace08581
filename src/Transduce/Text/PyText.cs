using System.Buffers;
using System.Globalization;
using System.Text;

namespace Transduce.Text;

/// <summary>
/// String primitives that behave like their Python 3 counterparts (<c>str.split()</c>,
/// <c>str.rstrip()</c>, <c>str.lower()</c>, code-point indexing), so that the metrics in this
/// namespace see text exactly as sacreBLEU does.
/// </summary>
internal static class PyText
{
    /// <summary>Python's <c>str.isspace()</c> for one UTF-16 unit: .NET's whitespace plus U+001C..U+001F.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || (c >= '\u001c' && c <= '\u001f');

    /// <summary>
    /// transformers' <c>clean_up_tokenization</c>: the space before <c>. ? ! ,</c> and English contractions
    /// (<c>n't 'm 's 've 're</c>) goes, and <c> ' </c> becomes <c>'</c>.
    /// </summary>
    public static string CleanUpTokenization(string s) => s
        .Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal).Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal).Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal).Replace(" 're", "'re", StringComparison.Ordinal);

    /// <summary>Python's argument-less <c>str.split()</c>: runs of whitespace separate, no empty items.</summary>
    public static List<string> Split(string s)
    {
        var parts = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && IsSpace(s[i])) i++;
            int start = i;
            while (i < s.Length && !IsSpace(s[i])) i++;
            if (i > start) parts.Add(s.Substring(start, i - start));
        }
        return parts;
    }

    /// <summary><c>' '.join(s.split())</c>.</summary>
    public static string NormalizeSpaces(string s) => string.Join(' ', Split(s));

    /// <summary>All whitespace removed: <c>''.join(s.split())</c>.</summary>
    public static string RemoveSpaces(string s) => string.Concat(Split(s));

    /// <summary>Python's argument-less <c>str.strip()</c>.</summary>
    public static string Strip(string s) => RStrip(LStrip(s));

    /// <summary>Python's argument-less <c>str.lstrip()</c>.</summary>
    public static string LStrip(string s)
    {
        int start = 0;
        while (start < s.Length && IsSpace(s[start])) start++;
        return start == 0 ? s : s.Substring(start);
    }

    /// <summary>Python's argument-less <c>str.rstrip()</c>.</summary>
    public static string RStrip(string s)
    {
        int end = s.Length;
        while (end > 0 && IsSpace(s[end - 1])) end--;
        return end == s.Length ? s : s.Substring(0, end);
    }

    /// <summary>
    /// Python's <c>str.lower()</c>: simple lowercase mapping per code point, plus the two special
    /// cases Python applies: U+0130 becomes "i" + U+0307, and a capital sigma at the end of a word
    /// becomes final sigma (the word-boundary test approximates Unicode's Final_Sigma rule).
    /// </summary>
    public static string Lower(string s)
    {
        var sb = new StringBuilder(s.Length);
        Span<char> buf = stackalloc char[2];
        int i = 0;
        while (i < s.Length)
        {
            if (Rune.DecodeFromUtf16(s.AsSpan(i), out Rune r, out int used) != OperationStatus.Done)
            {
                sb.Append(s[i]); // lone surrogate: Python leaves it alone
                i++;
                continue;
            }
            if (r.Value == 0x0130)
                sb.Append("i\u0307");
            else if (r.Value == 0x03A3)
                sb.Append(IsFinalSigma(s, i) ? '\u03C2' : '\u03C3');
            else
            {
                int n = Rune.ToLowerInvariant(r).EncodeToUtf16(buf);
                sb.Append(buf[..n]);
            }
            i += used;
        }
        return sb.ToString();
    }

    private static bool IsFinalSigma(string s, int at)
    {
        // Preceded by a cased letter (skipping case-ignorables) ...
        int j = at - 1;
        while (j >= 0 && IsCaseIgnorable(s[j])) j--;
        if (j < 0 || !IsCased(s[j])) return false;
        // ... and not followed by one.
        j = at + 1;
        while (j < s.Length && IsCaseIgnorable(s[j])) j++;
        return j >= s.Length || !IsCased(s[j]);
    }

    private static bool IsCased(char c) => char.GetUnicodeCategory(c) is
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(char c) =>
        c is '\'' or '.' or ':' or '\u00B7' or '\u2018' or '\u2019' or '\u2024' or '\u2027' ||
        char.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;

    /// <summary>
    /// Start offsets of the code points of <paramref name="s"/> (a surrogate pair is one code point,
    /// a lone surrogate is its own), followed by <c>s.Length</c>, so code point <c>k</c> spans
    /// <c>[starts[k], starts[k + 1])</c>. This mirrors Python's indexing of <c>str</c>.
    /// </summary>
    public static int[] CodePointStarts(string s)
    {
        var starts = new List<int>(s.Length + 1);
        for (int i = 0; i < s.Length; i++)
        {
            starts.Add(i);
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
        }
        starts.Add(s.Length);
        return starts.ToArray();
    }

    /// <summary>The code points of <paramref name="s"/>; lone surrogates are kept as their own values.</summary>
    public static int[] CodePoints(string s)
    {
        int[] starts = CodePointStarts(s);
        var cps = new int[starts.Length - 1];
        for (int k = 0; k < cps.Length; k++)
            cps[k] = starts[k + 1] - starts[k] == 2 ? char.ConvertToUtf32(s[starts[k]], s[starts[k] + 1]) : s[starts[k]];
        return cps;
    }

    /// <summary>Inverse of <see cref="CodePoints"/>.</summary>
    public static void AppendCodePoint(StringBuilder sb, int cp)
    {
        if (cp < 0x10000) sb.Append((char)cp);
        else sb.Append(char.ConvertFromUtf32(cp));
    }

    /// <summary>General category of a code point; lone surrogates are <see cref="UnicodeCategory.Surrogate"/>.</summary>
    public static UnicodeCategory Category(int cp) =>
        cp is >= 0xD800 and <= 0xDFFF ? UnicodeCategory.Surrogate : CharUnicodeInfo.GetUnicodeCategory(cp);
}
