namespace Transduce.Models.Transformer;

/// <summary>Where a Transformer's positions come from.</summary>
internal enum PositionKind
{
    /// <summary>A fixed sinusoid table (Vaswani et al.; d2l §11.6), in a <see cref="SinusoidLayout"/>.</summary>
    Sinusoidal,

    /// <summary>A learned table (BART, mBART): a parameter <c>positions.weight</c> of (max positions + offset, hidden).</summary>
    Learned,

    /// <summary>No absolute positions (a model that encodes order elsewhere).</summary>
    None,

    /// <summary>
    /// No absolute positions; self-attention scores get a learned per-head bias by relative-distance bucket
    /// (<see cref="RelativePositionBias"/>, T5), one table per stack.
    /// </summary>
    RelativeBuckets,
}

/// <summary>The normalisation of every sub-layer, the embedding norm and the final norms.</summary>
internal enum NormKind
{
    /// <summary>LayerNorm: (x − mean) / √(var + ε) · γ + β.</summary>
    LayerNorm,

    /// <summary>RMSNorm (T5's): x / √(mean(x²) + ε) · γ, no mean, no bias.</summary>
    RmsNorm,
}

/// <summary>
/// A Transformer encoder–decoder's structure as data, in the manner of CTranslate2's model specs: the sizes, and every
/// choice in which published Transformers differ. The modules (the training path and the oracle), the packed batched
/// plans and the managed row step are all built from one spec; a model family (ours, Marian, …) is a function from its
/// configuration to a spec. Validated on construction by <see cref="Validate"/>: a field no path implements is an error,
/// never a default.
/// </summary>
internal sealed record TransformerSpec
{
    /// <summary>Model width (d_model).</summary>
    public required int Hidden { get; init; }

    /// <summary>Attention heads (the head width is <see cref="Hidden"/> / heads unless <see cref="AttentionHeadSize"/> says otherwise).</summary>
    public required int Heads { get; init; }

    /// <summary>
    /// Width of one attention head when it is not <see cref="Hidden"/> / <see cref="Heads"/> (T5's <c>d_kv</c>): the query,
    /// key and value projections then map the model width onto <see cref="AttentionWidth"/> = heads × head width and the
    /// output projection maps it back (flan-t5-small: 6 heads × 64 = 384 inside a 512-wide model). Null: Hidden / Heads.
    /// </summary>
    public int? AttentionHeadSize { get; init; }

    /// <summary>Inner width of the feed-forward networks.</summary>
    public required int FfnSize { get; init; }

    /// <summary>Encoder blocks.</summary>
    public required int EncoderLayers { get; init; }

    /// <summary>Decoder blocks.</summary>
    public required int DecoderLayers { get; init; }

    /// <summary>Source vocabulary.</summary>
    public required int SourceVocabulary { get; init; }

    /// <summary>Target vocabulary.</summary>
    public required int TargetVocabulary { get; init; }

    /// <summary>Positions either side can take (rows of the position table, not counting <see cref="PositionOffset"/>).</summary>
    public required int MaxPositions { get; init; }

    /// <summary>Dropout while training.</summary>
    public double Dropout { get; init; }

    /// <summary>What the embeddings are multiplied by before positions are added: √d (d2l, the paper) or 1 (Marian, T5).</summary>
    public double EmbeddingScale { get; init; } = 1.0;

    /// <summary>Where positions come from.</summary>
    public PositionKind Positions { get; init; } = PositionKind.Sinusoidal;

    /// <summary>Column layout of a sinusoid table.</summary>
    public SinusoidLayout SinusoidLayout { get; init; } = SinusoidLayout.Interleaved;

    /// <summary>Position p reads table row p + offset (fairseq-style models start their tables past the padding id).</summary>
    public int PositionOffset { get; init; }

    /// <summary>Buckets of a <see cref="PositionKind.RelativeBuckets"/> table (T5: 32).</summary>
    public int RelativeBuckets { get; init; } = 32;

    /// <summary>The distance from which every farther one shares the last bucket (T5: 128).</summary>
    public int RelativeMaxDistance { get; init; } = 128;

    /// <summary>The normalisation used everywhere.</summary>
    public NormKind Norm { get; init; } = NormKind.LayerNorm;

    /// <summary>ε of every norm.</summary>
    public double NormEpsilon { get; init; } = 1e-5;

    /// <summary>Norm before each sub-layer (x + f(N(x))) instead of after the residual sum (N(x + f(x))).</summary>
    public bool PreNorm { get; init; }

    /// <summary>A norm over embeddings + positions, before the first block (mBART's <c>layernorm_embedding</c>).</summary>
    public bool EmbeddingNorm { get; init; }

