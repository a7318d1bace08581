using System.Text;

namespace Transduce.Text;

/// <summary>Text to pieces (normalisation, then unigram Viterbi search or BPE merging, as SentencePiece does them) and pieces back to text.</summary>
internal sealed partial class SentencePieceModel
{
    /// <summary>The pieces of <paramref name="text"/> with their ids; a run of unknown characters is one piece that keeps its (normalised) text.</summary>
    internal List<(string Piece, int Id)> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string normalized = Normalize(text);
        var result = new List<(string Piece, int Id)>();
        if (normalized.Length == 0)
        {
            return result;
        }
        var segments = new List<(int Start, int Length, int Id)>();
        if (ModelType == SentencePieceModelType.Unigram)
        {
            SegmentUnigram(normalized, segments);
        }
        else
        {
            SegmentBpe(normalized, segments);
        }

        bool previousUnknown = false;
        foreach ((int start, int length, int id) in segments)
        {
            bool unknown = id == UnkId;
            if (unknown && ByteFallback)
            {
                foreach (byte b in Encoding.UTF8.GetBytes(normalized, start, length))
                {
                    result.Add((_pieces[_byteIds[b]], _byteIds[b]));
                }
            }
            else if (unknown && previousUnknown)
            {
                // SentencePiece merges a run of unknown pieces into one, so it can be copied through as a whole.
                (string piece, int _) = result[^1];
                result[^1] = (piece + normalized.Substring(start, length), id);
            }
            else
            {
                result.Add((normalized.Substring(start, length), id));
            }
            previousUnknown = unknown;
        }
        return result;
    }

    private void SegmentUnigram(string text, List<(int Start, int Length, int Id)> segments)
    {
        int n = text.Length;
        var bestScore = new float[n + 1];
        var startsAt = new int[n + 1];
        var bestId = new int[n + 1];
        Array.Fill(startsAt, -1);
        float unknownScore = _minScore - UnknownPenalty;

        int start = 0;
        while (start < n)
        {
            int charLength = CharLength(text, start);
            float scoreHere = bestScore[start];
            bool hasSingleCharPiece = false;
            int maxLength = Math.Min(_maxSegmentPieceChars, n - start);
            for (int length = 1; length <= maxLength; length++)
            {
                if (!_segmentLookup.TryGetValue(text.AsSpan(start, length), out int id)
                    || _types[id] == SentencePieceType.Unused)
                {
                    continue;
                }
                int end = start + length;
                if (_types[id] == SentencePieceType.UserDefined)
                {
                    // SentencePiece gives user-defined symbols a bonus so they are always chosen; computed in double.
                    double candidate = ((double)(_utf8Lengths[id] * _maxScore) - 0.1) + scoreHere;
                    if (startsAt[end] == -1 || candidate > bestScore[end])
                    {
                        bestScore[end] = (float)candidate;
                        startsAt[end] = start;
                        bestId[end] = id;
                    }
                }
                else
                {
                    float candidate = _scores[id] + scoreHere;
                    if (startsAt[end] == -1 || candidate > bestScore[end])
                    {
                        bestScore[end] = candidate;
                        startsAt[end] = start;
                        bestId[end] = id;
                    }
                }
                if (length == charLength)
                {
                    hasSingleCharPiece = true;
                }
            }
            if (!hasSingleCharPiece)
            {
                int end = start + charLength;
                float candidate = unknownScore + scoreHere;
                if (startsAt[end] == -1 || candidate > bestScore[end])
                {
                    bestScore[end] = candidate;
                    startsAt[end] = start;
                    bestId[end] = UnkId;
                }
            }
            start += charLength;
        }

        for (int end = n; end > 0; end = startsAt[end])
        {
            segments.Add((startsAt[end], end - startsAt[end], bestId[end]));
        }
        segments.Reverse();
    }

    private void SegmentBpe(string text, List<(int Start, int Length, int Id)> segments)
    {
        // Initial symbols: user-defined symbols (frozen, never merged) and single characters.
        var starts = new List<int>();
        var lengths = new List<int>();
        var frozen = new List<bool>();
        for (int pos = 0; pos < text.Length;)
        {
            int length = MatchUserDefined(text.AsSpan(pos));
            frozen.Add(length > 0);
            if (length == 0)
            {
                length = CharLength(text, pos);
            }
            starts.Add(pos);
            lengths.Add(length);
            pos += length;
        }
        int count = starts.Count;
        int[] start = [.. starts];
        int[] len = [.. lengths];
        bool[] freeze = [.. frozen];
        var prev = new int[count];
        var next = new int[count];
        for (int i = 0; i < count; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }

        var agenda = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(PairOrder.Instance);
        Dictionary<string, (string Left, string Right)>? reverseMerges = null;

        void MaybeAddPair(int left, int right)
        {
            if (left == -1 || right == -1 || freeze[left] || freeze[right])
            {
                return;
            }
            int size = len[left] + len[right];
            ReadOnlySpan<char> merged = text.AsSpan(start[left], size);
            if (!_segmentLookup.TryGetValue(merged, out int id))
            {
                return;
            }
            agenda.Enqueue((left, right, size), (_scores[id], left));
            if (_types[id] == SentencePieceType.Unused)
            {
                reverseMerges ??= new Dictionary<string, (string, string)>(StringComparer.Ordinal);
                reverseMerges[merged.ToString()] = (text.Substring(start[left], len[left]), text.Substring(start[right], len[right]));
            }
        }

        for (int i = 1; i < count; i++)
        {
            MaybeAddPair(i - 1, i);
        }

        while (agenda.TryDequeue(out (int Left, int Right, int Size) top, out _))
        {
            if (len[top.Left] == 0 || len[top.Right] == 0 || len[top.Left] + len[top.Right] != top.Size)
            {
                continue; // stale: one side was merged into something else since this pair was queued
            }
            len[top.Left] = top.Size;
            next[top.Left] = next[top.Right];
            if (next[top.Right] >= 0)
            {
                prev[next[top.Right]] = top.Left;
            }
            len[top.Right] = 0;
            MaybeAddPair(prev[top.Left], top.Left);
            MaybeAddPair(top.Left, next[top.Left]);
        }

        for (int i = 0; i != -1; i = next[i])
        {
            Resegment(text, start[i], len[i], reverseMerges, segments);
        }
    }

    private void Resegment(
        string text, int start, int length, Dictionary<string, (string Left, string Right)>? reverseMerges,
        List<(int Start, int Length, int Id)> segments)
    {
        ReadOnlySpan<char> piece = text.AsSpan(start, length);
        int id = PieceToId(piece);
        if (_types[id] == SentencePieceType.Unused && reverseMerges is not null
            && reverseMerges.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(piece, out (string Left, string Right) parts))
        {
            Resegment(text, start, parts.Left.Length, reverseMerges, segments);
            Resegment(text, start + parts.Left.Length, parts.Right.Length, reverseMerges, segments);
            return;
        }
        segments.Add((start, length, id));
    }

    /// <summary>
    /// Joins pieces back into text, as <c>spm_decode --input_format=piece</c>: <c>▁</c> becomes a space (the first one
    /// is dropped), control pieces vanish, consecutive byte pieces are decoded as UTF-8 (each invalid byte giving
    /// U+FFFD), the <c>&lt;unk&gt;</c> piece becomes the model's unknown surface (<c>" ⁇ "</c> by default) and any other
    /// string not in the model is copied as is.
    /// </summary>
    /// <param name="pieces">The pieces.</param>
    /// <returns>The text.</returns>
    public string DecodePieces(IEnumerable<string> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        var list = new List<(string Piece, int Id)>();
        foreach (string? piece in pieces)
        {
            if (piece is null)
            {
                throw new ArgumentException("A piece is null.", nameof(pieces));
            }
            list.Add((piece, PieceToId(piece.AsSpan())));
        }
        return Decode(list);
    }

    /// <summary>Decodes SentencePiece ids to text, as <c>spm_decode --input_format=id</c> (see <see cref="DecodePieces"/>).</summary>
    /// <param name="ids">The ids.</param>
    /// <returns>The text.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside <c>[0, Count)</c>.</exception>
    public string DecodeIds(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var list = new List<(string Piece, int Id)>();
        foreach (int id in ids)
        {
            list.Add((IdToPiece(id), id));
        }
        return Decode(list);
    }

    /// <summary>Joins pieces into text; each piece comes with its id (a string the model lacks comes with <see cref="UnkId"/> and is copied as is).</summary>
    internal string Decode(IEnumerable<(string Piece, int Id)> pieces)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        bool atStart = true;
        bool spaceSeen = false;
        bool stripFirstSpace = AddDummyPrefix || RemoveExtraWhitespaces;

        foreach ((string piece, int id) in pieces)
        {
            if (_types[id] == SentencePieceType.Byte)
            {
                bytes.Add((byte)_byteValues[id]);
                continue;
            }
            FlushBytes(bytes, text);
            if (spaceSeen || text.Length > 0)
            {
                atStart = false;
            }
            spaceSeen = false;
            switch (_types[id])
            {
                case SentencePieceType.Control:
                    break;
                case SentencePieceType.Unknown:
                    text.Append(piece == _pieces[id] ? _unknownSurface : piece);
                    break;
                default:
                    ReadOnlySpan<char> span = piece;
                    if (atStart && stripFirstSpace && span.StartsWith(SpaceSymbol, StringComparison.Ordinal))
                    {
                        span = span[SpaceSymbol.Length..];
                        spaceSeen = !RemoveExtraWhitespaces;
                    }
                    foreach (char c in span)
                    {
                        text.Append(c == '\u2581' ? ' ' : c);
                    }
                    break;
            }
        }
        FlushBytes(bytes, text);
        string result = text.ToString();
        if (_denormalizer is not null)
        {
            result = Encoding.UTF8.GetString(_denormalizer.Normalize(Encoding.UTF8.GetBytes(result)));
        }
        return result;
    }

    private static void FlushBytes(List<byte> bytes, StringBuilder text)
    {
        if (bytes.Count == 0)
        {
            return;
        }
        ReadOnlySpan<byte> span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
        while (!span.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(span, out Rune rune, out int consumed) == System.Buffers.OperationStatus.Done)
            {
                text.Append(rune.ToString());
                span = span[consumed..];
            }
            else
            {
                text.Append('\uFFFD'); // SentencePiece replaces each invalid byte separately
                span = span[1..];
            }
        }
        bytes.Clear();
    }

    private int MatchUserDefined(ReadOnlySpan<char> text)
    {
        foreach (string symbol in _userDefined)
        {
            if (text.StartsWith(symbol, StringComparison.Ordinal))
            {
                return symbol.Length; // longest first
            }
        }
        return 0;
    }

    private static int CharLength(string text, int index) =>
        char.IsHighSurrogate(text[index]) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]) ? 2 : 1;

    /// <summary>Higher score first; on equal scores the leftmost pair (SentencePiece's agenda order).</summary>
    private sealed class PairOrder : IComparer<(float Score, int Left)>
    {
        public static readonly PairOrder Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y)
        {
            int byScore = y.Score.CompareTo(x.Score);
            return byScore != 0 ? byScore : x.Left.CompareTo(y.Left);
        }
    }

}
