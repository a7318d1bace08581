using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Transduce.Models;

/// <summary>
/// Everything needed to rebuild a model's modules (not its weights), stored as JSON (<c>model</c> in every checkpoint's
/// <c>config.json</c>). Each architecture has its own config type, in its folder, registered in <see cref="ModelRegistry"/>;
/// the sizes every encoder–decoder has live here. In JSON the <c>architecture</c> field names the type.
/// </summary>
/// <remarks>
/// A model of your own derives a <c>sealed record</c> from it: <see cref="Architecture"/> returns the registered name,
/// its own settings are <c>init</c> properties (written to <c>config.json</c> in snake_case and read back by
/// <c>System.Text.Json</c>), and <see cref="Validate"/> may be overridden to check them (call the base first).
/// </remarks>
public abstract record ModelConfig
{
    /// <summary>The architecture's registered name (<see cref="ModelRegistry"/>).</summary>
    public abstract string Architecture { get; }

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

    /// <summary>
    /// The longest sequence (in tokens, <c>&lt;eos&gt;</c> included) the architecture can take on either side, or null when
    /// unbounded (recurrent models). Training and translation cut longer inputs to it rather than fail.
    /// </summary>
    [JsonIgnore]
    public virtual int? MaxSequenceLength => null;

    /// <summary>Layers (or blocks) of the decoder: <see cref="Layers"/> unless the architecture sets its decoder's depth apart.</summary>
    [JsonIgnore]
    public virtual int DecoderLayerCount => Layers;

    /// <summary>The config as <c>config.json</c> stores it: <c>architecture</c>, then every field in snake_case.</summary>
    public JsonObject ToJson() => JsonSerializer.SerializeToNode(this, Json)!.AsObject();

    /// <summary>How configs are written to and read from <c>config.json</c> (snake_case; the <c>architecture</c> field picks the type).</summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Converters = { new ByArchitecture() },
    };

    /// <summary>Upper bounds on every size, far above any real model: a config beyond them is refused before anything is allocated.</summary>
    internal const int MaxVocabulary = 1 << 22, MaxWidth = 1 << 16, MaxLayers = 256, MaxHeads = 1024, MaxFfn = 1 << 18, MaxPositionCount = 1 << 20;

    /// <summary>The largest computed position table (positions × width) a config may ask for: 2^28 floats, 1 GiB.</summary>
    internal const long MaxPositionTable = 1L << 28;

    /// <summary>Checks that every size is usable; throws <see cref="ArgumentException"/> naming the field otherwise.</summary>
    public virtual void Validate()
    {
        Positive(SourceVocabSize, "source_vocab_size", MaxVocabulary);
        Positive(TargetVocabSize, "target_vocab_size", MaxVocabulary);
        Positive(EmbeddingSize, "embedding_size", MaxWidth);
        Positive(HiddenSize, "hidden_size", MaxWidth);
        Positive(Layers, "layers", MaxLayers);
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"model config: 'dropout' must be in [0, 1) (got {Dropout})");
    }

    /// <summary>Throws unless <paramref name="value"/> is in [1, <paramref name="max"/>], naming the config key.</summary>
    protected static void Positive(int value, string name, int max)
    {
        if (value <= 0) throw new ArgumentException($"model config: '{name}' must be positive (got {value})");
        if (value > max) throw new ArgumentException($"model config: '{name}' {value} is larger than any supported model (at most {max})");
    }

    /// <summary>
    /// A lower bound on the number of weights a model of this configuration has, term by term, each labelled with the
    /// config keys it comes from (leaving out biases and norms). Loading a checkpoint refuses a <c>config.json</c> that
    /// needs more weights than the checkpoint stores, before building the model: a config edited to huge sizes must not
    /// make it allocate them. The default claims nothing (no check); a model's config may override it.
    /// </summary>
    public virtual IEnumerable<(string Keys, long Count)> MinimumParameterTerms() => [];

    /// <summary>
    /// The values the model computes from its configuration alone, not read from its weights (a Transformer's sinusoid
    /// position tables), labelled with the config keys they come from; (empty, 0) when none. Loading refuses a config whose
    /// computed tables are larger than its weights (or than <see cref="ComputedValuesFloor"/>): a 1 MB model must not
    /// make us compute a table of a million positions.
    /// </summary>
    internal virtual (string Keys, long Count) ComputedValues => ("", 0);

    /// <summary>Computed values any loaded model may have whatever its weights: 2^22 floats, 16 MiB.</summary>
    internal const long ComputedValuesFloor = 1L << 22;

    /// <summary>
    /// Reads a config as the type its <c>architecture</c> names (an old config without the field is a <c>gru</c>, the
    /// former default) and writes one with <c>architecture</c> first, then its own fields.
    /// </summary>
    private sealed class ByArchitecture : JsonConverter<ModelConfig>
    {
        public override ModelConfig Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            var node = JsonNode.Parse(ref reader) as JsonObject ?? throw new JsonException("model config: expected a JSON object");
            string name = node["architecture"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : Gru.GruConfig.Name;
            var type = ModelRegistry.Get(name).ConfigType;
            return (ModelConfig)(node.Deserialize(type, options) ?? throw new JsonException("model config: empty"));
        }

        public override void Write(Utf8JsonWriter writer, ModelConfig value, JsonSerializerOptions options)
        {
            var fields = JsonSerializer.SerializeToNode(value, value.GetType(), options)!.AsObject();
            var ordered = new JsonObject { ["architecture"] = value.Architecture };
            foreach (var (key, field) in fields)
                if (key != "architecture") ordered[key] = field?.DeepClone();
            ordered.WriteTo(writer, options);
        }
    }
}