    /// <summary>A norm after the encoder's last block (pre-norm models have one).</summary>
    public bool FinalEncoderNorm { get; init; }

    /// <summary>A norm after the decoder's last block, before the output projection.</summary>
    public bool FinalDecoderNorm { get; init; }

    /// <summary>Scores are divided by √(head width) (the paper's); T5 folds that into its initialisation and does not.</summary>
    public bool ScaleAttention { get; init; } = true;

    /// <summary>Biases on the attention projections.</summary>
    public bool AttentionBias { get; init; }

    /// <summary>The feed-forward network's activation and gating.</summary>
    public FeedForwardKind FeedForward { get; init; } = FeedForwardKind.Relu;

    /// <summary>Biases on the feed-forward products.</summary>
    public bool FeedForwardBias { get; init; } = true;

    /// <summary>Encoder and decoder share one embedding.</summary>
    public bool ShareEmbeddings { get; init; }

    /// <summary>The output projection is the target embedding matrix.</summary>
    public bool TieOutput { get; init; }

    /// <summary>The decoder's output is multiplied by this before the output projection (T5 with tied embeddings: d^−½).</summary>
    public double OutputScale { get; init; } = 1.0;

    /// <summary>A bias on the output projection (Marian's <c>final_logits_bias</c>).</summary>
    public bool OutputBias { get; init; } = true;

    /// <summary>Width of one head.</summary>
    public int HeadSize => AttentionHeadSize ?? Hidden / Heads;

    /// <summary>Width of the attention's inside: heads × head width (the model width unless <see cref="AttentionHeadSize"/> is set).</summary>
    public int AttentionWidth => Heads * HeadSize;

    /// <summary>The factor on attention scores: 1/√(head width), or 1.</summary>
    public double AttentionScale => ScaleAttention ? 1.0 / Math.Sqrt(HeadSize) : 1.0;

    /// <summary>Rows of a position table: the positions and the offset before them.</summary>
    public int PositionRows => MaxPositions + PositionOffset;

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming the one at fault.</summary>
    public TransformerSpec Validate()
    {
        if (AttentionHeadSize is null && (Hidden <= 0 || Heads <= 0 || Hidden % Heads != 0))
            throw new ArgumentException($"transformer spec: hidden {Hidden} must be a positive multiple of heads {Heads}");
        if (AttentionHeadSize is int headSize && (Hidden <= 0 || Heads <= 0 || headSize <= 0 || (long)Heads * headSize > ModelConfig.MaxWidth))
            throw new ArgumentException($"transformer spec: hidden {Hidden}, heads {Heads} and head size {headSize} must be positive, heads × head size at most {ModelConfig.MaxWidth}");
        if (FfnSize <= 0 || EncoderLayers <= 0 || DecoderLayers <= 0 || SourceVocabulary <= 0 || TargetVocabulary <= 0 || MaxPositions <= 0)
            throw new ArgumentException("transformer spec: sizes, layers, vocabularies and positions must be positive");
        if (PositionOffset < 0) throw new ArgumentException($"transformer spec: position offset {PositionOffset} is negative");
        if (!Enum.IsDefined(Positions)) throw new ArgumentException($"transformer spec: unknown position kind {Positions}");
        if (!Enum.IsDefined(SinusoidLayout)) throw new ArgumentException($"transformer spec: unknown sinusoid layout {SinusoidLayout}");
        if (!Enum.IsDefined(Norm)) throw new ArgumentException($"transformer spec: unknown norm {Norm}");
        if (!Enum.IsDefined(FeedForward)) throw new ArgumentException($"transformer spec: unknown feed-forward kind {FeedForward}");
        if (Positions == PositionKind.RelativeBuckets && (RelativeBuckets < 4 || RelativeBuckets > 4096 || RelativeMaxDistance <= RelativeBuckets / 2))
            throw new ArgumentException($"transformer spec: relative buckets {RelativeBuckets} must be in [4, 4096] and max distance {RelativeMaxDistance} above half of them");
        if (!(NormEpsilon > 0 && NormEpsilon < 1)) throw new ArgumentException($"transformer spec: norm epsilon {NormEpsilon} must be in (0, 1)");
        if (!(EmbeddingScale > 0) || double.IsInfinity(EmbeddingScale)) throw new ArgumentException($"transformer spec: embedding scale {EmbeddingScale} must be positive and finite");
        if (!(OutputScale > 0) || double.IsInfinity(OutputScale)) throw new ArgumentException($"transformer spec: output scale {OutputScale} must be positive and finite");
        if (ShareEmbeddings && SourceVocabulary != TargetVocabulary)
            throw new ArgumentException("transformer spec: shared embeddings need one joint vocabulary (source and target sizes differ)");
        return this;
    }
}
