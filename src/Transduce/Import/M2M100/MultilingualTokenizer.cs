using System.Text.Json.Nodes;
using Transduce.Import.HuggingFace;
using Transduce.Text;

namespace Transduce.Import.M2M100;

/// <summary>
/// What the two tokenizers of <c>M2M100ForConditionalGeneration</c> folders share (<see cref="NllbTokenizer"/>,
/// <see cref="M2M100Tokenizer"/>): SentencePiece segments, ids are fairseq's, every language is one token, a source is
/// <c>[src_lang] pieces &lt;/s&gt;</c>, and decoding with <c>skip_special_tokens</c> drops the specials and the language tokens.
/// The added tokens (the four specials, the language tokens, NLLB's <c>&lt;mask&gt;</c>) written in a text are split out
/// before SentencePiece (<see cref="AddedTokens"/>), each with its <c>lstrip</c> / <c>rstrip</c>: the folder's
/// <c>added_tokens_decoder</c> when it has one, else the tokenizer's defaults (only <c>&lt;mask&gt;</c> takes the space on its left).
/// </summary>
internal abstract class MultilingualTokenizer
{
    private AddedTokens? splitter;

    /// <summary>The SentencePiece model's file name (both tokenizers).</summary>
    public const string ModelFile = "sentencepiece.bpe.model";

    /// <summary>The language codes callers name (NLLB: <c>eng_Latn</c>; M2M100: <c>en</c>) and their token ids.</summary>
    public abstract IReadOnlyDictionary<string, int> Languages { get; }

    /// <summary><c>src_lang</c> of <c>tokenizer_config.json</c>, else the tokenizer's default (<c>eng_Latn</c>, <c>en</c>).</summary>
    public abstract string DefaultSourceLanguage { get; }

    /// <summary><c>tgt_lang</c> of <c>tokenizer_config.json</c>, or null.</summary>
    public abstract string? DefaultTargetLanguage { get; }

    /// <summary>The folder's <c>legacy_behaviour</c> (NLLB): the language code after <c>&lt;/s&gt;</c> instead of first.</summary>
    public virtual bool Legacy => false;

    /// <summary>The ids that are never text (specials, language tokens, <c>&lt;mask&gt;</c>).</summary>
    public abstract IReadOnlySet<int> SpecialIds { get; }

    /// <summary>The largest id this tokenizer produces, plus one.</summary>
    public abstract int Size { get; }

    /// <summary>The text of token <paramref name="id"/> (a SentencePiece piece, a special), or null for an id no token names.</summary>
    public abstract string? Token(int id);

    /// <summary>The tokens split out of a text before SentencePiece, with the folder's ids.</summary>
    public abstract IReadOnlyList<AddedToken> Added { get; }

    /// <summary>The folder's <c>clean_up_tokenization_spaces</c> (absent: false, transformers' default since 4.45).</summary>
    public bool CleanUpSpaces { get; protected init; }

    /// <summary>The SentencePiece pieces of a stretch of text without added tokens, as the folder's ids.</summary>
    protected abstract int[] SegmentIds(string stretch);

    /// <summary>The ids of <paramref name="text"/>: its added tokens, and the pieces of the stretches between them (no language token, no <c>&lt;/s&gt;</c> added).</summary>
    public int[] EncodePieces(string text)
    {
        splitter ??= new AddedTokens(Added);
        var ids = new List<int>();
        foreach (var (part, token) in splitter.Split(text))
        {
            if (token is not null) ids.Add(token.Id);
            else ids.AddRange(SegmentIds(part));
        }
        return [.. ids];
    }

    /// <summary>
    /// The added token <paramref name="content"/> with id <paramref name="id"/>, stripping as the folder's
    /// <c>added_tokens_decoder</c> says (<paramref name="config"/>), else as <paramref name="lstrip"/> says.
    /// </summary>
    protected static AddedToken Token(HfJsonFile config, string content, int id, bool lstrip = false)
    {
        if (config.Node("added_tokens_decoder") is JsonObject added)
            foreach (var (_, node) in added)
                if (node is JsonObject entry && entry["content"] is JsonValue v && v.TryGetValue<string>(out var text) && text == content)
                    return new AddedToken(content, id, Flag(entry, "lstrip"), Flag(entry, "rstrip"));
        return new AddedToken(content, id, lstrip);

        static bool Flag(JsonObject entry, string key) => entry[key] is JsonValue f && f.TryGetValue<bool>(out bool b) && b;
    }

    /// <summary>Reads <c>clean_up_tokenization_spaces</c> of <paramref name="config"/>.</summary>
    protected static bool ReadCleanUp(HfJsonFile config) => config.Bool("clean_up_tokenization_spaces") ?? false;

    /// <summary>Text for <paramref name="ids"/> as <c>decode(ids, skip_special_tokens=True)</c>.</summary>
    public abstract string Decode(IEnumerable<int> ids);

    /// <summary>The id of language <paramref name="code"/>; an unknown code throws naming the closest known ones.</summary>
    public int LanguageId(string code) =>
        Languages.TryGetValue(code, out int id) ? id : throw new ArgumentException(Text.LanguageCodes.Unknown(code, Languages.Keys));

    /// <summary>The encoder input for <paramref name="text"/> in <paramref name="sourceLanguage"/> (default: <see cref="DefaultSourceLanguage"/>).</summary>
    public int[] EncodeSource(string text, string? sourceLanguage = null)
    {
        int code = LanguageId(sourceLanguage ?? DefaultSourceLanguage);
        var framed = M2M100PairEncoding.Around(EncodePieces(text), code, NllbTokenizer.EosId, Legacy);
        return Legacy ? framed : [.. framed, NllbTokenizer.EosId];
    }

    /// <summary>
    /// The tokenizer of <paramref name="folder"/>: <see cref="M2M100Tokenizer"/> when <c>tokenizer_config.json</c> names it or
    /// the folder has <c>vocab.json</c>, else <see cref="NllbTokenizer"/>.
    /// </summary>
    public static MultilingualTokenizer ForFolder(HuggingFaceFolder folder)
    {
        string? named = folder.Json(HuggingFaceFolder.TokenizerConfigFile, required: false).String("tokenizer_class");
        bool m2m = named is not null ? named.StartsWith("M2M100", StringComparison.Ordinal) : File.Exists(folder.File(M2M100Tokenizer.VocabularyFile));
        return m2m ? M2M100Tokenizer.Load(folder) : NllbTokenizer.Load(folder);
    }
}
