using System.Buffers.Binary;
using System.Text;

namespace Transduce.Text;

/// <summary>The parts of <c>SentencePieceNormalizerSpec</c> that affect encoding.</summary>
internal sealed class SentencePieceNormalizerSpec
{
    public string? Name { get; set; }

    public byte[]? CharsMap { get; set; }

    public bool AddDummyPrefix { get; set; } = true;

    public bool RemoveExtraWhitespaces { get; set; } = true;

    public bool EscapeWhitespaces { get; set; } = true;
}

/// <summary>SentencePiece's normaliser, working on UTF-8 bytes like the original so that its charsmap applies exactly.</summary>
internal sealed class SentencePieceNormalizer
{
    private static readonly byte[] SpaceSymbolUtf8 = [0xE2, 0x96, 0x81];
    private static readonly byte[] ReplacementUtf8 = [0xEF, 0xBF, 0xBD];

    private readonly SentencePieceNormalizerSpec _spec;
    private readonly bool _suffix;
    private readonly byte[][] _userDefined;
    private readonly uint[]? _trie;
    private readonly byte[] _replacements = [];

    public SentencePieceNormalizer(SentencePieceNormalizerSpec spec, bool treatWhitespaceAsSuffix, byte[][] userDefined, string sourceName)
    {
        _spec = spec;
        _suffix = treatWhitespaceAsSuffix;
        _userDefined = userDefined;
        byte[]? blob = spec.CharsMap;
        if (blob is { Length: > 0 })
        {
            // <trie size in bytes, uint32 LE><double-array units, uint32 LE each><NUL-terminated replacement strings>
            if (blob.Length <= 4)
            {
                throw SentencePieceModel.Bad(sourceName, "normalization charsmap is truncated");
            }
            uint trieSize = BinaryPrimitives.ReadUInt32LittleEndian(blob);
            if (trieSize >= (uint)blob.Length - 4 || trieSize % 4 != 0 || trieSize == 0)
            {
                throw SentencePieceModel.Bad(sourceName, $"normalization charsmap trie size {trieSize} does not fit its {blob.Length}-byte blob");
            }
            _trie = new uint[trieSize / 4];
            for (int i = 0; i < _trie.Length; i++)
            {
                _trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.AsSpan(4 + (4 * i)));
            }
            _replacements = blob[(4 + (int)trieSize)..];
        }
    }

    public byte[] Normalize(ReadOnlySpan<byte> input)
    {
        var output = new List<byte>(input.Length + 8);
        if (input.IsEmpty)
        {
            return [];
        }
        bool removeExtra = _spec.RemoveExtraWhitespaces;
        bool escape = _spec.EscapeWhitespaces;

        if (removeExtra)
        {
            while (!input.IsEmpty)
            {
                int consumed = NormalizePrefix(input, out ReadOnlySpan<byte> replacement);
                if (!replacement.SequenceEqual(" "u8))
                {
                    break;
                }
                input = input[consumed..];
            }
        }
        if (input.IsEmpty)
        {
            return [];
        }

        if (!_suffix && _spec.AddDummyPrefix)
        {
            AddSpace(output, escape);
        }

        bool previousSpace = removeExtra;
        while (!input.IsEmpty)
        {
            int consumed = NormalizePrefix(input, out ReadOnlySpan<byte> piece);
            while (previousSpace && !piece.IsEmpty && piece[0] == (byte)' ')
            {
                piece = piece[1..];
            }
            if (!piece.IsEmpty)
            {
                foreach (byte b in piece)
                {
                    if (escape && b == (byte)' ')
                    {
                        output.AddRange(SpaceSymbolUtf8);
                    }
                    else
                    {
                        output.Add(b);
                    }
                }
                previousSpace = piece[^1] == (byte)' ';
            }
            input = input[consumed..];
            if (!removeExtra)
            {
                previousSpace = false;
            }
        }

        if (removeExtra)
        {
            ReadOnlySpan<byte> space = escape ? SpaceSymbolUtf8 : " "u8;
            while (System.Runtime.InteropServices.CollectionsMarshal.AsSpan(output).EndsWith(space))
            {
                output.RemoveRange(output.Count - space.Length, space.Length);
            }
        }

        if (_suffix && _spec.AddDummyPrefix)
        {
            AddSpace(output, escape);
        }
        return [.. output];
    }

    private static void AddSpace(List<byte> output, bool escape)
    {
        if (escape)
        {
            output.AddRange(SpaceSymbolUtf8);
        }
        else
        {
            output.Add((byte)' ');
        }
    }

    /// <summary>Normalises the start of <paramref name="input"/>; returns how many bytes were consumed.</summary>
    private int NormalizePrefix(ReadOnlySpan<byte> input, out ReadOnlySpan<byte> replacement)
    {
        // User-defined symbols are copied untouched (longest match).
        int userLength = 0;
        foreach (byte[] symbol in _userDefined)
        {
            if (symbol.Length > userLength && input.StartsWith(symbol))
            {
                userLength = symbol.Length;
            }
        }
        if (userLength > 0)
        {
            replacement = input[..userLength];
            return userLength;
        }

        if (_trie is not null)
        {
            (int length, int value) = LongestMatch(input);
            if (length > 0)
            {
                ReadOnlySpan<byte> rest = (uint)value < (uint)_replacements.Length ? _replacements.AsSpan(value) : default;
                int end = rest.IndexOf((byte)0);
                replacement = end >= 0 ? rest[..end] : rest;
                return length;
            }
        }

        if (Rune.DecodeFromUtf8(input, out _, out int consumed) == System.Buffers.OperationStatus.Done)
        {
            replacement = input[..consumed];
            return consumed;
        }
        replacement = ReplacementUtf8; // a malformed byte becomes U+FFFD, one byte at a time
        return 1;
    }

    /// <summary>The longest key of the double-array trie (darts-clone layout) that is a prefix of <paramref name="key"/>.</summary>
    private (int Length, int Value) LongestMatch(ReadOnlySpan<byte> key)
    {
        uint[] units = _trie!;
        int bestLength = 0;
        int bestValue = 0;
        uint pos = Offset(units[0]);
        for (int i = 0; i < key.Length; i++)
        {
            pos ^= key[i];
            if (pos >= (uint)units.Length)
            {
                break;
            }
            uint unit = units[pos];
            if ((unit & 0x800000FFu) != key[i])
            {
                break;
            }
            pos ^= Offset(unit);
            if (((unit >> 8) & 1) != 0)
            {
                if (pos >= (uint)units.Length)
                {
                    break;
                }
                bestLength = i + 1;
                bestValue = (int)(units[pos] & 0x7FFFFFFFu);
            }
        }
        return (bestLength, bestValue);
    }

    private static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);
}
