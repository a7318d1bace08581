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

    /// <summary>
    /// Width of one attention head when heads × head width is not the hidden width (T5's <c>d_kv</c>); null (the default)
    /// means hidden / heads.
    /// </summary>
    public int? HeadSize { get; init; }

    /// <summary>
    /// Feed-forward kind (<see cref="FeedForwardKinds"/>): <c>relu</c>, <c>gelu</c>, <c>gelu_tanh</c> (transformers'
    /// <c>gelu_new</c>), <c>swish</c>, or a gated one: <c>gated_relu</c>, <c>gated_gelu</c>, <c>gated_gelu_tanh</c>, <c>swiglu</c>.
    /// </summary>
    public string Activation { get; init; } = "relu";

    /// <summary>Biases on the feed-forward products (T5: none).</summary>
    public bool FfnBias { get; init; } = true;

    /// <summary>The normalisation: <c>layer_norm</c> (the default) or <c>rms_norm</c> (T5's: no mean, no bias).</summary>
    public string Norm { get; init; } = "layer_norm";

    /// <summary>ε of every norm.</summary>
    public double NormEpsilon { get; init; } = 1e-5;

    /// <summary>A norm over embeddings + positions before the first block (mBART's <c>layernorm_embedding</c>).</summary>
    public bool EmbeddingNorm { get; init; }

    /// <summary>A norm after the last block of each stack; null (the default) means one exactly when <see cref="PreNorm"/>.</summary>
    public bool? FinalNorm { get; init; }

    /// <summary>Attention scores divided by √(head width) (the paper's; T5: no).</summary>
    public bool ScaleAttention { get; init; } = true;

    /// <summary>A bias on the output projection (Marian's <c>final_logits_bias</c>; T5: none).</summary>
    public bool OutputBias { get; init; } = true;

    /// <summary>The decoder's output is multiplied by this before the output projection (T5 with tied embeddings: d^−½).</summary>
    public double OutputScale { get; init; } = 1.0;

    /// <summary>
    /// Positions: <c>sinusoidal</c> (the default, laid out by <see cref="PositionalLayout"/>), <c>learned</c>, <c>none</c>,
    /// or <c>relative</c> (T5's bucketed relative-position biases on self-attention; see <see cref="RelativeBuckets"/>).
    /// </summary>
    public string Positions { get; init; } = "sinusoidal";

    /// <summary>With <c>relative</c> positions: the number of buckets.</summary>
    public int RelativeBuckets { get; init; } = 32;

    /// <summary>With <c>relative</c> positions: the distance from which all share the last bucket.</summary>
    public int RelativeMaxDistance { get; init; } = 128;

    /// <summary>Position p reads row p + offset of the position table (fairseq-style tables start past the padding id).</summary>
    public int PositionOffset { get; init; }

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
    /// all sines in the first half, all cosines in the second; <c>fairseq</c> (M2M100 / NLLB): halves with fairseq's
    /// frequencies 10000^(−i/(d/2−1)), read from row position + <see cref="PositionOffset"/>.
    /// </summary>
    public string PositionalLayout { get; init; } = "interleaved";

    /// <summary>The number of decoder blocks: <see cref="DecoderLayers"/>, or <see cref="ModelConfig.Layers"/> when that is null.</summary>
    [JsonIgnore]
    public override int DecoderLayerCount => DecoderLayers ?? Layers;

    /// <summary>The model's structure (<see cref="TransformerSpec"/>), which the modules, the packed plans and the row step are built from.</summary>
    public TransformerSpec ToSpec() => new TransformerSpec
    {
        Hidden = HiddenSize, Heads = Heads, AttentionHeadSize = HeadSize, FfnSize = FfnSize, EncoderLayers = Layers, DecoderLayers = DecoderLayerCount,
        SourceVocabulary = SourceVocabSize, TargetVocabulary = TargetVocabSize, MaxPositions = MaxPositions, Dropout = Dropout,
        EmbeddingScale = ScaleEmbedding ? Math.Sqrt(HiddenSize) : 1.0,
        Positions = Positions switch
        {
            "sinusoidal" => PositionKind.Sinusoidal,
            "learned" => PositionKind.Learned,
            "none" => PositionKind.None,
            "relative" => PositionKind.RelativeBuckets,
            _ => throw new ArgumentException($"model config: unknown 'positions' '{Positions}' (known: sinusoidal, learned, none, relative)"),
        },
        RelativeBuckets = RelativeBuckets, RelativeMaxDistance = RelativeMaxDistance,
        SinusoidLayout = PositionalLayout switch
        {
            "interleaved" => SinusoidLayout.Interleaved,
            "halves" => SinusoidLayout.Halves,
            "fairseq" => SinusoidLayout.Fairseq,
            _ => throw new ArgumentException($"model config: unknown 'positional_layout' '{PositionalLayout}' (known: interleaved, halves, fairseq)"),
        },
        PositionOffset = PositionOffset,
        Norm = Norm switch
        {
            "layer_norm" => NormKind.LayerNorm,
            "rms_norm" => NormKind.RmsNorm,
            _ => throw new ArgumentException($"model config: unknown 'norm' '{Norm}' (known: layer_norm, rms_norm)"),
        },
        NormEpsilon = NormEpsilon, PreNorm = PreNorm, EmbeddingNorm = EmbeddingNorm,
        FinalEncoderNorm = FinalNorm ?? PreNorm, FinalDecoderNorm = FinalNorm ?? PreNorm,
        ScaleAttention = ScaleAttention, AttentionBias = AttentionBias,
        FeedForward = FeedForwardKinds.Parse(Activation), FeedForwardBias = FfnBias,
        ShareEmbeddings = ShareEmbeddings, TieOutput = TieEmbeddings, OutputScale = OutputScale, OutputBias = OutputBias,
    };

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
        if (PositionOffset is < 0 or > MaxPositionCount)
            throw new ArgumentException($"model config: 'position_offset' must be in [0, {MaxPositionCount}] (got {PositionOffset})");
        if ((long)(MaxPositions + PositionOffset) * HiddenSize > MaxPositionTable)
            throw new ArgumentException($"model config: 'max_positions' + 'position_offset' × 'hidden_size' makes a position table larger than {MaxPositionTable} values");
        if (!(NormEpsilon > 0 && NormEpsilon < 1)) throw new ArgumentException($"model config: 'norm_epsilon' must be in (0, 1) (got {NormEpsilon})");
        if (!(OutputScale > 0) || double.IsInfinity(OutputScale)) throw new ArgumentException($"model config: 'output_scale' must be positive and finite (got {OutputScale})");
        if (HeadSize is int headSize) Positive(headSize, "head_size", MaxWidth);
        if (HeadSize is null && HiddenSize % Heads != 0)
            throw new ArgumentException($"model config: 'hidden_size' {HiddenSize} must be divisible by 'heads' {Heads}");
        if (EmbeddingSize != HiddenSize)
            throw new ArgumentException($"model config: a transformer needs 'embedding_size' = 'hidden_size' (got {EmbeddingSize} and {HiddenSize})");
        if (ShareEmbeddings && SourceVocabSize != TargetVocabSize)
            throw new ArgumentException("model config: 'share_embeddings' needs one joint vocabulary (source and target sizes differ)");
        ToSpec().Validate(); // every name (activation, norm, positions, layout) known
    }

    /// <summary>The encoder's and the decoder's sinusoid tables, (max_positions + position_offset) × hidden_size each.</summary>
    internal override (string Keys, long Count) ComputedValues => Positions == "sinusoidal"
        ? ("2 × 'max_positions' × 'hidden_size' (a Hugging Face folder's 'max_position_embeddings' × 'd_model'), the sinusoid tables",
            2L * (MaxPositions + PositionOffset) * HiddenSize)
        : ("", 0);

    /// <inheritdoc />
    public override IEnumerable<(string Keys, long Count)> MinimumParameterTerms()
    {
        long h = HiddenSize, src = SourceVocabSize, tgt = TargetVocabSize, a = (long)Heads * (HeadSize ?? HiddenSize / Heads);
        yield return ("target_vocab_size × hidden_size", tgt * h);
        if (!ShareEmbeddings) yield return ("source_vocab_size × hidden_size", src * h);
        if (Positions == "learned") yield return ("(max_positions + position_offset) × hidden_size (learned positions)", 2L * (MaxPositions + PositionOffset) * h);
        if (!TieEmbeddings) yield return ("target_vocab_size × hidden_size (output layer)", tgt * h);
        long ffnMatrices = FeedForwardKinds.Parse(Activation).IsGated() ? 3 : 2;
        yield return ("layers × hidden_size × (heads × head_size, ffn_size)", Layers * (4 * h * a + ffnMatrices * h * FfnSize));
        yield return ("decoder_layers × hidden_size × (heads × head_size, ffn_size)", DecoderLayerCount * (8 * h * a + ffnMatrices * h * FfnSize));
    }
}
