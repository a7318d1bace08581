using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using Transduce.IO;
using Transduce.Checkpoints;
using static Transduce.Text.BpeSymbols;

namespace Transduce.Text;

/// <summary>
/// A byte-pair-encoding subword tokenizer with SentencePiece-style word-start markers and byte fallback.
/// </summary>
/// <remarks>
/// <para><b>Pieces and ids.</b> The id space is that of <see cref="Vocabulary"/>: ids 0–3 are the reserved tokens
/// <c>&lt;pad&gt; &lt;bos&gt; &lt;eos&gt; &lt;unk&gt;</c>, ids 4–259 the byte tokens <c>&lt;0x00&gt;</c>…<c>&lt;0xFF&gt;</c>,
/// id 260 the word-start marker <c>▁</c> (U+2581), then the base characters (most frequent first) and the merged pieces
/// (in merge order). Encoding never produces the reserved ids; in particular it never produces <c>&lt;unk&gt;</c>.</para>
/// <para><b>Pre-tokenisation.</b> Words are separated by the plain space U+0020 only. Every word starts with the marker
/// <c>▁</c>, and every space becomes a marker, so spaces are recoverable exactly, including leading, trailing and
/// repeated ones (an extra space is a lone <c>▁</c> piece). Tabs, newlines and no-break spaces (common before French
/// punctuation) are ordinary characters. With <see cref="SplitPunctuation"/> (the default), a word is further cut into runs of
/// letters (with combining marks), digits and other characters, so no piece mixes letters with punctuation
/// (<c>regardent.</c> → <c>▁regardent</c> <c>.</c>); apostrophes and hyphens between two letters count as letters,
/// keeping <c>l'homme</c> and <c>peut-être</c> together so that merges such as <c>▁l'</c> can be learnt.</para>
/// <para><b>Normalisation.</b> None: the text is taken as is, so <c>Decode(Encode(text)) == text</c> for every
/// well-formed string (NFC or not). The project runs with invariant globalization, where
/// <see cref="string.Normalize()"/> does not change non-ASCII text, so NFC/NFKC would have to be done elsewhere;
/// NFKC would also rewrite the no-break spaces of French text into plain spaces. Unpaired UTF-16 surrogates are
/// replaced by U+FFFD before encoding.</para>
/// <para><b>Byte fallback.</b> A character that is not a base piece (too rare in the training text, or any character
/// of an unseen script, e.g. emoji or CJK) is encoded as the byte tokens of its UTF-8 form, as SentencePiece's
/// <c>byte_fallback</c> does; byte tokens are never merged. A literal U+2581 in the input is always byte-encoded so
/// that it cannot be confused with the marker. Decoding concatenates the UTF-8 bytes of all pieces and decodes them;
/// invalid byte sequences (only possible for ids not produced by <see cref="EncodeToIds"/>) become U+FFFD.</para>
/// <para>Instances are immutable apart from a bounded per-word segmentation cache; all members are thread-safe.</para>
/// </remarks>
internal sealed class BpeTokenizer : ITokenizer
{
    /// <summary>The <c>format</c> tag written into and required in BPE model files.</summary>
    public const string FormatTag = "transduce-bpe";

    /// <summary>The model file format version written by <see cref="Save"/> and accepted by <see cref="Load"/>.</summary>
    public const int FormatVersion = 1;

    /// <summary>The word-start marker, U+2581 (LOWER ONE EIGHTH BLOCK), which stands for a preceding space.</summary>
    public const string WordStartMarker = "\u2581";

    internal const int ByteBaseId = 4;
    internal const int MarkerId = ByteBaseId + 256;
    internal const int FirstLearnedId = MarkerId + 1;

    private const int MaxCacheEntries = 1 << 17;

    private readonly string[] _pieces;
    private readonly Dictionary<int, int> _alphabet;
    private readonly (string Left, string Right)[] _merges;
    private readonly Dictionary<long, (int Rank, int Result)> _mergeRanks;
    private readonly byte[][] _pieceBytes;
    private readonly Lock _cacheLock = new();
    private readonly Dictionary<string, int[]> _markedCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int[]> _plainCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _markedLookup;
    private readonly Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _plainLookup;

