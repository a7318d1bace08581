using System.Globalization;

namespace Transduce.Text;

/// <summary>
/// transformers' <c>T5Tokenizer</c> (the SentencePiece tokenizer of T5, T5 v1.1 and Flan-T5, with <c>legacy</c> on, its
/// default) over our id space. The T5 vocabulary is the SentencePiece model's pieces (T5's own have <c>&lt;pad&gt;</c> 0,
/// <c>&lt;/s&gt;</c> 1, <c>&lt;unk&gt;</c> 2) followed by the sentinels, <c>&lt;extra_id_0&gt;</c> being the last id; a model whose
/// embedding has more rows than that (t5-small: 32128 for 32100 tokens) keeps the rest as rows no text produces.
/// <see cref="Layout"/> numbers all of them in our layout (reserved tokens first), which the model's rows follow.
/// </summary>
/// <remarks>
/// <para><b>Encoding</b>: the special tokens written in the text — <c>&lt;/s&gt;</c>, <c>&lt;pad&gt;</c>, <c>&lt;unk&gt;</c>
/// and every sentinel — are split out first (the longest match at the leftmost position) and become single tokens; a
/// sentinel also strips the whitespace on both sides of it (its <c>AddedToken</c> has <c>lstrip</c> and <c>rstrip</c>). Each
/// stretch of text between them is segmented by the SentencePiece model on its own, with the model's dummy prefix (the
/// legacy behaviour: a stretch after a special token starts a new word). transformers appends <c>&lt;/s&gt;</c> unless the
/// text already ends with it; here the batching appends <c>&lt;eos&gt;</c>, so a trailing <c>&lt;/s&gt;</c> of the text is dropped
/// instead, and the model sees the same ids.</para>
/// <para><b>Decoding</b> is <c>decode(ids, skip_special_tokens=True)</c>: the special tokens (pad, end, unknown, the
/// sentinels, the rows beyond the tokenizer) are dropped, the pieces decoded by the SentencePiece model, the ends stripped.</para>
/// </remarks>
internal sealed class T5Tokenizer : ITokenizer
{
    /// <summary>T5's end-of-sequence piece.</summary>
    public const string EndToken = "</s>";

    private const string SentinelStart = "<extra_id_", RowStart = "<row_";

    private readonly SentencePieceTokenizer pieces;
    private readonly (string Text, int Id, bool Strip)[] specials;
    private readonly bool[] special;

