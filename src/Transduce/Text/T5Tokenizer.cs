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
/// <para><b>Non-legacy</b> (<c>legacy: false</c>): the SentencePiece model runs without its dummy prefix; every <c>▁</c> in
/// the text becomes a space and, with <c>add_prefix_space</c> (the default), the text gets a <c>▁</c> in front; a stretch
/// that starts with a space or <c>▁</c> is segmented after the unknown token's text (<c>&lt;unk&gt;</c>), whose pieces are
/// then dropped, so its leading space survives, and any other stretch is segmented as it is — text right after a special
/// token does not start a new word; a lone <c>▁</c> before a leading special token is dropped.</para>
/// <para><b>Decoding</b> is <c>decode(ids, skip_special_tokens=True)</c>: the special tokens (pad, end, unknown, the
/// sentinels, the rows beyond the tokenizer) are dropped, the pieces decoded by the SentencePiece model, the ends stripped.</para>
/// </remarks>
internal sealed class T5Tokenizer : ITokenizer
{
    /// <summary>T5's end-of-sequence piece.</summary>
    public const string EndToken = "</s>";

    private const string SentinelStart = "<extra_id_", RowStart = "<row_";

    private readonly SentencePieceTokenizer pieces;
    private readonly AddedTokens specials;
    private readonly bool[] special;
    private readonly SentencePieceTokenizer? withoutPrefix; // non-legacy segmentation
    private readonly bool addPrefixSpace;
    private readonly int unkLength;

    /// <summary>
    /// Segments with <paramref name="model"/>; <paramref name="vocabulary"/> is a <see cref="Layout"/> of it.
    /// <paramref name="legacy"/> and <paramref name="addPrefixSpace"/> are <c>T5Tokenizer</c>'s <c>legacy</c> and <c>add_prefix_space</c>.
    /// </summary>
    public T5Tokenizer(SentencePieceModel model, Vocabulary vocabulary, bool legacy = true, bool addPrefixSpace = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vocabulary);
        pieces = new SentencePieceTokenizer(model, vocabulary);
        if (!legacy)
        {
            withoutPrefix = new SentencePieceTokenizer(model.WithoutDummyPrefix(), vocabulary);
            unkLength = withoutPrefix.CountTokens(Vocabulary.UnkToken);
        }
        this.addPrefixSpace = addPrefixSpace;
        Vocabulary = vocabulary;
        special = new bool[vocabulary.Count];
        var list = new List<AddedToken> { new(EndToken, vocabulary.EosId), new(Vocabulary.PadToken, vocabulary.PadId), new(Vocabulary.UnkToken, vocabulary.UnkId) };
        for (int id = 0; id < vocabulary.Count; id++)
        {
            string token = vocabulary[id];
            bool sentinel = SentinelNumber(token) is not null;
            special[id] = id <= vocabulary.UnkId || sentinel || token.StartsWith(RowStart, StringComparison.Ordinal);
            if (sentinel) list.Add(new AddedToken(token, id, LStrip: true, RStrip: true));
        }
        specials = new AddedTokens(list);
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
        bool legacy = withoutPrefix is null || text.Length == 0;
        if (!legacy)
        {
            text = text.Replace(SentencePieceModel.SpaceSymbol, " ", StringComparison.Ordinal);
            if (addPrefixSpace) text = SentencePieceModel.SpaceSymbol + text;
        }
        var tokens = new List<EncodedToken>();
        var parts = specials.Split(text);
        foreach (var (part, token) in parts)
        {
            if (token is not null) tokens.Add(new EncodedToken(token.Id, part));
            else tokens.AddRange(legacy ? pieces.EncodeToTokens(part) : NonLegacyPieces(part));
        }
        // A text that starts with a special token: the prefix space alone before it goes.
        if (!legacy && tokens.Count > 1 && parts is [{ Token: null }, { Token: not null }, ..] && tokens[0].Value == SentencePieceModel.SpaceSymbol && tokens[1].Value == parts[1].Text)
            tokens.RemoveAt(0);
        if (tokens.Count > 0 && tokens[^1].Id == Vocabulary.EosId) tokens.RemoveAt(tokens.Count - 1);
        return tokens;
    }

    /// <summary>A stretch without special tokens as <c>T5Tokenizer._tokenize</c> segments it when not legacy.</summary>
    private IReadOnlyList<EncodedToken> NonLegacyPieces(string stretch)
    {
        if (!stretch.StartsWith(SentencePieceModel.SpaceSymbol, StringComparison.Ordinal) && !stretch.StartsWith(' '))
            return withoutPrefix!.EncodeToTokens(stretch);
        var all = withoutPrefix!.EncodeToTokens(Vocabulary.UnkToken + stretch);
        return all.Count >= unkLength ? [.. all.Skip(unkLength)] : all;
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
