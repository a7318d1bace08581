using Transduce.Architecture;
using Transduce.Models.Bahdanau;
using Transduce.Models.Gru;
using Transduce.Models.Transformer;

namespace Transduce.Models;

/// <summary>
/// Every architecture Transduce builds, trains, saves and loads: the built-in ones (<c>gru</c>, <c>bahdanau</c>,
/// <c>transformer</c>) and those an application adds with <see cref="Register"/>. A built-in model lives in its own folder
/// with its config type and one line here. Training (<c>model.architecture</c> of a run configuration), checkpoint
/// loading (<c>architecture</c> in <c>config.json</c>), the command line's help and the service's model description all
/// read this list.
/// </summary>
public static class ModelRegistry
{
    private static readonly Lock Gate = new();

    private static ModelArchitecture[] s_architectures =
    [
        GruConfig.Registration,
        BahdanauConfig.Registration,
        TransformerConfig.Registration,
    ];

    /// <summary>The registered architectures: the built-in ones first, then the registered ones in the order they came.</summary>
    public static IReadOnlyList<ModelArchitecture> Architectures => Volatile.Read(ref s_architectures);

    /// <summary>The registered names, in the order of <see cref="Architectures"/>.</summary>
    public static IReadOnlyList<string> Names => [.. Architectures.Select(a => a.Name)];

    /// <summary>
    /// Adds <paramref name="architecture"/>, so that run configurations, checkpoints, translators and the service know its
    /// name from now on, in this process (register it at start-up, before loading a checkpoint of it). Safe to call from
    /// several threads. A name already registered (a built-in one, or the same architecture twice) throws
    /// <see cref="ArgumentException"/>.
    /// </summary>
    public static void Register(ModelArchitecture architecture)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        lock (Gate)
        {
            var current = s_architectures;
            if (current.Any(a => a.Name == architecture.Name))
                throw new ArgumentException(
                    $"model architecture '{architecture.Name}' is already registered (registered: {string.Join(", ", current.Select(a => a.Name))})",
                    nameof(architecture));
            Volatile.Write(ref s_architectures, [.. current, architecture]);
        }
    }

    /// <summary>Whether an architecture called <paramref name="name"/> is registered.</summary>
    public static bool Contains(string name) => Architectures.Any(a => a.Name == name);

    /// <summary>The architecture called <paramref name="name"/>; an unknown name throws <see cref="ArgumentException"/> listing the known ones.</summary>
    public static ModelArchitecture Get(string name) =>
        Architectures.FirstOrDefault(a => a.Name == name)
        ?? throw new ArgumentException($"model config: unknown architecture '{name}' (known: {string.Join(", ", Names)}; " +
            "an architecture of your own must be added with ModelRegistry.Register before it is used)");

    /// <summary>Checks <paramref name="config"/> and builds a freshly initialised model of its architecture.</summary>
    public static EncoderDecoder Create(ModelConfig config)
    {
        config.Validate();
        return Get(config.Architecture).Create(config);
    }
}
