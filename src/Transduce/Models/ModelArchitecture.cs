using Transduce.Architecture;

namespace Transduce.Models;

/// <summary>
/// One architecture as <see cref="ModelRegistry"/> knows it: its name, what it is, its config type, how to build a model
/// from a config, and how to make a config from the common <see cref="ModelSettings"/>. Each built-in model folder defines
/// its own (<c>Registration</c> on its config type); a model of your own is described with <see cref="Of"/> and added
/// with <see cref="ModelRegistry.Register"/>.
/// </summary>
public sealed class ModelArchitecture
{
    private readonly Func<ModelConfig, EncoderDecoder> create;
    private readonly Func<ModelSettings, ModelConfig> configure;

    private ModelArchitecture(string name, string description, Type configType,
        Func<ModelConfig, EncoderDecoder> create, Func<ModelSettings, ModelConfig> configure)
    {
        Name = name;
        Description = description;
        ConfigType = configType;
        this.create = create;
        this.configure = configure;
    }

    /// <summary>
    /// Describes an architecture whose config type is <typeparamref name="TConfig"/>.
    /// </summary>
    /// <param name="name">
    /// The name configs and the command line use: what <typeparamref name="TConfig"/>'s <see cref="ModelConfig.Architecture"/>
    /// returns, <c>model.architecture</c> in a run configuration and <c>architecture</c> in a checkpoint's <c>config.json</c>.
    /// </param>
    /// <param name="description">One line for help texts and <c>/v1/models</c>.</param>
    /// <param name="create">Builds a freshly initialised model from a checked config (vocabulary sizes and padding id set).</param>
    /// <param name="configure">
    /// A config from the common settings, <see cref="ModelSettings.Extra"/> included (vocabulary sizes and padding id are set
    /// afterwards, with <c>with</c>).
    /// </param>
    public static ModelArchitecture Of<TConfig>(string name, string description, Func<TConfig, EncoderDecoder> create,
        Func<ModelSettings, TConfig> configure) where TConfig : ModelConfig
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(create);
        ArgumentNullException.ThrowIfNull(configure);
        if (typeof(TConfig).IsAbstract)
            throw new ArgumentException($"architecture '{name}': the config type {typeof(TConfig).Name} is abstract; give the concrete record that config.json is read as", nameof(TConfig));
        return new(name, description, typeof(TConfig), c => create((TConfig)c), s => configure(s));
    }

    /// <summary>The name configs and the command line use.</summary>
    public string Name { get; }

    /// <summary>What the architecture is, in one line.</summary>
    public string Description { get; }

    /// <summary>The architecture's config type (a <see cref="ModelConfig"/>).</summary>
    public Type ConfigType { get; }

    /// <summary>Builds a freshly initialised model from <paramref name="config"/> (of <see cref="ConfigType"/>).</summary>
    public EncoderDecoder Create(ModelConfig config)
    {
        if (!ConfigType.IsInstanceOfType(config))
            throw new ArgumentException($"model config: a '{Name}' model needs a {ConfigType.Name}, not a {config.GetType().Name}");
        return create(config);
    }

    /// <summary>This architecture's config for <paramref name="settings"/> and the given vocabularies.</summary>
    public ModelConfig Configure(ModelSettings settings, int sourceVocabSize, int targetVocabSize, int padId)
    {
        var config = configure(settings) ?? throw new InvalidOperationException($"architecture '{Name}': configure returned no config");
        if (config.Architecture != Name)
            throw new InvalidOperationException($"architecture '{Name}': configure made a config whose architecture is '{config.Architecture}'");
        return config with { SourceVocabSize = sourceVocabSize, TargetVocabSize = targetVocabSize, PadId = padId };
    }
}
