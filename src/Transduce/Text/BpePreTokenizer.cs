using System.Globalization;
using System.Text;

namespace Transduce.Text;

/// <summary>A pre-token: <c>text[Start..Start+Length]</c>, preceded by the word-start marker if <see cref="Marker"/> is set.</summary>
/// <param name="Start">Index of the first character in the text.</param>
/// <param name="Length">Number of UTF-16 characters (0 for a marker that stands for an extra space).</param>
/// <param name="Marker">Whether the pre-token starts a space-delimited word (carries the <c>▁</c> marker).</param>
internal readonly record struct PreToken(int Start, int Length, bool Marker);

/// <summary>
/// The pre-tokenisation shared by BPE training and encoding. Conceptually the text becomes
/// <c>"▁" + text.Replace(' ', '▁')</c> and is cut before every <c>▁</c>, so each word carries one marker and every
/// U+0020 space is recoverable (an extra space is a marker with an empty body). Only U+0020 separates words; tabs,
/// no-break spaces and other whitespace are ordinary characters. Optionally each word is further cut between runs of
/// letters, digits and other characters; only the first run keeps the marker.
/// </summary>
internal static class BpePreTokenizer
{
    private const int LetterClass = 0;
    private const int NumberClass = 1;
    private const int OtherClass = 2;

    /// <summary>Returns <paramref name="text"/> with every unpaired UTF-16 surrogate replaced by U+FFFD.</summary>
    public static string ReplaceLoneSurrogates(string text)
    {
        StringBuilder? sb = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb?.Append(c).Append(text[i + 1]);
                i++;
                continue;
            }
            if (char.IsSurrogate(c))
            {
                sb ??= new StringBuilder(text.Length).Append(text, 0, i);
                sb.Append('\uFFFD');
                continue;
            }
            sb?.Append(c);
        }
        return sb?.ToString() ?? text;
    }

    /// <summary>Fills <paramref name="output"/> with the pre-tokens of <paramref name="text"/> (which must be free of lone surrogates).</summary>
    public static void Split(string text, bool splitClasses, List<PreToken> output)
    {
        output.Clear();
        if (text.Length == 0)
        {
            return;
        }
        int pos = 0;
        while (true)
        {
            int end = text.IndexOf(' ', pos);
            if (end < 0)
            {
                end = text.Length;
            }
            if (splitClasses && end - pos > 1)
            {
                SplitWord(text, pos, end, output);
            }
            else
            {
                output.Add(new PreToken(pos, end - pos, true));
            }
            if (end == text.Length)
            {
                break;
            }
            pos = end + 1;
        }
    }

    private static void SplitWord(string text, int start, int end, List<PreToken> output)
    {
        int runStart = start;
        int previous = -1;
        bool first = true;
        int i = start;
        while (i < end)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i, end - i), out Rune rune, out int length);
            int cls = Classify(rune, previous, text, i + length, end);
            if (previous >= 0 && cls != previous)
            {
                output.Add(new PreToken(runStart, i - runStart, first));
                first = false;
                runStart = i;
            }
            previous = cls;
            i += length;
        }
        output.Add(new PreToken(runStart, end - runStart, first));
    }

    private static int Classify(Rune rune, int previous, string text, int next, int end)
    {
        switch (Rune.GetUnicodeCategory(rune))
        {
            case UnicodeCategory.UppercaseLetter:
            case UnicodeCategory.LowercaseLetter:
            case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter:
            case UnicodeCategory.OtherLetter:
                return LetterClass;
            case UnicodeCategory.NonSpacingMark:
            case UnicodeCategory.SpacingCombiningMark:
            case UnicodeCategory.EnclosingMark:
                return previous >= 0 ? previous : LetterClass;
            case UnicodeCategory.DecimalDigitNumber:
            case UnicodeCategory.LetterNumber:
            case UnicodeCategory.OtherNumber:
                return NumberClass;
            default:
                // An apostrophe or hyphen between two letters joins them: l'homme, don't, peut-être.
                if (rune.Value is '\'' or '\u2019' or '-' && previous == LetterClass && next < end
                    && Rune.DecodeFromUtf16(text.AsSpan(next, end - next), out Rune after, out _) == System.Buffers.OperationStatus.Done
                    && IsLetter(after))
                {
                    return LetterClass;
                }
                return OtherClass;
        }
    }

    private static bool IsLetter(Rune rune) => Rune.GetUnicodeCategory(rune) is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter
        or UnicodeCategory.OtherLetter;
}
