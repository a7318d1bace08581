using System.Buffers;
using System.Text;

namespace Transduce.Text;

/// <summary>The id layout and symbol arithmetic that <see cref="BpeTokenizer"/>, <see cref="BpeTrainer"/> and <see cref="BpeModelFile"/> share.</summary>
internal static class BpeSymbols
{
    /// <summary>The pieces every model starts with: the reserved tokens, the 256 byte tokens and the word-start marker.</summary>
    public static string[] BasePieces()
    {
        var pieces = new string[BpeTokenizer.FirstLearnedId];
        pieces[0] = Vocabulary.PadToken;
        pieces[1] = Vocabulary.BosToken;
        pieces[2] = Vocabulary.EosToken;
        pieces[3] = Vocabulary.UnkToken;
        for (int b = 0; b < 256; b++)
        {
            pieces[BpeTokenizer.ByteBaseId + b] = $"<0x{b:X2}>";
        }
        pieces[BpeTokenizer.MarkerId] = BpeTokenizer.WordStartMarker;
        return pieces;
    }

    /// <summary>Appends the base-piece ids of <paramref name="body"/>, byte tokens for characters outside the alphabet.</summary>
    public static void AppendSymbols(ReadOnlySpan<char> body, Dictionary<int, int> alphabet, List<int> output)
    {
        Span<byte> utf8 = stackalloc byte[4];
        foreach (Rune rune in body.EnumerateRunes())
        {
            if (rune.Value != '\u2581' && alphabet.TryGetValue(rune.Value, out int id))
            {
                output.Add(id);
                continue;
            }
            int count = rune.EncodeToUtf8(utf8);
            for (int k = 0; k < count; k++)
            {
                output.Add(BpeTokenizer.ByteBaseId + utf8[k]);
            }
        }
    }

    /// <summary>Replaces every non-overlapping (a, b), left to right, by c in <paramref name="symbols"/>; returns the new length.</summary>
    public static int ReplacePair(Span<int> symbols, int a, int b, int c)
    {
        int n = symbols.Length;
        int j = 0;
        for (int i = 0; i < n;)
        {
            if (i + 1 < n && symbols[i] == a && symbols[i + 1] == b)
            {
                symbols[j++] = c;
                i += 2;
            }
            else
            {
                symbols[j++] = symbols[i++];
            }
        }
        return j;
    }

    /// <summary>Byte tokens and reserved tokens never take part in a merge.</summary>
    public static bool IsMergeable(int id) => id >= BpeTokenizer.MarkerId;

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    public static bool IsSingleRune(string piece, out Rune rune) =>
        Rune.DecodeFromUtf16(piece, out rune, out int consumed) == OperationStatus.Done && consumed == piece.Length;
}
