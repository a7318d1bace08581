using System.Buffers.Binary;
using System.Text;

namespace Transduce.Text;

/// <summary>The segmentation algorithm of a SentencePiece model (<c>trainer_spec.model_type</c>).</summary>
internal enum SentencePieceModelType
{
    /// <summary>Unigram language model, segmented by Viterbi search over piece scores.</summary>
    Unigram = 1,

    /// <summary>Byte-pair encoding, segmented by greedily applying the best-scoring merge.</summary>
    Bpe = 2,
}

/// <summary>The kind of a piece in a SentencePiece model (<c>ModelProto.SentencePiece.Type</c>).</summary>
internal enum SentencePieceType
{
    /// <summary>An ordinary piece produced by segmentation.</summary>
    Normal = 1,

    /// <summary>The unknown piece (<c>&lt;unk&gt;</c>); exactly one per model.</summary>
    Unknown = 2,

    /// <summary>A control symbol such as <c>&lt;s&gt;</c> or <c>&lt;/s&gt;</c>; never produced by segmentation, invisible when decoding.</summary>
    Control = 3,

    /// <summary>A user-defined symbol, always segmented as one piece wherever it occurs in the text.</summary>
    UserDefined = 4,

    /// <summary>A piece kept in the vocabulary but never produced by segmentation.</summary>
    Unused = 5,

    /// <summary>A byte piece <c>&lt;0xXX&gt;</c> used for byte fallback.</summary>
    Byte = 6,
}

/// <summary>
/// A SentencePiece model loaded from a <c>.model</c> file (as written by <c>spm_train</c>, or shipped as
/// <c>source.spm</c>/<c>target.spm</c> with MarianMT models), which encodes and decodes exactly like SentencePiece's
/// <c>spm_encode</c>/<c>spm_decode</c>. Self-contained: the model protobuf is read directly, with no native library or
/// protobuf package.
/// </summary>
/// <remarks>
/// <para><b>Normalisation.</b> SentencePiece models carry their own normalisation rules (for the default
/// <c>nmt_nfkc</c>: NFKC plus NMT-specific rules such as mapping no-break spaces and control characters) precompiled
/// into a double-array trie, the <c>precompiled_charsmap</c>. This class applies that trie itself, exactly as
/// SentencePiece does (longest match on UTF-8 bytes), so it does not depend on <see cref="string.Normalize()"/>,
/// which does nothing for non-ASCII text under the project's invariant globalization. Then, as configured in the model:
/// leading, trailing and repeated spaces are removed, a dummy <c>▁</c> prefix is added, and spaces become <c>▁</c>
/// (U+2581). User-defined symbols are never normalised. A model without a charsmap (e.g. <c>identity</c>) only gets the
/// whitespace handling. Lone UTF-16 surrogates in the input are replaced by U+FFFD first (they have no UTF-8 form).</para>
/// <para><b>Segmentation.</b> Unigram models use SentencePiece's Viterbi search (unknown characters scored as the
/// lowest piece score minus 10, user-defined symbols favoured); BPE models repeatedly merge the adjacent pair whose
/// merged piece has the highest score (leftmost on ties), and unused merged pieces are split back. Consecutive unknown
/// characters are merged into one unknown piece, which keeps their (normalised) text as the piece string and has id
/// <see cref="UnkId"/>; with <see cref="ByteFallback"/> they become <c>&lt;0xXX&gt;</c> byte pieces instead.</para>
/// <para><b>Not supported:</b> the <c>word</c> and <c>char</c> model types (rejected on load), sampling/n-best encoding,
/// and <c>treat_whitespace_as_suffix</c> models are handled in normalisation but untested.</para>
/// <para>Instances are immutable and thread-safe.</para>
/// </remarks>
internal sealed class SentencePieceModel
{
    /// <summary>The SentencePiece whitespace symbol, U+2581 (LOWER ONE EIGHTH BLOCK).</summary>
    public const string SpaceSymbol = "\u2581";

