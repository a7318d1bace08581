namespace Transduce.Models.Gru;

/// <summary>The config of a recurrent encoder–decoder: embedding width, hidden width, layers and dropout, nothing more.</summary>
internal abstract record RecurrentConfig : ModelConfig
{
    /// <inheritdoc />
    public override IEnumerable<(string Keys, long Count)> MinimumParameterTerms()
    {
        long e = EmbeddingSize, h = HiddenSize;
        yield return ("source_vocab_size × embedding_size", SourceVocabSize * e);
        yield return ("target_vocab_size × embedding_size", TargetVocabSize * e);
        yield return ("target_vocab_size × hidden_size", TargetVocabSize * h);
        yield return ("layers × hidden_size²", 2L * Layers * 3 * h * h); // one recurrent hidden-to-hidden matrix per layer, each side
    }

    /// <summary>The recurrent part of <paramref name="settings"/>.</summary>
    protected static TConfig From<TConfig>(ModelSettings settings) where TConfig : RecurrentConfig, new() => new()
    {
        EmbeddingSize = settings.EmbeddingSize, HiddenSize = settings.HiddenSize, Layers = settings.Layers, Dropout = settings.Dropout,
    };
}

/// <summary>The config of <see cref="GruSeq2Seq"/> (d2l §10.7).</summary>
internal sealed record GruConfig : RecurrentConfig
{
    /// <summary>The registered name.</summary>
    public const string Name = "gru";

    /// <inheritdoc />
    public override string Architecture => Name;

    /// <summary>The GRU encoder–decoder's entry in <see cref="ModelRegistry"/>.</summary>
    public static ModelArchitecture Registration { get; } = ModelArchitecture.Of<GruConfig>(Name,
        "d2l §10.7: GRU encoder; GRU decoder fed the encoder's final state at every step", c => new GruSeq2Seq(c), From<GruConfig>);
}
