namespace Transduce.Text;

/// <summary>
/// A <see cref="SentencePieceModel"/> as the tokenizer of one side of a model whose <see cref="Vocabulary"/> is not the
/// SentencePiece model's own id space (MarianMT: SentencePiece segments, <c>vocab.json</c> numbers the pieces, and our
/// reserved tokens come first). Pieces map to vocabulary ids by their text, as transformers' <c>MarianTokenizer</c> maps
/// them; the map is built once, so encoding and decoding look nothing up by string except a run of unknown characters,
/// which keeps its own text and is looked up as such. Text comes back as <c>MarianTokenizer.decode(ids,
/// skip_special_tokens=True)</c> makes it: the reserved tokens (<c>&lt;unk&gt;</c> too) are dropped, the pieces are decoded
/// by the SentencePiece model, every <c>▁</c> still left (pieces of a joint vocabulary that this side's model does not know,
/// which SentencePiece copies as they are) becomes a space, and the ends are stripped.
/// </summary>
internal sealed class SentencePieceTokenizer : ITokenizer
{
    private readonly SentencePieceModel model;
    private readonly int[] vocabularyIdOfPiece;
    private readonly (string Piece, int Id)[] pieceOfVocabularyId;

    /// <summary>Segments with <paramref name="model"/> and numbers the pieces by <paramref name="vocabulary"/>.</summary>
    public SentencePieceTokenizer(SentencePieceModel model, Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vocabulary);
        this.model = model;
        Vocabulary = vocabulary;
        vocabularyIdOfPiece = model.Pieces.Select(piece => vocabulary[piece]).ToArray();
        pieceOfVocabularyId = vocabulary.Tokens.Select(token => (token, model.PieceToId(token))).ToArray();
    }

    /// <inheritdoc />
    public Vocabulary Vocabulary { get; }

    /// <summary>The SentencePiece model that segments.</summary>
    public SentencePieceModel Model => model;

    /// <inheritdoc />
    public int[] EncodeToIds(string text) => model.Encode(text).Select(VocabularyId).ToArray();

    /// <inheritdoc />
    public IReadOnlyList<EncodedToken> EncodeToTokens(string text) =>
        model.Encode(text).Select(p => new EncodedToken(VocabularyId(p), p.Piece)).ToArray();

    /// <inheritdoc />
    public int CountTokens(string text) => model.Encode(text).Count;

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