    private const float UnknownPenalty = 10f;
    private const string DefaultUnknownSurface = " \u2047 ";

    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly SentencePieceType[] _types;
    private readonly int[] _utf8Lengths;
    private readonly int[] _byteValues;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _allLookup;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _segmentLookup;
    private readonly int _maxSegmentPieceChars;
    private readonly string[] _userDefined;
    private readonly float _minScore;
    private readonly float _maxScore;
    private readonly int[] _byteIds;
    private readonly Normalizer _normalizer;
    private readonly Normalizer? _denormalizer;
    private readonly string _unknownSurface;

    private SentencePieceModel(ParsedModel model, string sourceName)
    {
        int count = model.Pieces.Count;
        _pieces = new string[count];
        _scores = new float[count];
        _types = new SentencePieceType[count];
        _utf8Lengths = new int[count];
        _byteValues = new int[count];
        var all = new Dictionary<string, int>(count, StringComparer.Ordinal);
        var segment = new Dictionary<string, int>(count, StringComparer.Ordinal);
        var userDefined = new List<string>();
        _minScore = float.MaxValue;
        _maxScore = 1.17549435E-38f; // SentencePiece starts from FLT_MIN, the smallest normal positive float.
        int unk = -1;
        for (int id = 0; id < count; id++)
        {
            (string piece, float score, int type) = model.Pieces[id];
            if (piece.Length == 0)
            {
                throw Bad(sourceName, $"piece {id} is empty");
            }
            if (type is < 1 or > 6)
            {
                throw Bad(sourceName, $"piece {id} has unknown type {type}");
            }
            if (!all.TryAdd(piece, id))
            {
                throw Bad(sourceName, $"piece \"{piece}\" occurs twice (ids {all[piece]} and {id})");
            }
            var kind = (SentencePieceType)type;
            _pieces[id] = piece;
            _scores[id] = score;
            _types[id] = kind;
            _utf8Lengths[id] = Encoding.UTF8.GetByteCount(piece);
            _byteValues[id] = -1;
            switch (kind)
            {
                case SentencePieceType.Normal:
                    _minScore = Math.Min(_minScore, score);
                    _maxScore = Math.Max(_maxScore, score);
                    segment.Add(piece, id);
                    break;
                case SentencePieceType.UserDefined:
                    segment.Add(piece, id);
                    userDefined.Add(piece);
                    break;
                case SentencePieceType.Unused:
                    segment.Add(piece, id);
                    break;
                case SentencePieceType.Unknown:
                    if (unk >= 0)
                    {
                        throw Bad(sourceName, $"more than one unknown piece (ids {unk} and {id})");
                    }
                    unk = id;
                    break;
                case SentencePieceType.Byte:
                    _byteValues[id] = ParseBytePiece(piece)
                        ?? throw Bad(sourceName, $"byte piece {id} \"{piece}\" is not of the form <0xXX>");
                    break;
            }
        }
        if (unk < 0)
        {
            throw Bad(sourceName, "the model has no unknown piece");
        }

        ModelType = model.ModelType switch
        {
            1 => SentencePieceModelType.Unigram,
            2 => SentencePieceModelType.Bpe,
            3 => throw Bad(sourceName, "model type 'word' is not supported (only unigram and bpe)"),
            4 => throw Bad(sourceName, "model type 'char' is not supported (only unigram and bpe)"),
            _ => throw Bad(sourceName, $"unknown model type {model.ModelType}"),
        };

        UnkId = unk;
        BosId = ControlId(all, model.BosPiece);
        EosId = ControlId(all, model.EosPiece);
        PadId = ControlId(all, model.PadPiece);
        ByteFallback = model.ByteFallback;
        TreatWhitespaceAsSuffix = model.TreatWhitespaceAsSuffix;
        _unknownSurface = model.UnknownSurface ?? DefaultUnknownSurface;

        _byteIds = new int[256];
        Array.Fill(_byteIds, -1);
        for (int id = 0; id < count; id++)
        {
            if (_byteValues[id] >= 0)
            {
                _byteIds[_byteValues[id]] = id;
            }
        }
        if (ByteFallback && Array.IndexOf(_byteIds, -1) >= 0)
        {
            throw Bad(sourceName, $"byte_fallback is set but byte piece <0x{Array.IndexOf(_byteIds, -1):X2}> is missing");
        }

        _allLookup = all.GetAlternateLookup<ReadOnlySpan<char>>();
        _segmentLookup = segment.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (string piece in segment.Keys)
        {
            _maxSegmentPieceChars = Math.Max(_maxSegmentPieceChars, piece.Length);
        }
        userDefined.Sort(static (a, b) => b.Length.CompareTo(a.Length));
        _userDefined = [.. userDefined];

        byte[][] userDefinedUtf8 = [.. userDefined.Select(Encoding.UTF8.GetBytes)];
        NormalizerSpec spec = model.Normalizer ?? new NormalizerSpec();
        _normalizer = new Normalizer(spec, TreatWhitespaceAsSuffix, userDefinedUtf8, sourceName);
        if (model.Denormalizer is { CharsMap.Length: > 0 } denormalizerSpec)
        {
            _denormalizer = new Normalizer(denormalizerSpec, false, [], sourceName);
        }
        NormalizerName = spec.Name ?? "";
        HasNormalizationRules = spec.CharsMap is { Length: > 0 };
        AddDummyPrefix = spec.AddDummyPrefix;
        RemoveExtraWhitespaces = spec.RemoveExtraWhitespaces;
        EscapeWhitespaces = spec.EscapeWhitespaces;
        Pieces = Array.AsReadOnly(_pieces);
    }

