namespace Transduce.Text;

/// <summary>How raw text becomes tokens; stored in every checkpoint so translation repeats training's preprocessing.</summary>
public sealed record TextConfig
{
    /// <summary>Normaliser name (<c>d2l</c> or <c>none</c>).</summary>
    public string Normalizer { get; init; } = "d2l";

    /// <summary>Tokenizer name: <c>word</c> (split on spaces, d2l) or <c>bpe</c> (subwords; the model travels in the checkpoint).</summary>
    public string Tokenizer { get; init; } = "word";

    /// <summary>Sequences are cut to this many tokens including <c>&lt;eos&gt;</c> (d2l's <c>num_steps</c>); null keeps them whole.</summary>
    public int? MaxSteps { get; init; }
}

/// <summary>
/// Normalise, then tokenize; and the way back from tokens to text. With the <c>word</c> tokenizer output is
/// the normalised, space-separated tokens (d2l's <c>ils regardent .</c>); with <c>bpe</c> and no normaliser it is
/// natural text (<c>Ils regardent.</c>).
/// </summary>
public sealed class TextPipeline
{
    private readonly ITextNormalizer normalizer;
    private readonly WordTokenizer words = new();

    /// <summary>The configuration this pipeline was built from.</summary>
    public TextConfig Config { get; }

    /// <summary>The subword model when <see cref="TextConfig.Tokenizer"/> is <c>bpe</c>.</summary>
    public BpeTokenizer? Subwords { get; }

    /// <summary>Builds the pipeline named by <paramref name="config"/>; <paramref name="subwords"/> is required for <c>bpe</c>.</summary>
    public TextPipeline(TextConfig config, BpeTokenizer? subwords = null)
    {
        if (config.Tokenizer is not ("word" or "bpe"))
            throw new ArgumentException($"text config: unknown tokenizer '{config.Tokenizer}' (known: word, bpe)");
        if (config.Tokenizer == "bpe" && subwords is null)
            throw new ArgumentException("text config: the 'bpe' tokenizer needs its subword model");
        if (config.MaxSteps is <= 0)
            throw new ArgumentException($"text config: 'max_steps' must be positive (got {config.MaxSteps})");
        normalizer = TextNormalizers.FromName(config.Normalizer);
        Config = config;
        Subwords = config.Tokenizer == "bpe" ? subwords : null;
    }

    /// <summary>True when outputs are natural text that standard BLEU tokenisation (13a) should score against raw references.</summary>
    public bool ProducesNaturalText => Subwords is not null && normalizer is IdentityNormalizer;

    /// <summary>Normalises and tokenizes one sentence.</summary>
    public string[] Tokenize(string text)
    {
        string normalized = normalizer.Normalize(text);
        return Subwords is null ? words.Tokenize(normalized) : Subwords.EncodePieces(normalized);
    }

    /// <summary>Joins output tokens back into text.</summary>
    public string Detokenize(IEnumerable<string> tokens) =>
        Subwords is null ? words.Detokenize(tokens) : Subwords.DecodePieces(tokens);

    /// <summary>A reference as the model is meant to reproduce it (normalised and re-joined for <c>word</c>; unchanged for natural text).</summary>
    public string Canonical(string text) => ProducesNaturalText ? text : Detokenize(Tokenize(text));
}
