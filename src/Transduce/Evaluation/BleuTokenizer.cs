using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

using Transduce.Text;

namespace Transduce.Evaluation;

/// <summary>
/// The BLEU tokenizers of sacreBLEU that Transduce reproduces: <c>13a</c> (mteval-v13a, the
/// default), <c>intl</c> (mteval-v14 "international", Unicode-category based) and <c>none</c>.
/// </summary>
internal static partial class BleuTokenizer
{
    /// <summary>The tokenizer names accepted by <see cref="Tokenize"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["13a", "intl", "none"];

    /// <summary>Tokenizes one line with the named tokenizer; tokens in the result are separated by single spaces
    /// (except for <c>none</c>, which returns the line unchanged).</summary>
    /// <param name="name">One of <see cref="Names"/>.</param>
    /// <param name="line">The line to tokenize.</param>
    /// <returns>The tokenized line.</returns>
    /// <exception cref="ArgumentException">The tokenizer name is unknown.</exception>
    public static string Tokenize(string name, string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        return name switch
        {
            "13a" => Tokenize13a(line),
            "intl" => TokenizeIntl(line),
            "none" => line,
            _ => throw new ArgumentException(
                $"Unknown BLEU tokenizer '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>Throws unless <paramref name="name"/> is a known tokenizer.</summary>
    internal static void Validate(string name)
    {
        if (!Names.Contains(name))
            throw new ArgumentException(
                $"Unknown BLEU tokenizer '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name));
    }

    // mteval-v13a: ASCII punctuation and symbols except apostrophe, comma, hyphen and period.
    [GeneratedRegex(@"([{-~\[-` -&(-+:-@/])", RegexOptions.CultureInvariant)]
    private static partial Regex SymbolRegex();

    // Period/comma after a non-digit.
    [GeneratedRegex(@"([^0-9])([.,])", RegexOptions.CultureInvariant)]
    private static partial Regex PunctAfterNonDigitRegex();

    // Period/comma before a non-digit.
    [GeneratedRegex(@"([.,])([^0-9])", RegexOptions.CultureInvariant)]
    private static partial Regex PunctBeforeNonDigitRegex();

    // Dash after a digit.
    [GeneratedRegex(@"([0-9])(-)", RegexOptions.CultureInvariant)]
    private static partial Regex DashAfterDigitRegex();

    private static string Tokenize13a(string line)
    {
        line = line.Replace("<skipped>", "", StringComparison.Ordinal)
                   .Replace("-\n", "", StringComparison.Ordinal)
                   .Replace("\n", " ", StringComparison.Ordinal);
        if (line.Contains('&'))
        {
            line = line.Replace("&quot;", "\"", StringComparison.Ordinal)
                       .Replace("&amp;", "&", StringComparison.Ordinal)
                       .Replace("&lt;", "<", StringComparison.Ordinal)
                       .Replace("&gt;", ">", StringComparison.Ordinal);
        }
        line = " " + line + " ";
        line = SymbolRegex().Replace(line, " $1 ");
        line = PunctAfterNonDigitRegex().Replace(line, "$1 $2 ");
        line = PunctBeforeNonDigitRegex().Replace(line, " $1 $2");
        line = DashAfterDigitRegex().Replace(line, "$1 $2 ");
        return PyText.NormalizeSpaces(line);
    }

    // The three rewrites of sacreBLEU's `intl` tokenizer, done on code points (so that characters
    // outside the BMP, e.g. emoji, get their real Unicode category as in Python's `regex` module).
    private static string TokenizeIntl(string line)
    {
        int[] cps = PyText.CodePoints(line);
        // (\P{N})(\p{P}) -> "\1 \2 "
        cps = RewritePairs(cps, (a, b) => !IsNumber(a) && IsPunct(b), (a, b) => [a, ' ', b, ' ']);
        // (\p{P})(\P{N}) -> " \1 \2"
        cps = RewritePairs(cps, (a, b) => IsPunct(a) && !IsNumber(b), (a, b) => [' ', a, ' ', b]);
        // (\p{S}) -> " \1 "
        var sb = new StringBuilder(cps.Length * 2);
        foreach (int cp in cps)
        {
            if (IsSymbol(cp)) { sb.Append(' '); PyText.AppendCodePoint(sb, cp); sb.Append(' '); }
            else PyText.AppendCodePoint(sb, cp);
        }
        return PyText.NormalizeSpaces(sb.ToString());
    }

    // Leftmost, non-overlapping substitution of a two-code-point pattern, as re.sub does.
    private static int[] RewritePairs(int[] cps, Func<int, int, bool> match, Func<int, int, int[]> replace)
    {
        var result = new List<int>(cps.Length + 8);
        int i = 0;
        while (i < cps.Length)
        {
            if (i + 1 < cps.Length && match(cps[i], cps[i + 1]))
            {
                result.AddRange(replace(cps[i], cps[i + 1]));
                i += 2;
            }
            else
            {
                result.Add(cps[i]);
                i++;
            }
        }
        return result.ToArray();
    }

    private static bool IsNumber(int cp) => PyText.Category(cp) is
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    private static bool IsPunct(int cp) => PyText.Category(cp) is
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
        or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
        or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    private static bool IsSymbol(int cp) => PyText.Category(cp) is
        UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
        or UnicodeCategory.OtherSymbol;
}
