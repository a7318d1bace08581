namespace Transduce.Text;

/// <summary>
/// A <see cref="SentencePieceModel"/> as the tokenizer of one side of a model whose <see cref="Vocabulary"/> is not the
/// SentencePiece model's own id space (MarianMT: SentencePiece segments, <c>vocab.json</c> numbers the pieces, and our
/// reserved tokens come first). Pieces map to vocabulary ids by their text, as transformers' <c>MarianTokenizer</c> maps
/// them; the map is built once, so encoding and decoding look nothing up by string except a run of unknown characters,
/// which keeps its own text and is looked up as such. Text comes back as <c>MarianTokenizer.decode(ids,
/// skip_special_tokens=True)</c> makes it: the reserved tokens (<c>&lt;unk&gt;</c> too) are dropped, the pieces are decoded
/// by the SentencePiece model, every <c>▁</c> still left (pieces of a joint vocabulary that this side's model does not know,
/// which SentencePiece copies as they are) becomes a space, and the ends are stripped. With <see cref="AddedTokens"/>
/// (NLLB's and M2M100's specials and language codes), those written in the text are split out first and become their
/// own ids, and each stretch between them is segmented on its own, as transformers' tokenizers do.
/// </summary>
internal sealed class SentencePieceTokenizer : ITokenizer
{
    private readonly SentencePieceModel model;
    private readonly int[] vocabularyIdOfPiece;
    private readonly (string Piece, int Id)[] pieceOfVocabularyId;
    private readonly AddedTokens? added;

    /// <summary>
    /// Segments with <paramref name="model"/> and numbers the pieces by <paramref name="vocabulary"/>; the
    /// <paramref name="addedTokens"/> written in a text are split out first (their ids must be in the vocabulary).
    /// </summary>
    public SentencePieceTokenizer(SentencePieceModel model, Vocabulary vocabulary, AddedTokens? addedTokens = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vocabulary);
        this.model = model;
        added = addedTokens is { IsEmpty: false } ? addedTokens : null;
        Vocabulary = vocabulary;
        vocabularyIdOfPiece = model.Pieces.Select(piece => vocabulary[piece]).ToArray();
        pieceOfVocabularyId = vocabulary.Tokens.Select(token => (token, model.PieceToId(token))).ToArray();
    }

    /// <inheritdoc />
    public Vocabulary Vocabulary { get; }

    /// <summary>The SentencePiece model that segments.</summary>
    public SentencePieceModel Model => model;

    /// <inheritdoc />
    public int[] EncodeToIds(string text) =>
        added is null ? model.Encode(text).Select(VocabularyId).ToArray() : [.. EncodeToTokens(text).Select(t => t.Id)];

    /// <inheritdoc />
    public IReadOnlyList<EncodedToken> EncodeToTokens(string text)
    {
        if (added is null) return model.Encode(text).Select(p => new EncodedToken(VocabularyId(p), p.Piece)).ToArray();
        var tokens = new List<EncodedToken>();
        foreach (var (part, token) in added.Split(text))
        {
            if (token is not null) tokens.Add(new EncodedToken(token.Id, part));
            else tokens.AddRange(model.Encode(part).Select(p => new EncodedToken(VocabularyId(p), p.Piece)));
        }
        return tokens;
    }

    /// <inheritdoc />
    public int CountTokens(string text) => added is null ? model.Encode(text).Count : EncodeToTokens(text).Count;

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var pieces = new List<(string Piece, int Id)>();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)pieceOfVocabularyId.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id must be in [0, {pieceOfVocabularyId.Length}).");
            if (id == Vocabulary.EosId) break;
            if (id == Vocabulary.PadId || id == Vocabulary.BosId || id == Vocabulary.UnkId) continue;
            pieces.Add(pieceOfVocabularyId[id]);
        }
        return AsMarianText(model.Decode(pieces));
    }

    /// <inheritdoc />
    public string DecodeTokens(IEnumerable<EncodedToken> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var pieces = tokens.Select(t => t.Value)
            .Where(t => t is not (Vocabulary.PadToken or Vocabulary.BosToken or Vocabulary.EosToken or Vocabulary.UnkToken));
        return AsMarianText(model.DecodePieces(pieces));
    }

    private static string AsMarianText(string decoded) => PyText.Strip(decoded.Replace('\u2581', ' '));

    /// <summary>A piece's vocabulary id; a run of unknown characters (SentencePiece's unknown id) is looked up by its text.</summary>
    private int VocabularyId((string Piece, int Id) piece) =>
        piece.Id == model.UnkId ? Vocabulary[piece.Piece] : vocabularyIdOfPiece[piece.Id];
}
