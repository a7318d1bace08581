using System.Text.Json.Serialization;

namespace Transduce.Models.Transformer;

/// <summary>
/// The config of <see cref="TransformerSeq2Seq"/>: the d2l §11.7 Transformer and the options a real toolkit needs
/// (pre-norm, shared and tied embeddings, activations, attention biases, separate decoder depth, Marian's sinusoid layout).
/// Its embedding width is its hidden width.
/// </summary>
internal sealed record TransformerConfig : ModelConfig
{
    /// <summary>The registered name.</summary>
    public const string Name = "transformer";

    /// <inheritdoc />
    public override string Architecture => Name;

    /// <summary>The Transformer's entry in <see cref="ModelRegistry"/>.</summary>
    public static ModelArchitecture Registration { get; } = ModelArchitecture.Of<TransformerConfig>(Name,
        "d2l §11.7: Transformer (Vaswani et al. 2017) with pre-norm, shared/tied embeddings and Marian's options",
        c => new TransformerSeq2Seq(c),
        s => new TransformerConfig
        {
            EmbeddingSize = s.HiddenSize, HiddenSize = s.HiddenSize, Layers = s.Layers, Dropout = s.Dropout, Heads = s.Heads,
            FfnSize = s.FfnSize, Activation = s.Activation, PreNorm = s.PreNorm, TieEmbeddings = s.TieEmbeddings, ShareEmbeddings = s.ShareEmbeddings,
        });

    /// <summary>Attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Inner width of the position-wise feed-forward network.</summary>
    public int FfnSize { get; init; } = 64;

    /// <summary>Feed-forward activation: <c>relu</c>, <c>gelu</c>, <c>gelu_tanh</c> (transformers' <c>gelu_new</c>) or <c>swish</c>.</summary>
    public string Activation { get; init; } = "relu";

    /// <summary>Layer norm before each sub-layer (pre-norm) instead of after the residual sum (post-norm, the book's).</summary>
    public bool PreNorm { get; init; }

    /// <summary>Biases on the attention projections (d2l: none).</summary>
    public bool AttentionBias { get; init; }

    /// <summary>The output projection shares the target embedding matrix.</summary>
    public bool TieEmbeddings { get; init; }

    /// <summary>Encoder and decoder share one embedding (needs one joint vocabulary).</summary>
    public bool ShareEmbeddings { get; init; }

    /// <summary>Embeddings are multiplied by √hidden before positions are added (d2l: yes).</summary>
    public bool ScaleEmbedding { get; init; } = true;

    /// <summary>Longest sequence the positional table covers.</summary>
    public int MaxPositions { get; init; } = 1024;

    /// <summary>Decoder blocks when they differ from the encoder's <see cref="ModelConfig.Layers"/>; null (the default) means the same number.</summary>
    public int? DecoderLayers { get; init; }

    /// <summary>
    /// Column layout of the sinusoidal position table. <c>interleaved</c> (d2l, the default): sin and cos of each
    /// frequency in adjacent columns 2i, 2i+1; <c>halves</c> (Marian / Hugging Face <c>MarianSinusoidalPositionalEmbedding</c>):
    /// all sines in the first half, all cosines in the second.
    /// </summary>
    public string PositionalLayout { get; init; } = "interleaved";

    /// <summary>The number of decoder blocks: <see cref="DecoderLayers"/>, or <see cref="ModelConfig.Layers"/> when that is null.</summary>
    [JsonIgnore]
    public override int DecoderLayerCount => DecoderLayers ?? Layers;

    /// <summary>The position table's layout as <see cref="PositionalEncoding"/> takes it.</summary>
    [JsonIgnore]
    public SinusoidLayout Layout => PositionalLayout == "halves" ? SinusoidLayout.Halves : SinusoidLayout.Interleaved;

    /// <inheritdoc />
    [JsonIgnore]
    public override int? MaxSequenceLength => MaxPositions;

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        Positive(Heads, "heads", MaxHeads);
        Positive(FfnSize, "ffn_size", MaxFfn);
        Positive(MaxPositions, "max_positions", MaxPositionCount);
        if ((long)MaxPositions * HiddenSize > MaxPositionTable)
            throw new ArgumentException($"model config: 'max_positions' {MaxPositions} × 'hidden_size' {HiddenSize} makes a position table larger than {MaxPositionTable} values");
        if (DecoderLayers is int d) Positive(d, "decoder_layers", MaxLayers);
        if (PositionalLayout is not ("interleaved" or "halves"))
            throw new ArgumentException($"model config: unknown 'positional_layout' '{PositionalLayout}' (known: interleaved, halves)");
        if (HiddenSize % Heads != 0)
            throw new ArgumentException($"model config: 'hidden_size' {HiddenSize} must be divisible by 'heads' {Heads}");
        if (EmbeddingSize != HiddenSize)
            throw new ArgumentException($"model config: a transformer needs 'embedding_size' = 'hidden_size' (got {EmbeddingSize} and {HiddenSize})");
        if (ShareEmbeddings && SourceVocabSize != TargetVocabSize)
            throw new ArgumentException("model config: 'share_embeddings' needs one joint vocabulary (source and target sizes differ)");
        if (Activation is not ("relu" or "gelu" or "gelu_tanh" or "swish"))
            throw new ArgumentException($"model config: unknown 'activation' '{Activation}' (known: relu, gelu, gelu_tanh, swish)");
    }

    /// <inheritdoc />
    public override IEnumerable<(string Keys, long Count)> MinimumParameterTerms()
    {
        long h = HiddenSize, src = SourceVocabSize, tgt = TargetVocabSize;
        yield return ("target_vocab_size × hidden_size", tgt * h);
        if (!ShareEmbeddings) yield return ("source_vocab_size × hidden_size", src * h);
        if (!TieEmbeddings) yield return ("target_vocab_size × hidden_size (output layer)", tgt * h);
        yield return ("layers × hidden_size × (hidden_size, ffn_size)", Layers * (4 * h * h + 2 * h * FfnSize));
        yield return ("decoder_layers × hidden_size × (hidden_size, ffn_size)", DecoderLayerCount * (8 * h * h + 2 * h * FfnSize));
    }
}
