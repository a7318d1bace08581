namespace Transduce.Text;

/// <summary>How raw text becomes tokens; stored in every checkpoint so translation repeats training's preprocessing.</summary>
public sealed record TextConfig
{
    /// <summary>Normaliser name (<c>d2l</c> or <c>none</c>).</summary>
    public string Normalizer { get; init; } = "d2l";

    /// <summary>
    /// Tokenizer name: <c>word</c> (split on spaces, d2l), <c>bpe</c> (our joint subwords) or <c>spm</c> (a SentencePiece
    /// model per side, as OPUS-MT/Marian models ship them). Subword models travel in the checkpoint.
    /// </summary>
    public string Tokenizer { get; init; } = "word";

    /// <summary>Sequences are cut to this many tokens including <c>&lt;eos&gt;</c> (d2l's <c>num_steps</c>); null keeps them whole.</summary>
    public int? MaxSteps { get; init; }
}

/// <summary>The two SentencePiece models of a Marian-style checkpoint, with the bytes they were read from (so they can be saved again).</summary>
/// <param name="SourceBytes">The source <c>.spm</c> file.</param>
/// <param name="TargetBytes">The target <c>.spm</c> file.</param>
public sealed record SentencePiecePair(byte[] SourceBytes, byte[] TargetBytes)
{
    /// <summary>The source model.</summary>
    public SentencePieceModel Source { get; } = SentencePieceModel.FromBytes(SourceBytes, "source.spm");

    /// <summary>The target model.</summary>
    public SentencePieceModel Target { get; } = SentencePieceModel.FromBytes(TargetBytes, "target.spm");
}

/// <summary>
/// Normalise, then tokenize (per side); and the way back from target tokens to text. With the <c>word</c> tokenizer
/// output is the normalised, space-separated tokens (d2l's <c>ils regardent .</c>); with subwords and no normaliser
/// it is natural text (<c>Ils regardent.</c>).
/// </summary>
public sealed class TextPipeline
{
    private readonly ITextNormalizer normalizer;
    private readonly WordTokenizer words = new();

    /// <summary>The configuration this pipeline was built from.</summary>
    public TextConfig Config { get; }

    /// <summary>The subword model when <see cref="TextConfig.Tokenizer"/> is <c>bpe</c>.</summary>
    public BpeTokenizer? Subwords { get; }

    /// <summary>The SentencePiece models when <see cref="TextConfig.Tokenizer"/> is <c>spm</c>.</summary>
    public SentencePiecePair? SentencePiece { get; }

    /// <summary>Builds the pipeline named by <paramref name="config"/>; the subword model it names must be given.</summary>
    public TextPipeline(TextConfig config, BpeTokenizer? subwords = null, SentencePiecePair? sentencePiece = null)
    {
        if (config.Tokenizer is not ("word" or "bpe" or "spm"))
            throw new ArgumentException($"text config: unknown tokenizer '{config.Tokenizer}' (known: word, bpe, spm)");
        if (config.Tokenizer == "bpe" && subwords is null)
            throw new ArgumentException("text config: the 'bpe' tokenizer needs its subword model");
        if (config.Tokenizer == "spm" && sentencePiece is null)
            throw new ArgumentException("text config: the 'spm' tokenizer needs its SentencePiece models");
        if (config.MaxSteps is <= 0)
            throw new ArgumentException($"text config: 'max_steps' must be positive (got {config.MaxSteps})");
        normalizer = TextNormalizers.FromName(config.Normalizer);
        Config = config;
        Subwords = config.Tokenizer == "bpe" ? subwords : null;
        SentencePiece = config.Tokenizer == "spm" ? sentencePiece : null;
    }

    /// <summary>True when outputs are natural text that standard BLEU tokenisation (13a) should score against raw references.</summary>
    public bool ProducesNaturalText => Config.Tokenizer != "word" && normalizer is IdentityNormalizer;

    /// <summary>Normalises and tokenizes a source sentence.</summary>
    public string[] Tokenize(string text) => TokenizeSource(text);

    /// <summary>Normalises and tokenizes a source sentence.</summary>
    public string[] TokenizeSource(string text) => Split(text, SentencePiece?.Source);

    /// <summary>Normalises and tokenizes a target sentence (a reference, or training target).</summary>
    public string[] TokenizeTarget(string text) => Split(text, SentencePiece?.Target);

    private string[] Split(string text, SentencePieceModel? spm)
    {
        string normalized = normalizer.Normalize(text);
        if (spm is not null) return spm.EncodePieces(normalized);
        return Subwords is null ? words.Tokenize(normalized) : Subwords.EncodePieces(normalized);
    }

    /// <summary>Joins output (target) tokens back into text.</summary>
    public string Detokenize(IEnumerable<string> tokens) =>
        SentencePiece is { } spm ? MarianText(spm.Target, tokens)
        : Subwords is null ? words.Detokenize(tokens) : Subwords.DecodePieces(tokens);

    /// <summary>
    /// Text as transformers' <c>MarianTokenizer.decode(ids, skip_special_tokens=True)</c> makes it: special tokens are
    /// dropped, the pieces are decoded by the target SentencePiece model, every <c>▁</c> still left (pieces of the joint
    /// vocabulary that the target model does not know, which SentencePiece copies as they are) becomes a space, and the
    /// ends are stripped.
    /// </summary>
    private static string MarianText(SentencePieceModel target, IEnumerable<string> tokens)
    {
        var pieces = tokens.Where(t => t is not (Vocabulary.PadToken or Vocabulary.BosToken or Vocabulary.EosToken or Vocabulary.UnkToken));
        return Evaluation.PyText.Strip(target.DecodePieces(pieces).Replace('\u2581', ' '));
    }

    /// <summary>A reference as the model is meant to reproduce it (normalised and re-joined for <c>word</c>; unchanged for natural text).</summary>
    public string Canonical(string text) => ProducesNaturalText ? text : Detokenize(TokenizeTarget(text));
}
