namespace Transduce.Text;

/// <summary>How raw text becomes tokens; stored in every checkpoint so translation repeats training's preprocessing.</summary>
public sealed record TextConfig
{
    /// <summary>Normaliser name (<c>d2l</c> or <c>none</c>).</summary>
    public string Normalizer { get; init; } = "d2l";

    /// <summary>Tokenizer name (<c>word</c>).</summary>
    public string Tokenizer { get; init; } = "word";

    /// <summary>Sequences are cut to this many tokens including <c>&lt;eos&gt;</c> (d2l's <c>num_steps</c>); null keeps them whole.</summary>
    public int? MaxSteps { get; init; }
}

/// <summary>Normalise, then tokenize; and the way back from tokens to text.</summary>
public sealed class TextPipeline
{
    private readonly ITextNormalizer normalizer;
    private readonly WordTokenizer tokenizer = new();

    /// <summary>The configuration this pipeline was built from.</summary>
    public TextConfig Config { get; }

    /// <summary>Builds the pipeline named by <paramref name="config"/>.</summary>
    public TextPipeline(TextConfig config)
    {
        if (config.Tokenizer != "word")
            throw new ArgumentException($"text config: unknown tokenizer '{config.Tokenizer}' (known: word)");
        if (config.MaxSteps is <= 0)
            throw new ArgumentException($"text config: 'max_steps' must be positive (got {config.MaxSteps})");
        normalizer = TextNormalizers.FromName(config.Normalizer);
        Config = config;
    }

    /// <summary>Normalises and tokenizes one sentence.</summary>
    public string[] Tokenize(string text) => tokenizer.Tokenize(normalizer.Normalize(text));

    /// <summary>Joins output tokens back into text.</summary>
    public string Detokenize(IEnumerable<string> tokens) => tokenizer.Detokenize(tokens);
}
