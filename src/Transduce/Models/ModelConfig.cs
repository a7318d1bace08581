using System.Text.Json;
using System.Text.Json.Serialization;

namespace Transduce.Models;

/// <summary>
/// Everything needed to rebuild a model's modules (not its weights). Stored as JSON in every checkpoint.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Architecture name: <c>gru</c>, <c>bahdanau</c> or <c>transformer</c>.</summary>
    public string Architecture { get; init; } = "gru";

    /// <summary>Source vocabulary size.</summary>
    public int SourceVocabSize { get; init; }

    /// <summary>Target vocabulary size.</summary>
    public int TargetVocabSize { get; init; }

    /// <summary>Embedding width.</summary>
    public int EmbeddingSize { get; init; } = 256;

    /// <summary>Hidden (model) width.</summary>
    public int HiddenSize { get; init; } = 256;

    /// <summary>Number of recurrent layers (or blocks) in encoder and decoder.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Dropout probability used while training.</summary>
    public double Dropout { get; init; } = 0.2;

    /// <summary>Id of the padding token in both vocabularies.</summary>
    public int PadId { get; init; }

    /// <summary>Transformer: attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Transformer: inner width of the position-wise feed-forward network.</summary>
    public int FfnSize { get; init; } = 64;

    /// <summary>Transformer: feed-forward activation, <c>relu</c>, <c>gelu</c> or <c>swish</c>.</summary>
    public string Activation { get; init; } = "relu";

    /// <summary>Transformer: layer norm before each sub-layer (pre-norm) instead of after the residual sum (post-norm, the book's).</summary>
    public bool PreNorm { get; init; }

    /// <summary>Transformer: the output projection shares the target embedding matrix.</summary>
    public bool TieEmbeddings { get; init; }

    /// <summary>Transformer: encoder and decoder share one embedding (needs one joint vocabulary).</summary>
    public bool ShareEmbeddings { get; init; }

    /// <summary>Transformer: biases on the attention projections (d2l: none).</summary>
    public bool AttentionBias { get; init; }

    /// <summary>Transformer: embeddings are multiplied by √hidden before positions are added (d2l: yes).</summary>
    public bool ScaleEmbedding { get; init; } = true;

    /// <summary>Transformer: longest sequence the positional table covers.</summary>
    public int MaxPositions { get; init; } = 1024;

    /// <summary>
    /// Transformer: decoder blocks when they differ from the encoder's <see cref="Layers"/>; null (the default) means
    /// the same number.
    /// </summary>
    public int? DecoderLayers { get; init; }

    /// <summary>
    /// Transformer: column layout of the sinusoidal position table. <c>interleaved</c> (d2l, the default):
    /// sin and cos of each frequency in adjacent columns 2i, 2i+1; <c>halves</c> (Marian / Hugging Face
    /// <c>MarianSinusoidalPositionalEmbedding</c>): all sines in the first half, all cosines in the second.
    /// </summary>
    public string PositionalLayout { get; init; } = "interleaved";

    /// <summary>The number of decoder blocks: <see cref="DecoderLayers"/>, or <see cref="Layers"/> when that is null.</summary>
    [JsonIgnore]
    public int DecoderLayerCount => DecoderLayers ?? Layers;

    /// <summary>
    /// The longest sequence (in tokens, <c>&lt;eos&gt;</c> included) the architecture can take on either side, or null when
    /// unbounded (recurrent models). Training and translation cut longer inputs to it rather than fail.
    /// </summary>
    [JsonIgnore]
    public int? MaxSequenceLength => Architecture == "transformer" ? MaxPositions : null;

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Checks that every size is usable; throws <see cref="ArgumentException"/> naming the field otherwise.</summary>
    public void Validate()
    {
        static void Positive(int value, string name)
        {
            if (value <= 0) throw new ArgumentException($"model config: '{name}' must be positive (got {value})");
        }
        Positive(SourceVocabSize, "source_vocab_size");
        Positive(TargetVocabSize, "target_vocab_size");
        Positive(EmbeddingSize, "embedding_size");
        Positive(HiddenSize, "hidden_size");
        Positive(Layers, "layers");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"model config: 'dropout' must be in [0, 1) (got {Dropout})");
        if (Architecture != "transformer") return;
        Positive(Heads, "heads");
        Positive(FfnSize, "ffn_size");
        Positive(MaxPositions, "max_positions");
        if (DecoderLayers is int d) Positive(d, "decoder_layers");
        if (PositionalLayout is not ("interleaved" or "halves"))
            throw new ArgumentException($"model config: unknown 'positional_layout' '{PositionalLayout}' (known: interleaved, halves)");
        if (HiddenSize % Heads != 0)
            throw new ArgumentException($"model config: 'hidden_size' {HiddenSize} must be divisible by 'heads' {Heads}");
        if (EmbeddingSize != HiddenSize)
            throw new ArgumentException($"model config: a transformer needs 'embedding_size' = 'hidden_size' (got {EmbeddingSize} and {HiddenSize})");
        if (ShareEmbeddings && SourceVocabSize != TargetVocabSize)
            throw new ArgumentException("model config: 'share_embeddings' needs one joint vocabulary (source and target sizes differ)");
        if (Activation is not ("relu" or "gelu" or "swish"))
            throw new ArgumentException($"model config: unknown 'activation' '{Activation}' (known: relu, gelu, swish)");
    }
}
