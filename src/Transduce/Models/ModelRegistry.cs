using Transduce.Architecture;
using Transduce.Models.Bahdanau;
using Transduce.Models.Gru;
using Transduce.Models.Transformer;

namespace Transduce.Models;

/// <summary>
/// Every architecture Transduce builds, trains, saves and loads. A model lives in its own folder with its config type;
/// adding one is that folder and one line here. The command line's help, the presets, checkpoint loading and the
/// service's model description all read this list.
/// </summary>
internal static class ModelRegistry
{
    /// <summary>The registered architectures, in the order help texts list them.</summary>
    public static IReadOnlyList<ModelArchitecture> Architectures { get; } =
    [
        GruConfig.Registration,
        BahdanauConfig.Registration,
        TransformerConfig.Registration,
    ];

    /// <summary>The registered names.</summary>
    public static IReadOnlyList<string> Names { get; } = Architectures.Select(a => a.Name).ToArray();

    /// <summary>The architecture called <paramref name="name"/>; an unknown name throws <see cref="ArgumentException"/> listing the known ones.</summary>
    public static ModelArchitecture Get(string name) =>
        Architectures.FirstOrDefault(a => a.Name == name)
        ?? throw new ArgumentException($"model config: unknown architecture '{name}' (known: {string.Join(", ", Names)})");

    /// <summary>Checks <paramref name="config"/> and builds a freshly initialised model of its architecture.</summary>
    public static EncoderDecoder Create(ModelConfig config)
    {
        config.Validate();
        return Get(config.Architecture).Create(config);
    }
}