    /// <summary>The segmentation algorithm.</summary>
    public SentencePieceModelType ModelType { get; }

    /// <summary>All pieces, indexed by SentencePiece id.</summary>
    public IReadOnlyList<string> Pieces { get; }

    /// <summary>Number of pieces (the vocabulary size).</summary>
    public int Count => _pieces.Length;

    /// <summary>Id of the unknown piece (always present).</summary>
    public int UnkId { get; }

    /// <summary>Id of the beginning-of-sentence control piece (<c>&lt;s&gt;</c> by default), or -1 if the model has none (e.g. MarianMT models).</summary>
    public int BosId { get; }

    /// <summary>Id of the end-of-sentence control piece (<c>&lt;/s&gt;</c> by default), or -1 if the model has none.</summary>
    public int EosId { get; }

    /// <summary>Id of the padding control piece (<c>&lt;pad&gt;</c> by default), or -1 if the model has none (the <c>spm_train</c> default).</summary>
    public int PadId { get; }

    /// <summary>Whether unknown characters are encoded as UTF-8 byte pieces <c>&lt;0xXX&gt;</c> instead of <see cref="UnkId"/>.</summary>
    public bool ByteFallback { get; }

    /// <summary>Whether the model puts the whitespace symbol at the end of words instead of the start (rare; untested).</summary>
    public bool TreatWhitespaceAsSuffix { get; }

    /// <summary>
    /// Name of the model's normalisation rule (<c>nmt_nfkc</c> — the <c>spm_train</c> default and what MarianMT models
    /// use —, <c>nfkc</c>, <c>nmt_nfkc_cf</c>, <c>nfkc_cf</c>, <c>identity</c>, or a user rule name); empty if not recorded.
    /// </summary>
    public string NormalizerName { get; }

    /// <summary>
    /// Whether the model carries a precompiled normalisation charsmap (NFKC-style character rewriting), which
    /// <see cref="Normalize"/> applies; false for <c>identity</c> models, which only get whitespace handling.
    /// </summary>
    public bool HasNormalizationRules { get; }

    /// <summary>Whether a <c>▁</c> is put before the first word.</summary>
    public bool AddDummyPrefix { get; }

    /// <summary>Whether leading, trailing and repeated spaces are removed.</summary>
    public bool RemoveExtraWhitespaces { get; }

    /// <summary>Whether spaces are written as <see cref="SpaceSymbol"/>.</summary>
    public bool EscapeWhitespaces { get; }

    /// <summary>The score of piece <paramref name="id"/> (log probability for unigram, negated merge rank for BPE).</summary>
    /// <param name="id">A piece id in <c>[0, Count)</c>.</param>
    public float GetScore(int id) => _scores[CheckId(id)];

    /// <summary>The type of piece <paramref name="id"/>.</summary>
    /// <param name="id">A piece id in <c>[0, Count)</c>.</param>
    public SentencePieceType GetPieceType(int id) => _types[CheckId(id)];

