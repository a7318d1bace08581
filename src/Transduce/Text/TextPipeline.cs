namespace Transduce.Text;

/// <summary>How raw text becomes tokens; stored in every checkpoint so translation repeats training's preprocessing.</summary>
public sealed record TextConfig
{
    /// <summary>Normaliser name (<c>d2l</c> or <c>none</c>).</summary>
    public string Normalizer { get; init; } = "d2l";

    /// <summary>
    /// Tokenizer name: <c>word</c> (split on spaces, d2l), <c>bpe</c> (our joint subwords) or <c>spm</c> (a SentencePiece
    /// model per side, as OPUS-MT/Marian models ship them) or <c>t5</c> (transformers' <c>T5Tokenizer</c> over one
    /// SentencePiece model: sentinels, <c>&lt;/s&gt;</c>; converted T5 folders). Subword models travel in the checkpoint.
    /// </summary>
    public string Tokenizer { get; init; } = "word";

    /// <summary>Sequences are cut to this many tokens including <c>&lt;eos&gt;</c> (d2l's <c>num_steps</c>); null keeps them whole.</summary>
    public int? MaxSteps { get; init; }

    /// <summary>
    /// Tokens the <c>spm</c> tokenizer splits out of the text before SentencePiece, with their ids (a converted NLLB /
    /// M2M100 folder's specials and language codes, as transformers' tokenizers split them); null or empty for none.
    /// </summary>
    [System.Text.Json.Serialization.JsonInclude]
    internal IReadOnlyList<AddedToken>? AddedTokens { get; init; }

    /// <summary>Decoded text goes through transformers' <c>clean_up_tokenization</c> (a converted folder that sets <c>clean_up_tokenization_spaces</c>).</summary>
    [System.Text.Json.Serialization.JsonInclude]
    internal bool CleanUpSpaces { get; init; }

    /// <summary>The <c>t5</c> tokenizer's <c>legacy</c> segmentation (transformers' default; false: <c>legacy: false</c>).</summary>
    [System.Text.Json.Serialization.JsonInclude]
    internal bool Legacy { get; init; } = true;

    /// <summary>The <c>t5</c> tokenizer's <c>add_prefix_space</c> (read when not <see cref="Legacy"/>).</summary>
    [System.Text.Json.Serialization.JsonInclude]
    internal bool AddPrefixSpace { get; init; } = true;

    /// <summary>The tokenizer names <see cref="TextPipeline.Create"/> knows.</summary>
    public static IReadOnlyList<string> Tokenizers { get; } = ["word", "bpe", "spm", "t5"];

    /// <summary>True for the tokenizers whose SentencePiece models travel in the checkpoint (<c>spm</c>, <c>t5</c>).</summary>
    internal bool UsesSentencePiece => Tokenizer is "spm" or "t5";
}

/// <summary>
/// Text to ids and back for one model: a normaliser, then one <see cref="ITokenizer"/> per side (one instance for both
/// when the vocabulary is joint). With the <c>word</c> tokenizer, output is the normalised, space-separated tokens
/// (d2l's <c>ils regardent .</c>); with subwords and no normaliser it is natural text (<c>Ils regardent.</c>).
/// </summary>
internal sealed class TextPipeline
{
    private readonly ITextNormalizer normalizer;