    /// <summary>Segments with <paramref name="model"/>; <paramref name="vocabulary"/> is a <see cref="Layout"/> of it.</summary>
    public T5Tokenizer(SentencePieceModel model, Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vocabulary);
        pieces = new SentencePieceTokenizer(model, vocabulary);
        Vocabulary = vocabulary;
        special = new bool[vocabulary.Count];
        var list = new List<(string, int, bool)> { (EndToken, vocabulary.EosId, false), (Vocabulary.PadToken, vocabulary.PadId, false), (Vocabulary.UnkToken, vocabulary.UnkId, false) };
        for (int id = 0; id < vocabulary.Count; id++)
        {
            string token = vocabulary[id];
            bool sentinel = SentinelNumber(token) is not null;
            special[id] = id <= vocabulary.UnkId || sentinel || token.StartsWith(RowStart, StringComparison.Ordinal);
            if (sentinel) list.Add((token, id, true));
        }
        specials = [.. list.OrderByDescending(s => s.Item1.Length)];
    }

    /// <inheritdoc />
    public Vocabulary Vocabulary { get; }

    /// <summary>
    /// Our vocabulary for a T5 tokenizer of <paramref name="model"/> with <paramref name="extraIds"/> sentinels, over a
    /// model of <paramref name="rows"/> embedding rows, and for each of our ids the T5 row it takes: <c>&lt;pad&gt;</c> ←
    /// the pad piece, <c>&lt;bos&gt;</c> ← the pad piece too (T5's decoder start), <c>&lt;eos&gt;</c> ← <c>&lt;/s&gt;</c>,
    /// <c>&lt;unk&gt;</c> ← the unknown piece, then the other pieces, the sentinels and the remaining rows in T5's order.
    /// </summary>
    /// <exception cref="InvalidDataException">The model lacks a pad or end piece, or <paramref name="rows"/> is too small for the tokenizer (names <paramref name="sourceName"/>).</exception>
    public static (Vocabulary Vocabulary, int[] T5Rows) Layout(SentencePieceModel model, int extraIds, int rows, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(model);
        int pad = model.PadId, eos = model.EosId;
        if (pad < 0 || eos < 0)
            throw new InvalidDataException($"{sourceName}: the SentencePiece model has no {(pad < 0 ? "'<pad>'" : "'</s>'")} control piece, which T5 needs");
        int size = model.Count + extraIds;
        if (extraIds < 0 || size > rows)
            throw new InvalidDataException($"{sourceName}: {model.Count} pieces and {extraIds} sentinels make {size} tokens, more than the model's {rows} rows");
        var tokens = new List<string>(rows + 1) { Vocabulary.PadToken, Vocabulary.BosToken, Vocabulary.EosToken, Vocabulary.UnkToken };
        var map = new List<int>(rows + 1) { pad, pad, eos, model.UnkId };
        for (int id = 0; id < rows; id++)
        {
            if (id == pad || id == eos || id == model.UnkId) continue;
            tokens.Add(id < model.Count ? model.IdToPiece(id)
                : id < size ? $"{SentinelStart}{size - 1 - id}>"
                : $"{RowStart}{id}>");
            map.Add(id);
        }
        return (Vocabulary.FromTokens(tokens, sourceName), map.ToArray());
    }

    /// <inheritdoc />
    public int[] EncodeToIds(string text) => [.. EncodeToTokens(text).Select(t => t.Id)];

    /// <inheritdoc />
    public int CountTokens(string text) => EncodeToTokens(text).Count;

    /// <inheritdoc />
    public IReadOnlyList<EncodedToken> EncodeToTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        // Split out the special tokens, then strip beside each sentinel.
        var parts = new List<(string Text, int Id, bool Strip)>();
        int start = 0;
        for (int at = 0; at < text.Length; at++)
        {
            if (text[at] != '<') continue;
            foreach (var s in specials)
            {
                if (string.CompareOrdinal(text, at, s.Text, 0, s.Text.Length) != 0) continue;
                parts.Add((text[start..at], -1, false));
                parts.Add(s);
                at += s.Text.Length - 1;
                start = at + 1;
                break;
            }
        }
        parts.Add((text[start..], -1, false));
        for (int i = 0; i < parts.Count; i++)
        {
            if (!parts[i].Strip) continue;
            parts[i - 1] = parts[i - 1] with { Text = PyText.RStrip(parts[i - 1].Text) };
            parts[i + 1] = parts[i + 1] with { Text = PyText.LStrip(parts[i + 1].Text) };
        }
        var tokens = new List<EncodedToken>();
        foreach (var part in parts)
        {
            if (part.Id >= 0) tokens.Add(new EncodedToken(part.Id, part.Text));
            else if (part.Text.Length > 0) tokens.AddRange(pieces.EncodeToTokens(part.Text));
        }
        if (tokens.Count > 0 && tokens[^1].Id == Vocabulary.EosId) tokens.RemoveAt(tokens.Count - 1);
        return tokens;
    }

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var kept = new List<int>();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)special.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id must be in [0, {special.Length}).");
            if (id == Vocabulary.EosId) break;
            if (!special[id]) kept.Add(id);
        }
        return pieces.Decode(kept);
    }

    /// <inheritdoc />
    public string DecodeTokens(IEnumerable<EncodedToken> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return pieces.DecodeTokens(tokens.Where(t => t.Id == Vocabulary.UnkId || !special[t.Id])); // an unknown stretch keeps its text
    }

    /// <summary>N of a sentinel token <c>&lt;extra_id_N&gt;</c>, else null.</summary>
    public static int? SentinelNumber(string token) =>
        token.StartsWith(SentinelStart, StringComparison.Ordinal) && token.EndsWith('>')
        && int.TryParse(token.AsSpan(SentinelStart.Length, token.Length - SentinelStart.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out int n)
            ? n : null;
}
