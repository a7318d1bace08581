using System.Text.Json;
using Transduce.Import.HuggingFace;
using Transduce.Text;

namespace Transduce.Import.M2M100;

/// <summary>
/// transformers' <c>M2M100Tokenizer</c>: SentencePiece (<c>sentencepiece.bpe.model</c>) segments, <c>vocab.json</c> numbers
/// the pieces (a piece it lacks is <c>&lt;unk&gt;</c>), the language tokens <c>__en__</c> … follow the vocabulary in the order
/// of <c>language_codes</c> (<c>m2m100</c>: 100 languages; <c>wmt21</c>: 8), and callers name languages by their code
/// (<c>en</c>). Text comes back through SentencePiece's decoding of the pieces, specials and language tokens left out.
/// </summary>
internal sealed class M2M100Tokenizer : MultilingualTokenizer
{
    /// <summary>The vocabulary file.</summary>
    public const string VocabularyFile = "vocab.json";

    private readonly SentencePieceModel model;
    private readonly Dictionary<string, int> encoder;
    private readonly string[] decoder;
    private readonly Dictionary<string, int> languages;
    private readonly HashSet<int> special;
    private readonly int unk;

    private M2M100Tokenizer(SentencePieceModel model, Dictionary<string, int> encoder, Dictionary<string, int> languages, string source, string? target, HfJsonFile config)
    {
        string[] fixedTokens = ["<s>", "<pad>", "</s>", "<unk>"];
        Added = [.. fixedTokens.Select(t => Token(config, t, encoder[t])), .. languages.Select(kv => Token(config, $"__{kv.Key}__", kv.Value))];
        CleanUpSpaces = ReadCleanUp(config);
        this.model = model;
        this.encoder = encoder;
        this.languages = languages;
        DefaultSourceLanguage = source;
        DefaultTargetLanguage = target;
        decoder = new string[encoder.Values.Max() + 1];
        foreach (var (token, id) in encoder) decoder[id] = token;
        unk = encoder["<unk>"];
        special = [encoder["<s>"], encoder["<pad>"], encoder["</s>"], unk, .. languages.Values];
    }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, int> Languages => languages;

    /// <inheritdoc />
    public override string DefaultSourceLanguage { get; }

    /// <inheritdoc />
    public override string? DefaultTargetLanguage { get; }

    /// <inheritdoc />
    public override IReadOnlySet<int> SpecialIds => special;

    /// <inheritdoc />
    public override int Size => languages.Values.Append(decoder.Length - 1).Max() + 1;

    /// <summary>Reads the tokenizer of <paramref name="folder"/>; a missing or malformed file throws naming it and the field.</summary>
    public static M2M100Tokenizer Load(HuggingFaceFolder folder)
    {
        string modelPath = folder.File(ModelFile);
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"{modelPath}: not found — an M2M100 folder needs its SentencePiece model", modelPath);
        var model = SentencePieceModel.Load(modelPath);
        string vocabPath = folder.File(VocabularyFile);
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{vocabPath}: not found — an M2M100 folder needs its vocabulary", vocabPath);
        Dictionary<string, int> encoder;
        try
        {
            encoder = JsonSerializer.Deserialize<Dictionary<string, int>>(Text.StrictUtf8.ReadText(vocabPath)) ?? throw new InvalidDataException($"{vocabPath}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{vocabPath}: not a JSON object of token → id ({e.Message})", e);
        }
        // fairseq's dictionary: the four specials first, ids dense (the language tokens are numbered after them).
        foreach (var (token, id) in new[] { ("<s>", 0), ("<pad>", 1), ("</s>", 2), ("<unk>", 3) })
            if (!encoder.TryGetValue(token, out int found) || found != id)
                throw new InvalidDataException($"{vocabPath}: '{token}' must have id {id}, as M2M100's fairseq dictionary has it");
        if (encoder.Values.Distinct().Count() != encoder.Count || encoder.Values.Any(id => id < 0 || id >= encoder.Count))
            throw new InvalidDataException($"{vocabPath}: ids must be 0 … {encoder.Count - 1}, each once");
        var config = folder.Json(HuggingFaceFolder.TokenizerConfigFile, required: false);
        string set = config.String("language_codes") ?? "m2m100";
        if (!FairseqLanguages.M2M100Codes.TryGetValue(set, out var codes))
            throw config.Error($"'language_codes' is '{set}' (known: {string.Join(", ", FairseqLanguages.M2M100Codes.Keys)})");
        var languages = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < codes.Count; i++)
        {
            if (encoder.ContainsKey($"__{codes[i]}__"))
                throw new InvalidDataException($"{vocabPath}: '__{codes[i]}__' is a language token and must not be in the vocabulary");
            languages[codes[i]] = encoder.Count + i;
        }
        return new M2M100Tokenizer(model, encoder, languages, config.String("src_lang") ?? "en", config.String("tgt_lang"), config);
    }

    /// <inheritdoc />
    public override string? Token(int id) =>
        languages.FirstOrDefault(kv => kv.Value == id) is { Key: { } code } ? $"__{code}__" : id >= 0 && id < decoder.Length ? decoder[id] : null;

    /// <inheritdoc />
    public override IReadOnlyList<AddedToken> Added { get; }

    /// <inheritdoc />
    protected override int[] SegmentIds(string stretch) =>
        model.Encode(stretch).Select(p => encoder.TryGetValue(p.Piece, out int id) ? id : unk).ToArray();

    /// <inheritdoc />
    public override string Decode(IEnumerable<int> ids) =>
        model.DecodePieces(ids.Where(id => !special.Contains(id) && id >= 0 && id < decoder.Length).Select(id => decoder[id]));
}
