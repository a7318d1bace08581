using System.Text.Json;
using System.Text.Json.Serialization;

namespace Transduce.Models;

/// <summary>
/// Everything needed to rebuild a model's modules (not its weights). Stored as JSON in every checkpoint.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Architecture name: <c>gru</c>.</summary>
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
    }
}