    /// <summary>The piece with id <paramref name="id"/>.</summary>
    /// <param name="id">A piece id in <c>[0, Count)</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is outside <c>[0, Count)</c>.</exception>
    public string IdToPiece(int id) => _pieces[CheckId(id)];

    /// <summary>The id of <paramref name="piece"/>, or <see cref="UnkId"/> if it is not in the model (as SentencePiece's <c>PieceToId</c>).</summary>
    /// <param name="piece">The piece.</param>
    public int PieceToId(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        return PieceToId(piece.AsSpan());
    }

    /// <summary>Reads a SentencePiece <c>.model</c> file.</summary>
    /// <param name="path">The model file.</param>
    /// <returns>The model.</returns>
    /// <exception cref="InvalidDataException">
    /// The file does not exist or cannot be read, is not a SentencePiece model protobuf, or uses an unsupported model
    /// type; the message names the file and the problem.
    /// </exception>
    public static SentencePieceModel Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            string problem = ex is FileNotFoundException or DirectoryNotFoundException ? "file not found" : ex.Message;
            throw new InvalidDataException($"{path}: cannot read SentencePiece model: {problem}.", ex);
        }
        return FromBytes(bytes, path);
    }

    /// <summary>Parses a serialised SentencePiece model (the contents of a <c>.model</c> file).</summary>
    /// <param name="data">The protobuf bytes.</param>
    /// <param name="sourceName">Where the bytes came from (usually a file path), used in error messages.</param>
    /// <returns>The model.</returns>
    /// <exception cref="InvalidDataException">The bytes are not a valid SentencePiece model or use an unsupported model type.</exception>
    public static SentencePieceModel FromBytes(ReadOnlySpan<byte> data, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        if (data.IsEmpty)
        {
            throw Bad(sourceName, "the file is empty");
        }
        ParsedModel parsed;
        try
        {
            parsed = ParsedModel.Parse(data);
        }
        catch (FormatException ex)
        {
            throw Bad(sourceName, $"not a SentencePiece model protobuf ({ex.Message})", ex);
        }
        if (parsed.Pieces.Count == 0)
        {
            throw Bad(sourceName, "not a SentencePiece model protobuf (no pieces)");
        }
        return new SentencePieceModel(parsed, sourceName);
    }

    /// <summary>
    /// Applies the model's normalisation (charsmap and whitespace handling) as SentencePiece does before segmentation;
    /// with the default settings the result starts with <c>▁</c> and has every space replaced by <c>▁</c>.
    /// </summary>
    /// <param name="text">The raw text.</param>
    /// <returns>The normalised text (empty if <paramref name="text"/> is empty or all whitespace).</returns>
    public string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Encoding.UTF8.GetString(_normalizer.Normalize(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>Segments <paramref name="text"/> into pieces, as <c>spm_encode --output_format=piece</c>.</summary>
    /// <param name="text">The raw text (one sentence).</param>
    /// <returns>The pieces; empty for empty or all-whitespace text.</returns>
    public string[] EncodePieces(string text)
    {
        List<(string Piece, int Id)> result = Encode(text);
        var pieces = new string[result.Count];
        for (int i = 0; i < pieces.Length; i++)
        {
            pieces[i] = result[i].Piece;
        }
        return pieces;
    }

    /// <summary>Segments <paramref name="text"/> into SentencePiece ids, as <c>spm_encode --output_format=id</c>; no BOS/EOS is added.</summary>
    /// <param name="text">The raw text (one sentence).</param>
    /// <returns>The ids; a run of unknown characters gives one <see cref="UnkId"/>.</returns>
    public int[] EncodeIds(string text)
    {
        List<(string Piece, int Id)> result = Encode(text);
        var ids = new int[result.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = result[i].Id;
        }
        return ids;
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

    private List<(string Piece, int Id)> Encode(string text)
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

    private string Decode(List<(string Piece, int Id)> pieces)
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

    private int PieceToId(ReadOnlySpan<char> piece) => _allLookup.TryGetValue(piece, out int id) ? id : UnkId;

    private int CheckId(int id)
    {
        if ((uint)id >= (uint)_pieces.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Piece id must be in [0, {_pieces.Length}).");
        }
        return id;
    }

    private int ControlId(Dictionary<string, int> all, string piece) =>
        all.TryGetValue(piece, out int id) && _types[id] == SentencePieceType.Control ? id : -1;

    private static int CharLength(string text, int index) =>
        char.IsHighSurrogate(text[index]) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]) ? 2 : 1;

    private static int? ParseBytePiece(string piece)
    {
        if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && int.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out int value))
        {
            return value;
        }
        return null;
    }

    private static InvalidDataException Bad(string source, string problem, Exception? inner = null) =>
        new($"{source}: invalid SentencePiece model: {problem}.", inner);

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

    /// <summary>The parts of <c>NormalizerSpec</c> that affect encoding.</summary>
    private sealed class NormalizerSpec
    {
        public string? Name { get; set; }

        public byte[]? CharsMap { get; set; }

        public bool AddDummyPrefix { get; set; } = true;

        public bool RemoveExtraWhitespaces { get; set; } = true;

        public bool EscapeWhitespaces { get; set; } = true;
    }

    /// <summary>SentencePiece's normaliser, working on UTF-8 bytes like the original so that its charsmap applies exactly.</summary>
    private sealed class Normalizer
    {
        private static readonly byte[] SpaceSymbolUtf8 = [0xE2, 0x96, 0x81];
        private static readonly byte[] ReplacementUtf8 = [0xEF, 0xBF, 0xBD];

        private readonly NormalizerSpec _spec;
        private readonly bool _suffix;
        private readonly byte[][] _userDefined;
        private readonly uint[]? _trie;
        private readonly byte[] _replacements = [];

        public Normalizer(NormalizerSpec spec, bool treatWhitespaceAsSuffix, byte[][] userDefined, string sourceName)
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
                    throw Bad(sourceName, "normalization charsmap is truncated");
                }
                uint trieSize = BinaryPrimitives.ReadUInt32LittleEndian(blob);
                if (trieSize >= (uint)blob.Length - 4 || trieSize % 4 != 0 || trieSize == 0)
                {
                    throw Bad(sourceName, $"normalization charsmap trie size {trieSize} does not fit its {blob.Length}-byte blob");
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

    /// <summary>The fields of a <c>ModelProto</c> this class uses, read from the protobuf wire format.</summary>
    private sealed class ParsedModel
    {
        public List<(string Piece, float Score, int Type)> Pieces { get; } = [];

        public int ModelType { get; private set; } = 1;

        public bool ByteFallback { get; private set; }

        public bool TreatWhitespaceAsSuffix { get; private set; }

        public string? UnknownSurface { get; private set; }

        public string BosPiece { get; private set; } = "<s>";

        public string EosPiece { get; private set; } = "</s>";

        public string PadPiece { get; private set; } = "<pad>";

        public NormalizerSpec? Normalizer { get; private set; }

        public NormalizerSpec? Denormalizer { get; private set; }

        public static ParsedModel Parse(ReadOnlySpan<byte> data)
        {
            var model = new ParsedModel();
            var reader = new ProtoReader(data);
            while (reader.Next(out int field, out int wireType))
            {
                switch (field, wireType)
                {
                    case (1, 2):
                        model.Pieces.Add(ParsePiece(reader.ReadBytes()));
                        break;
                    case (2, 2):
                        model.ParseTrainerSpec(reader.ReadBytes());
                        break;
                    case (3, 2):
                        model.Normalizer = ParseNormalizerSpec(reader.ReadBytes());
                        break;
                    case (5, 2):
                        model.Denormalizer = ParseNormalizerSpec(reader.ReadBytes());
                        break;
                    default:
                        reader.Skip(wireType);
                        break;
                }
            }
            return model;
        }

        private static (string Piece, float Score, int Type) ParsePiece(ReadOnlySpan<byte> data)
        {
            string piece = "";
            float score = 0;
            int type = 1;
            var reader = new ProtoReader(data);
            while (reader.Next(out int field, out int wireType))
            {
                switch (field, wireType)
                {
                    case (1, 2):
                        piece = ProtoReader.Utf8(reader.ReadBytes());
                        break;
                    case (2, 5):
                        score = BitConverter.Int32BitsToSingle((int)reader.ReadFixed32());
                        break;
                    case (3, 0):
                        type = (int)reader.ReadVarint();
                        break;
                    default:
                        reader.Skip(wireType);
                        break;
                }
            }
            return (piece, score, type);
        }

        private void ParseTrainerSpec(ReadOnlySpan<byte> data)
        {
            var reader = new ProtoReader(data);
            while (reader.Next(out int field, out int wireType))
            {
                switch (field, wireType)
                {
                    case (3, 0):
                        ModelType = (int)reader.ReadVarint();
                        break;
                    case (24, 0):
                        TreatWhitespaceAsSuffix = reader.ReadVarint() != 0;
                        break;
                    case (35, 0):
                        ByteFallback = reader.ReadVarint() != 0;
                        break;
                    case (44, 2):
                        UnknownSurface = ProtoReader.Utf8(reader.ReadBytes());
                        break;
                    case (46, 2):
                        BosPiece = ProtoReader.Utf8(reader.ReadBytes());
                        break;
                    case (47, 2):
                        EosPiece = ProtoReader.Utf8(reader.ReadBytes());
                        break;
                    case (48, 2):
                        PadPiece = ProtoReader.Utf8(reader.ReadBytes());
                        break;
                    default:
                        reader.Skip(wireType);
                        break;
                }
            }
        }

        private static NormalizerSpec ParseNormalizerSpec(ReadOnlySpan<byte> data)
        {
            var spec = new NormalizerSpec();
            var reader = new ProtoReader(data);
            while (reader.Next(out int field, out int wireType))
            {
                switch (field, wireType)
                {
                    case (1, 2):
                        spec.Name = ProtoReader.Utf8(reader.ReadBytes());
                        break;
                    case (2, 2):
                        spec.CharsMap = reader.ReadBytes().ToArray();
                        break;
                    case (3, 0):
                        spec.AddDummyPrefix = reader.ReadVarint() != 0;
                        break;
                    case (4, 0):
                        spec.RemoveExtraWhitespaces = reader.ReadVarint() != 0;
                        break;
                    case (5, 0):
                        spec.EscapeWhitespaces = reader.ReadVarint() != 0;
                        break;
                    default:
                        reader.Skip(wireType);
                        break;
                }
            }
            return spec;
        }
    }

    /// <summary>A minimal protobuf wire-format reader; throws <see cref="FormatException"/> on malformed input.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _data = data;

        public bool Next(out int field, out int wireType)
        {
            if (_data.IsEmpty)
            {
                field = 0;
                wireType = 0;
                return false;
            }
            ulong key = ReadVarint();
            field = (int)(key >> 3);
            wireType = (int)(key & 7);
            if (field == 0 || key >> 3 > int.MaxValue)
            {
                throw new FormatException("invalid field number 0");
            }
            return true;
        }

        public ulong ReadVarint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_data.IsEmpty)
                {
                    throw new FormatException("truncated varint");
                }
                byte b = _data[0];
                _data = _data[1..];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }
            throw new FormatException("varint longer than 10 bytes");
        }

        public uint ReadFixed32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

        public ReadOnlySpan<byte> ReadBytes()
        {
            ulong length = ReadVarint();
            if (length > (ulong)_data.Length)
            {
                throw new FormatException($"length-delimited field of {length} bytes runs past the end of its message");
            }
            return Take((int)length);
        }

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case 0:
                    ReadVarint();
                    break;
                case 1:
                    Take(8);
                    break;
                case 2:
                    ReadBytes();
                    break;
                case 5:
                    Take(4);
                    break;
                default:
                    throw new FormatException($"unsupported wire type {wireType}");
            }
        }

        public static string Utf8(ReadOnlySpan<byte> bytes)
        {
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
            }
            catch (DecoderFallbackException ex)
            {
                throw new FormatException("a string field is not valid UTF-8", ex);
            }
        }

        private ReadOnlySpan<byte> Take(int count)
        {
            if (_data.Length < count)
            {
                throw new FormatException("truncated field");
            }
            ReadOnlySpan<byte> result = _data[..count];
            _data = _data[count..];
            return result;
        }
    }
}
