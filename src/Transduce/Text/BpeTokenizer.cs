using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Transduce.Checkpoints;

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
/// invalid byte sequences (only possible for ids not produced by <see cref="Encode"/>) become U+FFFD.</para>
/// <para>Instances are immutable apart from a bounded per-word segmentation cache; all members are thread-safe.</para>
/// </remarks>
internal sealed class BpeTokenizer
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

    private const string PreTokenizerWhitespace = "whitespace";
    private const string PreTokenizerClasses = "whitespace-classes";
    private const string NormalizationNone = "none";
    private const int MaxCacheEntries = 1 << 17;

    private static readonly string[] ReservedTokens =
        [Vocabulary.PadToken, Vocabulary.BosToken, Vocabulary.EosToken, Vocabulary.UnkToken];

    private readonly string[] _pieces;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<int, int> _alphabet;
    private readonly (string Left, string Right)[] _merges;
    private readonly Dictionary<long, (int Rank, int Result)> _mergeRanks;
    private readonly byte[][] _pieceBytes;
    private readonly Lock _cacheLock = new();
    private readonly Dictionary<string, int[]> _markedCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int[]> _plainCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _markedLookup;
    private readonly Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _plainLookup;

    private BpeTokenizer(string[] pieces, Dictionary<string, int> ids, (string Left, string Right)[] merges, bool splitPunctuation)
    {
        _pieces = pieces;
        _ids = ids;
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
        Vocabulary = Vocabulary.FromJson(VocabularyJson(pieces), "BPE vocabulary");
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
    public static BpeTokenizer Train(IEnumerable<string> sentences, BpeTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        bool split = options.SplitPunctuation;

        // 1. Count pre-tokens (words), separately for those with and without the word-start marker.
        var marked = new Dictionary<string, long>(StringComparer.Ordinal);
        var plain = new Dictionary<string, long>(StringComparer.Ordinal);
        var markedLookup = marked.GetAlternateLookup<ReadOnlySpan<char>>();
        var plainLookup = plain.GetAlternateLookup<ReadOnlySpan<char>>();
        var spans = new List<PreToken>();
        foreach (string? sentence in sentences)
        {
            if (sentence is null)
            {
                throw new ArgumentException("A sentence is null.", nameof(sentences));
            }
            string text = BpePreTokenizer.ReplaceLoneSurrogates(sentence);
            BpePreTokenizer.Split(text, split, spans);
            foreach (PreToken t in spans)
            {
                ReadOnlySpan<char> body = text.AsSpan(t.Start, t.Length);
                ref long count = ref t.Marker
                    ? ref CollectionsMarshal.GetValueRefOrAddDefault(markedLookup, body, out _)
                    : ref CollectionsMarshal.GetValueRefOrAddDefault(plainLookup, body, out _);
                count++;
            }
        }
        var words = new List<(string Body, bool Marker, long Count)>(marked.Count + plain.Count);
        foreach (KeyValuePair<string, long> kv in marked)
        {
            words.Add((kv.Key, true, kv.Value));
        }
        foreach (KeyValuePair<string, long> kv in plain)
        {
            words.Add((kv.Key, false, kv.Value));
        }

        // 2. The alphabet: characters occurring often enough, most frequent first, as many as fit.
        var runeCounts = new Dictionary<int, long>();
        foreach ((string body, _, long count) in words)
        {
            foreach (Rune rune in body.EnumerateRunes())
            {
                if (rune.Value != '\u2581')
                {
                    CollectionsMarshal.GetValueRefOrAddDefault(runeCounts, rune.Value, out _) += count;
                }
            }
        }
        var characters = new List<KeyValuePair<int, long>>();
        foreach (KeyValuePair<int, long> kv in runeCounts)
        {
            if (kv.Value >= options.MinCharacterFrequency)
            {
                characters.Add(kv);
            }
        }
        characters.Sort(static (x, y) => x.Value != y.Value ? y.Value.CompareTo(x.Value) : x.Key.CompareTo(y.Key));
        if (characters.Count > options.VocabSize - FirstLearnedId)
        {
            characters.RemoveRange(options.VocabSize - FirstLearnedId, characters.Count - (options.VocabSize - FirstLearnedId));
        }

        var pieces = new List<string>(options.VocabSize);
        pieces.AddRange(BasePieces());
        foreach (KeyValuePair<int, long> kv in characters)
        {
            pieces.Add(char.ConvertFromUtf32(kv.Key));
        }
        var ids = new Dictionary<string, int>(options.VocabSize, StringComparer.Ordinal);
        for (int id = 0; id < pieces.Count; id++)
        {
            ids.Add(pieces[id], id);
        }
        var alphabet = new Dictionary<int, int>(characters.Count);
        for (int i = 0; i < characters.Count; i++)
        {
            alphabet.Add(characters[i].Key, FirstLearnedId + i);
        }

        // 3. Words as symbol sequences, and the initial pair statistics.
        int wordCount = words.Count;
        var symbols = new int[wordCount][];
        var lengths = new int[wordCount];
        var frequencies = new long[wordCount];
        var buffer = new List<int>();
        var pairCounts = new Dictionary<long, long>();
        var where = new Dictionary<long, List<int>>();
        for (int w = 0; w < wordCount; w++)
        {
            buffer.Clear();
            if (words[w].Marker)
            {
                buffer.Add(MarkerId);
            }
            AppendSymbols(words[w].Body, alphabet, buffer);
            int[] s = buffer.ToArray();
            symbols[w] = s;
            lengths[w] = s.Length;
            long f = words[w].Count;
            frequencies[w] = f;
            for (int i = 0; i + 1 < s.Length; i++)
            {
                if (IsMergeable(s[i]) && IsMergeable(s[i + 1]))
                {
                    long key = PairKey(s[i], s[i + 1]);
                    CollectionsMarshal.GetValueRefOrAddDefault(pairCounts, key, out _) += f;
                    AddWhere(where, key, w);
                }
            }
        }

        // Max-heap on (count, then smaller pair key) with lazy deletion: an entry is valid only if its count is the
        // pair's current count. Counts that grow get a fresh entry; stale entries with a larger count are re-queued.
        var heap = new PriorityQueue<long, (long NegCount, long Key)>(pairCounts.Count);
        foreach (KeyValuePair<long, long> kv in pairCounts)
        {
            heap.Enqueue(kv.Key, (-kv.Value, kv.Key));
        }

        // 4. Merge.
        var merges = new List<(string Left, string Right)>();
        var recorded = new HashSet<long>();
        var forbidden = new HashSet<long>();
        var stamps = new int[wordCount];
        var delta = new Dictionary<long, long>();
        int step = 0;
        long minPair = Math.Max(1, options.MinPairFrequency);
        while (pieces.Count < options.VocabSize && heap.TryDequeue(out long pair, out (long NegCount, long Key) priority))
        {
            long queued = -priority.NegCount;
            long current = pairCounts.GetValueOrDefault(pair);
            if (current != queued)
            {
                if (current > 0 && current < queued)
                {
                    heap.Enqueue(pair, (-current, pair));
                }
                continue;
            }
            if (current < minPair)
            {
                break;
            }
            if (forbidden.Contains(pair))
            {
                continue;
            }
            int a = (int)(pair >> 32);
            int b = (int)(pair & 0xFFFFFFFF);
            string merged = pieces[a] + pieces[b];
            if (!ids.TryGetValue(merged, out int c))
            {
                c = pieces.Count;
                pieces.Add(merged);
                ids.Add(merged, c);
            }
            else if (c < FirstLearnedId)
            {
                // The concatenation spells a reserved or byte token (e.g. "<unk>"); such a piece would be ambiguous.
                forbidden.Add(pair);
                continue;
            }
            if (recorded.Add(pair))
            {
                merges.Add((pieces[a], pieces[b]));
            }

            step++;
            where.Remove(pair, out List<int>? occurrences);
            delta.Clear();
            foreach (int w in occurrences ?? [])
            {
                if (stamps[w] == step)
                {
                    continue;
                }
                stamps[w] = step;
                MergeInWord(symbols[w], ref lengths[w], frequencies[w], w, a, b, c, delta, where);
            }
            foreach (KeyValuePair<long, long> kv in delta)
            {
                if (kv.Value == 0)
                {
                    continue;
                }
                ref long count = ref CollectionsMarshal.GetValueRefOrAddDefault(pairCounts, kv.Key, out _);
                count += kv.Value;
                long updated = count;
                if (updated <= 0)
                {
                    pairCounts.Remove(kv.Key);
                }
                else if (kv.Value > 0)
                {
                    heap.Enqueue(kv.Key, (-updated, kv.Key));
                }
            }
        }

        return new BpeTokenizer(pieces.ToArray(), ids, merges.ToArray(), split);
    }

    /// <summary>Splits <paramref name="text"/> into pieces (the tokens of <see cref="Vocabulary"/>).</summary>
    /// <param name="text">Any text; it never fails (see the remarks on <see cref="BpeTokenizer"/>).</param>
    /// <returns>The pieces; empty for empty text.</returns>
    public string[] EncodePieces(string text)
    {
        int[] ids = Encode(text);
        var pieces = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            pieces[i] = _pieces[ids[i]];
        }
        return pieces;
    }

    /// <summary>Encodes <paramref name="text"/> as piece ids in the id space of <see cref="Vocabulary"/>.</summary>
    /// <param name="text">Any text; it never fails (see the remarks on <see cref="BpeTokenizer"/>).</param>
    /// <returns>The ids; empty for empty text. No <c>&lt;bos&gt;</c>/<c>&lt;eos&gt;</c> is added.</returns>
    public int[] Encode(string text)
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

    /// <summary>
    /// Turns piece ids back into text: the pieces' UTF-8 bytes are concatenated (byte tokens contribute their byte,
    /// markers a space) and decoded, and the space that stands for the first word-start marker is removed.
    /// The reserved ids 0–3 are skipped.
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
            bytes.Write(_pieceBytes[id]);
        }
        return FinishDecode(bytes.WrittenSpan);
    }

    /// <summary>
    /// Turns pieces back into text, like <see cref="Decode"/>. Reserved tokens are skipped; strings that are not
    /// pieces of this model are taken as text (with <c>▁</c> read as a space).
    /// </summary>
    /// <param name="pieces">Pieces, e.g. from <see cref="EncodePieces"/>.</param>
    /// <returns>The text.</returns>
    /// <exception cref="ArgumentException">A piece is null.</exception>
    public string DecodePieces(IEnumerable<string> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        var bytes = new ArrayBufferWriter<byte>(256);
        foreach (string? piece in pieces)
        {
            if (piece is null)
            {
                throw new ArgumentException("A piece is null.", nameof(pieces));
            }
            if (_ids.TryGetValue(piece, out int id))
            {
                bytes.Write(_pieceBytes[id]);
            }
            else
            {
                bytes.Write(Encoding.UTF8.GetBytes(piece.Replace('\u2581', ' ')));
            }
        }
        return FinishDecode(bytes.WrittenSpan);
    }

    /// <summary>
    /// Serialises the model as JSON: <c>{"format":"transduce-bpe","version":1,"normalization":"none",
    /// "pre_tokenizer":…,"byte_fallback":true,"vocab":[…],"merges":["left right",…]}</c>. <c>vocab</c> lists every
    /// piece by id; each merge is its two pieces separated by one space (pieces never contain U+0020).
    /// </summary>
    /// <returns>The JSON text (indented, non-ASCII characters written as-is).</returns>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions
        {
            Indented = true,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }))
        {
            writer.WriteStartObject();
            writer.WriteString("format", FormatTag);
            writer.WriteNumber("version", FormatVersion);
            writer.WriteString("normalization", NormalizationNone);
            writer.WriteString("pre_tokenizer", SplitPunctuation ? PreTokenizerClasses : PreTokenizerWhitespace);
            writer.WriteBoolean("byte_fallback", true);
            writer.WriteStartArray("vocab");
            foreach (string piece in _pieces)
            {
                writer.WriteStringValue(piece);
            }
            writer.WriteEndArray();
            writer.WriteStartArray("merges");
            foreach ((string left, string right) in _merges)
            {
                writer.WriteStringValue(left + " " + right);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length);
    }

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
    public static BpeTokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new InvalidDataException($"{path}: BPE model file not found.", new FileNotFoundException(null, path));
        }
        string json = StrictUtf8.ReadFile(path) ?? throw Bad(path, "not valid UTF-8");
        return FromJson(json, path);
    }

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
    public static BpeTokenizer FromJson(string json, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);
        using (JsonDocument doc = JsonModelFile.Open(json, sourceName, FormatTag, FormatVersion, Bad))
        {
            JsonElement root = doc.RootElement;
            string normalization = RequireString(root, "normalization", sourceName);
            if (normalization != NormalizationNone)
            {
                throw Bad(sourceName, $"unsupported normalization \"{normalization}\" (known: {NormalizationNone})");
            }
            string preTokenizer = RequireString(root, "pre_tokenizer", sourceName);
            if (preTokenizer is not (PreTokenizerWhitespace or PreTokenizerClasses))
            {
                throw Bad(sourceName,
                    $"unknown pre_tokenizer \"{preTokenizer}\" (known: {PreTokenizerWhitespace}, {PreTokenizerClasses})");
            }
            if (!root.TryGetProperty("byte_fallback", out JsonElement byteFallback) || byteFallback.ValueKind != JsonValueKind.True)
            {
                throw Bad(sourceName, "\"byte_fallback\" must be true");
            }

            string[] pieces = RequireStringArray(root, "vocab", sourceName);
            string[] expectedBase = BasePieces();
            for (int id = 0; id < expectedBase.Length; id++)
            {
                if (id >= pieces.Length || pieces[id] != expectedBase[id])
                {
                    string found = id < pieces.Length ? $"\"{pieces[id]}\"" : "nothing";
                    throw Bad(sourceName,
                        $"vocab must start with the reserved tokens, the byte tokens <0x00>..<0xFF> and \"{WordStartMarker}\" "
                        + $"(ids 0-{MarkerId}), but id {id} is {found} instead of \"{expectedBase[id]}\"");
                }
            }
            var ids = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
            for (int id = 0; id < pieces.Length; id++)
            {
                if (pieces[id].Length == 0 || pieces[id].Contains(' '))
                {
                    throw Bad(sourceName, $"vocab entry {id} (\"{pieces[id]}\") is empty or contains a space");
                }
                if (!ids.TryAdd(pieces[id], id))
                {
                    throw Bad(sourceName, $"duplicate vocab entry \"{pieces[id]}\" at ids {ids[pieces[id]]} and {id}");
                }
            }

            string[] mergeTexts = RequireStringArray(root, "merges", sourceName);
            var merges = new (string Left, string Right)[mergeTexts.Length];
            var available = new HashSet<string>(StringComparer.Ordinal) { WordStartMarker };
            for (int id = FirstLearnedId; id < pieces.Length; id++)
            {
                if (IsSingleRune(pieces[id], out _))
                {
                    available.Add(pieces[id]);
                }
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < mergeTexts.Length; i++)
            {
                string text = mergeTexts[i];
                int space = text.IndexOf(' ');
                if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                {
                    throw Bad(sourceName, $"merge {i} (\"{text}\") must be two pieces separated by one space");
                }
                if (!seen.Add(text))
                {
                    throw Bad(sourceName, $"merge {i} (\"{text}\") repeats an earlier merge");
                }
                string left = text[..space];
                string right = text[(space + 1)..];
                foreach (string part in (string[])[left, right])
                {
                    if (!available.Contains(part))
                    {
                        throw Bad(sourceName,
                            $"merge {i} (\"{text}\") uses \"{part}\", which is not a base character, the marker or the result of an earlier merge");
                    }
                }
                string merged = left + right;
                if (!ids.TryGetValue(merged, out int resultId) || resultId < FirstLearnedId)
                {
                    throw Bad(sourceName, $"merge {i} (\"{text}\") produces \"{merged}\", which is not a learnt vocab entry");
                }
                available.Add(merged);
                merges[i] = (left, right);
            }
            for (int id = FirstLearnedId; id < pieces.Length; id++)
            {
                if (!available.Contains(pieces[id]))
                {
                    throw Bad(sourceName, $"vocab entry {id} (\"{pieces[id]}\") is neither a single character nor produced by a merge");
                }
            }
            return new BpeTokenizer(pieces, ids, merges, preTokenizer == PreTokenizerClasses);
        }
    }

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
            int j = 0;
            for (int i = 0; i < n;)
            {
                if (i + 1 < n && span[i] == a && span[i + 1] == b)
                {
                    span[j++] = bestResult;
                    i += 2;
                }
                else
                {
                    span[j++] = span[i++];
                }
            }
            n = j;
        }
        return span[..n].ToArray();
    }

    private static void MergeInWord(
        int[] s, ref int length, long frequency, int word, int a, int b, int c,
        Dictionary<long, long> delta, Dictionary<long, List<int>> where)
    {
        int n = length;
        bool found = false;
        for (int i = 0; i + 1 < n; i++)
        {
            if (s[i] == a && s[i + 1] == b)
            {
                found = true;
                break;
            }
        }
        if (!found)
        {
            return;
        }
        for (int i = 0; i + 1 < n; i++)
        {
            if (IsMergeable(s[i]) && IsMergeable(s[i + 1]))
            {
                CollectionsMarshal.GetValueRefOrAddDefault(delta, PairKey(s[i], s[i + 1]), out _) -= frequency;
            }
        }
        int j = 0;
        for (int i = 0; i < n;)
        {
            if (i + 1 < n && s[i] == a && s[i + 1] == b)
            {
                s[j++] = c;
                i += 2;
            }
            else
            {
                s[j++] = s[i++];
            }
        }
        for (int i = 0; i + 1 < j; i++)
        {
            if (IsMergeable(s[i]) && IsMergeable(s[i + 1]))
            {
                long key = PairKey(s[i], s[i + 1]);
                CollectionsMarshal.GetValueRefOrAddDefault(delta, key, out _) += frequency;
                if (s[i] == c || s[i + 1] == c)
                {
                    AddWhere(where, key, word);
                }
            }
        }
        length = j;
    }

    private static void AddWhere(Dictionary<long, List<int>> where, long key, int word)
    {
        ref List<int>? list = ref CollectionsMarshal.GetValueRefOrAddDefault(where, key, out _);
        list ??= [];
        if (list.Count == 0 || list[^1] != word)
        {
            list.Add(word);
        }
    }

    /// <summary>Appends the base-piece ids of <paramref name="body"/>, byte tokens for characters outside the alphabet.</summary>
    private static void AppendSymbols(ReadOnlySpan<char> body, Dictionary<int, int> alphabet, List<int> output)
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
                output.Add(ByteBaseId + utf8[k]);
            }
        }
    }

    private static string FinishDecode(ReadOnlySpan<byte> bytes)
    {
        string text = Encoding.UTF8.GetString(bytes);
        return text.StartsWith(' ') ? text[1..] : text;
    }

    private static bool IsMergeable(int id) => id >= MarkerId;

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    private static bool IsSingleRune(string piece, out Rune rune) =>
        Rune.DecodeFromUtf16(piece, out rune, out int consumed) == OperationStatus.Done && consumed == piece.Length;

    private static string[] BasePieces()
    {
        var pieces = new string[FirstLearnedId];
        ReservedTokens.CopyTo(pieces, 0);
        for (int b = 0; b < 256; b++)
        {
            pieces[ByteBaseId + b] = $"<0x{b:X2}>";
        }
        pieces[MarkerId] = WordStartMarker;
        return pieces;
    }

    private static string VocabularyJson(string[] pieces)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("format", Vocabulary.FormatTag);
            writer.WriteNumber("version", Vocabulary.FormatVersion);
            writer.WriteStartArray("tokens");
            foreach (string piece in pieces)
            {
                writer.WriteStringValue(piece);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length);
    }

    private static string RequireString(JsonElement root, string name, string sourceName)
    {
        if (!root.TryGetProperty(name, out JsonElement element) || element.ValueKind != JsonValueKind.String)
        {
            string found = element.ValueKind == JsonValueKind.Undefined ? "nothing" : element.GetRawText();
            throw Bad(sourceName, $"\"{name}\" must be a string but is {found}");
        }
        return element.GetString()!;
    }

    private static string[] RequireStringArray(JsonElement root, string name, string sourceName)
    {
        if (!root.TryGetProperty(name, out JsonElement element))
        {
            throw Bad(sourceName, $"missing \"{name}\" array");
        }
        if (element.ValueKind != JsonValueKind.Array)
        {
            throw Bad(sourceName, $"\"{name}\" must be an array but is {element.ValueKind}");
        }
        var result = new string[element.GetArrayLength()];
        int i = 0;
        foreach (JsonElement item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw Bad(sourceName, $"\"{name}\"[{i}] must be a string but is {item.GetRawText()}");
            }
            result[i++] = item.GetString()!;
        }
        return result;
    }

    private static InvalidDataException Bad(string source, string problem, Exception? inner = null) =>
        new($"{source}: invalid BPE model file: {problem}.", inner);
}
