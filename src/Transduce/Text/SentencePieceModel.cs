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
internal sealed partial class SentencePieceModel
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
    private readonly SentencePieceNormalizer _normalizer;
    private readonly SentencePieceNormalizer? _denormalizer;
    private readonly string _unknownSurface;
    private readonly SentencePieceProto _proto;
    private readonly string _sourceName;

    private SentencePieceModel(SentencePieceProto model, string sourceName, SentencePieceNormalizerSpec? normalizer = null)
    {
        _proto = model;
        _sourceName = sourceName;
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
        SentencePieceNormalizerSpec spec = normalizer ?? model.Normalizer ?? new SentencePieceNormalizerSpec();
        _normalizer = new SentencePieceNormalizer(spec, TreatWhitespaceAsSuffix, userDefinedUtf8, sourceName);
        if (model.Denormalizer is { CharsMap.Length: > 0 } denormalizerSpec)
        {
            _denormalizer = new SentencePieceNormalizer(denormalizerSpec, false, [], sourceName);
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

    /// <summary>
    /// This model with <c>add_dummy_prefix</c> off (what transformers' non-legacy SentencePiece tokenizers load: no <c>▁</c>
    /// is put before the text, so text that does not start with a space does not start a word).
    /// </summary>
    internal SentencePieceModel WithoutDummyPrefix()
    {
        var spec = _proto.Normalizer ?? new SentencePieceNormalizerSpec();
        return new SentencePieceModel(_proto, _sourceName, new SentencePieceNormalizerSpec
        {
            Name = spec.Name, CharsMap = spec.CharsMap, AddDummyPrefix = false,
            RemoveExtraWhitespaces = spec.RemoveExtraWhitespaces, EscapeWhitespaces = spec.EscapeWhitespaces,
        });
    }

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
        SentencePieceProto parsed;
        try
        {
            parsed = SentencePieceProto.Parse(data);
        }
        catch (FormatException ex)
        {
            throw Bad(sourceName, $"not a SentencePiece model protobuf ({ex.Message})", ex);
        }
        if (parsed.Pieces.Count == 0)
        {
            throw Bad(sourceName, "not a SentencePiece model protobuf (no pieces)");
        }
        if (!parsed.HasTrainerSpec && parsed.Normalizer is null)
        {
            // A model is written pieces first, then its settings: a file cut short after a piece still parses.
            throw Bad(sourceName, $"the file ends after {parsed.Pieces.Count} pieces, without the trainer and normalizer settings that follow them (cut short?)");
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
    public string[] EncodePieces(string text) => [.. Encode(text).Select(p => p.Piece)];

    /// <summary>Segments <paramref name="text"/> into SentencePiece ids, as <c>spm_encode --output_format=id</c>; no BOS/EOS is added.</summary>
    /// <param name="text">The raw text (one sentence).</param>
    /// <returns>The ids; a run of unknown characters gives one <see cref="UnkId"/>.</returns>
    public int[] EncodeIds(string text) => [.. Encode(text).Select(p => p.Id)];

    internal int PieceToId(ReadOnlySpan<char> piece) => _allLookup.TryGetValue(piece, out int id) ? id : UnkId;

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

    private static int? ParseBytePiece(string piece)
    {
        if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && int.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out int value))
        {
            return value;
        }
        return null;
    }

    internal static InvalidDataException Bad(string source, string problem, Exception? inner = null) =>
        new($"{source}: invalid SentencePiece model: {problem}.", inner);
}