    /// <summary>A pipeline of the normaliser named by <paramref name="config"/> and the given tokenizers.</summary>
    /// <exception cref="ArgumentException">The normaliser is unknown or <see cref="TextConfig.MaxSteps"/> is not positive.</exception>
    public TextPipeline(TextConfig config, ITokenizer source, ITokenizer target)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        if (config.MaxSteps is <= 0)
            throw new ArgumentException($"text config: 'max_steps' must be positive (got {config.MaxSteps})");
        normalizer = TextNormalizers.FromName(config.Normalizer);
        Config = config;
        Source = source;
        Target = target;
    }

    /// <summary>
    /// The pipeline <paramref name="config"/> names over a model's vocabularies: word tokenizers over them, the BPE model
    /// (whose pieces must be both vocabularies), or a SentencePiece model per side numbered by the vocabularies.
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizer is unknown, its subword model is missing, or the BPE model's pieces are not the vocabularies.</exception>
    public static TextPipeline Create(TextConfig config, Vocabulary sourceVocabulary, Vocabulary targetVocabulary,
        BpeTokenizer? subwords = null, SentencePiecePair? sentencePiece = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        switch (config.Tokenizer)
        {
            case "word":
                var words = new WordTokenizer(sourceVocabulary);
                return new TextPipeline(config, words, ReferenceEquals(sourceVocabulary, targetVocabulary) ? words : new WordTokenizer(targetVocabulary));
            case "bpe":
                if (subwords is null) throw new ArgumentException("text config: the 'bpe' tokenizer needs its subword model");
                if (!subwords.Vocabulary.Tokens.SequenceEqual(sourceVocabulary.Tokens) || !subwords.Vocabulary.Tokens.SequenceEqual(targetVocabulary.Tokens))
                    throw new ArgumentException("text config: the vocabularies are not the pieces of the 'bpe' subword model");
                return new TextPipeline(config, subwords, subwords);
            case "spm":
                if (sentencePiece is null) throw new ArgumentException("text config: the 'spm' tokenizer needs its SentencePiece models");
                var added = new AddedTokens(config.AddedTokens ?? []);
                foreach (var token in added.Tokens)
                    if (token.Id < 0 || token.Id >= Math.Min(sourceVocabulary.Count, targetVocabulary.Count))
                        throw new ArgumentException($"text config: 'added_tokens': '{token.Content}' has id {token.Id}, outside the vocabulary");
                return new TextPipeline(config, new SentencePieceTokenizer(sentencePiece.Source, sourceVocabulary, added),
                    new SentencePieceTokenizer(sentencePiece.Target, targetVocabulary, added));
            case "t5":
                if (sentencePiece is null) throw new ArgumentException("text config: the 't5' tokenizer needs its SentencePiece model");
                if (!ReferenceEquals(sourceVocabulary, targetVocabulary) && !sourceVocabulary.Tokens.SequenceEqual(targetVocabulary.Tokens))
                    throw new ArgumentException("text config: the 't5' tokenizer needs one vocabulary for both sides");
                var t5 = new T5Tokenizer(sentencePiece.Source, sourceVocabulary, config.Legacy, config.AddPrefixSpace);
                return new TextPipeline(config, t5, t5);
            default:
                throw new ArgumentException($"text config: unknown tokenizer '{config.Tokenizer}' (known: {string.Join(", ", TextConfig.Tokenizers)})");
        }
    }

    /// <summary>The configuration this pipeline was built from.</summary>
    public TextConfig Config { get; }

    /// <summary>The source side's tokenizer.</summary>
    public ITokenizer Source { get; }

    /// <summary>The target side's tokenizer (the same instance as <see cref="Source"/> for a joint subword model).</summary>
    public ITokenizer Target { get; }

    /// <summary>True when outputs are natural text that standard BLEU tokenisation (13a) should score against raw references.</summary>
    public bool ProducesNaturalText => Target is not WordTokenizer && normalizer is IdentityNormalizer;

    /// <summary>Normalises <paramref name="text"/> as both sides are normalised before tokenisation.</summary>
    public string Normalize(string text) => normalizer.Normalize(text);

    /// <summary>The source ids of a sentence (no <c>&lt;eos&gt;</c>).</summary>
    public int[] EncodeSource(string text) => Source.EncodeToIds(normalizer.Normalize(text));

    /// <summary>The target ids of a sentence (a reference, or a training target; no <c>&lt;bos&gt;</c>/<c>&lt;eos&gt;</c>).</summary>
    public int[] EncodeTarget(string text) => Target.EncodeToIds(normalizer.Normalize(text));

    /// <summary>The source tokens of a sentence with their ids and surface forms (for display).</summary>
    public IReadOnlyList<EncodedToken> SourceTokens(string text) => Source.EncodeToTokens(normalizer.Normalize(text));

    /// <summary>The text of output (target) ids.</summary>
    public string Decode(IEnumerable<int> targetIds) =>
        Config.CleanUpSpaces ? PyText.CleanUpTokenization(Target.Decode(targetIds)) : Target.Decode(targetIds);

    /// <summary>How many target tokens <paramref name="text"/> makes.</summary>
    public int CountTargetTokens(string text) => Target.CountTokens(normalizer.Normalize(text));

    /// <summary>
    /// A reference as the model is meant to reproduce it: unchanged for natural text; otherwise normalised, tokenized and
    /// joined again, with words the vocabulary lacks kept as written.
    /// </summary>
    public string Canonical(string text) =>
        ProducesNaturalText ? text : Target.DecodeTokens(Target.EncodeToTokens(normalizer.Normalize(text)));
}