    /// <summary>A model of <paramref name="pieces"/> (by id, <paramref name="ids"/> their index) and <paramref name="merges"/> in rank order, checked by the caller.</summary>
    internal BpeTokenizer(string[] pieces, Dictionary<string, int> ids, (string Left, string Right)[] merges, bool splitPunctuation)
    {
        _pieces = pieces;
        _merges = merges;
        SplitPunctuation = splitPunctuation;

        _alphabet = [];
        for (int id = FirstLearnedId; id < pieces.Length; id++)
        {
            if (IsSingleRune(pieces[id], out Rune rune))
            {
                _alphabet[rune.Value] = id;
            }
        }

        _mergeRanks = new Dictionary<long, (int, int)>(merges.Length);
        for (int rank = 0; rank < merges.Length; rank++)
        {
            (string left, string right) = merges[rank];
            _mergeRanks.TryAdd(PairKey(ids[left], ids[right]), (rank, ids[left + right]));
        }

        _pieceBytes = new byte[pieces.Length][];
        for (int id = 0; id < pieces.Length; id++)
        {
            _pieceBytes[id] = id < ByteBaseId ? []
                : id < MarkerId ? [(byte)(id - ByteBaseId)]
                : Encoding.UTF8.GetBytes(pieces[id].Replace('\u2581', ' '));
        }

        _markedLookup = _markedCache.GetAlternateLookup<ReadOnlySpan<char>>();
        _plainLookup = _plainCache.GetAlternateLookup<ReadOnlySpan<char>>();
        Vocabulary = Vocabulary.FromTokens(pieces, "BPE vocabulary");
    }

    /// <summary>The pieces and their ids (see the remarks on <see cref="BpeTokenizer"/> for the layout).</summary>
    public Vocabulary Vocabulary { get; }

    /// <summary>Whether pre-tokenisation splits words into runs of letters, digits and other characters (see <see cref="BpeTrainingOptions.SplitPunctuation"/>).</summary>
    public bool SplitPunctuation { get; }

    /// <summary>Number of merge rules, in the order they were learnt.</summary>
    public int MergeCount => _merges.Length;

    /// <summary>
    /// Learns a BPE model from <paramref name="sentences"/>. For a joint source/target vocabulary pass the sentences of
    /// both languages together. Words are counted first; then the most frequent adjacent pair of pieces (over all word
    /// occurrences) is merged repeatedly, updating pair counts incrementally for the affected words only. Ties are broken
    /// by the smaller (left id, right id), so the result depends only on the multiset of sentences, not on their order.
    /// </summary>
    /// <param name="sentences">Training text, one sentence per element.</param>
    /// <param name="options">Vocabulary size and other settings.</param>
    /// <returns>The trained tokenizer.</returns>
    /// <exception cref="ArgumentException">A sentence is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (see <see cref="BpeTrainingOptions.Validate"/>).</exception>
    public static BpeTokenizer Train(IEnumerable<string> sentences, BpeTrainingOptions options) => BpeTrainer.Train(sentences, options);

    /// <summary>Splits <paramref name="text"/> into pieces (the tokens of <see cref="Vocabulary"/>).</summary>
    /// <param name="text">Any text; it never fails (see the remarks on <see cref="BpeTokenizer"/>).</param>
    /// <returns>The pieces; empty for empty text.</returns>
    public string[] EncodePieces(string text) => Array.ConvertAll(EncodeToIds(text), id => _pieces[id]);

    /// <summary>Encodes <paramref name="text"/> as piece ids in the id space of <see cref="Vocabulary"/>.</summary>
    /// <param name="text">Any text; it never fails (see the remarks on <see cref="BpeTokenizer"/>).</param>
    /// <returns>The ids; empty for empty text. No <c>&lt;bos&gt;</c>/<c>&lt;eos&gt;</c> is added.</returns>
    public int[] EncodeToIds(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = BpePreTokenizer.ReplaceLoneSurrogates(text);
        var spans = new List<PreToken>();
        BpePreTokenizer.Split(text, SplitPunctuation, spans);
        var result = new List<int>(text.Length / 2 + 1);
        foreach (PreToken t in spans)
        {
            result.AddRange(SegmentCached(text.AsSpan(t.Start, t.Length), t.Marker));
        }
        return result.ToArray();
    }

    /// <inheritdoc />
    public IReadOnlyList<EncodedToken> EncodeToTokens(string text) => Array.ConvertAll(EncodeToIds(text), id => new EncodedToken(id, _pieces[id]));

    /// <inheritdoc />
    public int CountTokens(string text) => EncodeToIds(text).Length;

