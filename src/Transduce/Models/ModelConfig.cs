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

    /// <summary>Upper bounds on every size, far above any real model: a config beyond them is refused before anything is allocated.</summary>
    internal const int MaxVocabulary = 1 << 22, MaxWidth = 1 << 16, MaxLayers = 256, MaxHeads = 1024, MaxFfn = 1 << 18, MaxPositionCount = 1 << 20;

    /// <summary>The largest computed position table (positions × width) a config may ask for: 2^28 floats, 1 GiB.</summary>
    internal const long MaxPositionTable = 1L << 28;

    /// <summary>Checks that every size is usable; throws <see cref="ArgumentException"/> naming the field otherwise.</summary>
    public void Validate()
    {
        static void Positive(int value, string name, int max)
        {
            if (value <= 0) throw new ArgumentException($"model config: '{name}' must be positive (got {value})");
            if (value > max) throw new ArgumentException($"model config: '{name}' {value} is larger than any supported model (at most {max})");
        }
        Positive(SourceVocabSize, "source_vocab_size", MaxVocabulary);
        Positive(TargetVocabSize, "target_vocab_size", MaxVocabulary);
        Positive(EmbeddingSize, "embedding_size", MaxWidth);
        Positive(HiddenSize, "hidden_size", MaxWidth);
        Positive(Layers, "layers", MaxLayers);
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"model config: 'dropout' must be in [0, 1) (got {Dropout})");
        if (Architecture != "transformer") return;
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

    /// <summary>
    /// A lower bound on the number of weights a model of this configuration has: its embeddings, output layer and
    /// the square (and FFN) matrices of every layer, leaving out biases and norms. Each term is labelled with the
    /// config keys it comes from.
    /// </summary>
    internal IEnumerable<(string Keys, long Count)> MinimumParameterTerms()
    {
        long e = EmbeddingSize, h = HiddenSize, src = SourceVocabSize, tgt = TargetVocabSize;
        if (Architecture != "transformer")
        {
            yield return ("source_vocab_size × embedding_size", src * e);
            yield return ("target_vocab_size × embedding_size", tgt * e);
            yield return ("target_vocab_size × hidden_size", tgt * h);
            yield return ("layers × hidden_size²", 2L * Layers * 3 * h * h); // one recurrent hidden-to-hidden matrix per layer, each side
            yield break;
        }
        yield return ("target_vocab_size × hidden_size", tgt * h);
        if (!ShareEmbeddings) yield return ("source_vocab_size × hidden_size", src * h);
        if (!TieEmbeddings) yield return ("target_vocab_size × hidden_size (output layer)", tgt * h);
        yield return ("layers × hidden_size × (hidden_size, ffn_size)", Layers * (4 * h * h + 2 * h * FfnSize));
        yield return ("decoder_layers × hidden_size × (hidden_size, ffn_size)", DecoderLayerCount * (8 * h * h + 2 * h * FfnSize));
    }

    /// <summary>
    /// Refuses a configuration that needs more weights than <paramref name="weights"/> stores, before a model is built
    /// from it: a config edited to huge sizes must not make us allocate them. Throws <see cref="InvalidDataException"/>
    /// naming <paramref name="configPath"/> and the keys of the largest term.
    /// </summary>
    public void CheckFits(Checkpoints.WeightsIndex weights, string configPath)
    {
        var terms = MinimumParameterTerms().ToList();
        long needed = terms.Sum(t => t.Count);
        if (needed <= weights.StoredElements) return;
        var largest = terms.MaxBy(t => t.Count);
        throw new InvalidDataException(
            $"{configPath}: describes a model of at least {needed:N0} weights ({largest.Keys} alone is {largest.Count:N0}), " +
            $"but {Path.GetFileName(weights.Path)} stores {weights.StoredElements:N0}: the config does not belong to these weights");
    }
}
