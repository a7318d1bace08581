using Transduce.Architecture;

namespace Transduce.Models;

/// <summary>Creates a model from its <see cref="ModelConfig"/>: the one place that knows every architecture.</summary>
internal static class ModelFactory
{
    /// <summary>The architecture names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Architectures { get; } = ["gru", "bahdanau", "transformer"];

    /// <summary>Builds a freshly initialised model.</summary>
    public static EncoderDecoder Create(ModelConfig config)
    {
        config.Validate();
        return config.Architecture switch
        {
            "gru" => new GruSeq2Seq(config),
            "bahdanau" => new BahdanauSeq2Seq(config),
            "transformer" => new TransformerSeq2Seq(config),
            _ => throw new ArgumentException(
                $"model config: unknown architecture '{config.Architecture}' (known: {string.Join(", ", Architectures)})"),
        };
    }
}