    /// <summary>
    /// Turns piece ids back into text: the pieces' UTF-8 bytes are concatenated (byte tokens contribute their byte,
    /// markers a space) and decoded, and the space that stands for the first word-start marker is removed.
    /// Decoding stops at the first <c>&lt;eos&gt;</c>; the other reserved ids are skipped.
    /// </summary>
    /// <param name="ids">Piece ids.</param>
    /// <returns>The text.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside <c>[0, Vocabulary.Count)</c>.</exception>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new ArrayBufferWriter<byte>(256);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_pieces.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Piece id must be in [0, {_pieces.Length}).");
            }
            if (id == Vocabulary.EosId)
            {
                break;
            }
            bytes.Write(_pieceBytes[id]);
        }
        return FinishDecode(bytes.WrittenSpan);
    }

    /// <summary>Decodes by the tokens' ids (every BPE piece is in the vocabulary, so nothing is unknown).</summary>
    public string DecodeTokens(IEnumerable<EncodedToken> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return Decode(tokens.Select(t => t.Id));
    }

    /// <summary>Serialises the model as JSON (the <c>bpe.json</c> format: format tag, version, settings, pieces by id, merges in rank order).</summary>
    /// <returns>The JSON text (indented, non-ASCII characters written as-is).</returns>
    public string ToJson() => BpeModelFile.Write(_pieces, _merges, SplitPunctuation);

    /// <summary>
    /// Writes the model to <paramref name="path"/> as UTF-8 JSON (see <see cref="ToJson"/>), atomically (temporary file,
    /// then rename). The parent directory is created if needed.
    /// </summary>
    /// <param name="path">Destination file path.</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        AtomicFile.WriteAllText(path, ToJson());
    }

    /// <summary>Reads a model written by <see cref="Save"/>.</summary>
    /// <param name="path">The model file.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="InvalidDataException">
    /// The file does not exist or is not a valid model file; the message names the file and the problem.
    /// </exception>
    public static BpeTokenizer Load(string path) => BpeModelFile.Load(path);

    /// <summary>Parses model JSON as produced by <see cref="ToJson"/> and checks its consistency.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">Name of where the JSON came from (usually a file path), used in error messages.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="InvalidDataException">
    /// The text is not JSON, a field is missing or has the wrong type or value, the vocabulary does not start with the
    /// reserved tokens, the 256 byte tokens and the marker, a piece occurs twice, a merge is malformed, uses a piece
    /// before it exists, repeats an earlier merge or produces a piece missing from the vocabulary, or a multi-character
    /// piece is produced by no merge.
    /// </exception>
    public static BpeTokenizer FromJson(string json, string sourceName) => BpeModelFile.Read(json, sourceName);

    private int[] SegmentCached(ReadOnlySpan<char> body, bool marker)
    {
        Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> lookup = marker ? _markedLookup : _plainLookup;
        lock (_cacheLock)
        {
            if (lookup.TryGetValue(body, out int[]? cached))
            {
                return cached;
            }
        }
        int[] segmented = Segment(body, marker);
        lock (_cacheLock)
        {
            if (_markedCache.Count + _plainCache.Count >= MaxCacheEntries)
            {
                _markedCache.Clear();
                _plainCache.Clear();
            }
            lookup[body] = segmented;
        }
        return segmented;
    }

    /// <summary>Applies the merges to one pre-token, always the lowest-ranked pair present first.</summary>
    private int[] Segment(ReadOnlySpan<char> body, bool marker)
    {
        var s = new List<int>(body.Length + 1);
        if (marker)
        {
            s.Add(MarkerId);
        }
        AppendSymbols(body, _alphabet, s);
        Span<int> span = CollectionsMarshal.AsSpan(s);
        int n = span.Length;
        while (n > 1)
        {
            int bestRank = int.MaxValue;
            int bestResult = -1;
            int a = 0, b = 0;
            for (int i = 0; i + 1 < n; i++)
            {
                if (_mergeRanks.TryGetValue(PairKey(span[i], span[i + 1]), out (int Rank, int Result) m) && m.Rank < bestRank)
                {
                    bestRank = m.Rank;
                    bestResult = m.Result;
                    a = span[i];
                    b = span[i + 1];
                }
            }
            if (bestResult < 0)
            {
                break;
            }
            n = ReplacePair(span[..n], a, b, bestResult);
        }
        return span[..n].ToArray();
    }

    private static string FinishDecode(ReadOnlySpan<byte> bytes)
    {
        string text = Encoding.UTF8.GetString(bytes);
        return text.StartsWith(' ') ? text[1..] : text;
    }
}
