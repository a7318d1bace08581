using System.Text.Json.Serialization;

namespace Transduce.Models;

/// <summary>
/// The number type of the matrix products when a model decodes or trains (its weights are stored in float32 whatever
/// this is). Training has its own choice, <see cref="Training.TrainingPrecision"/>.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<ComputeType>))]
public enum ComputeType
{
    /// <summary>Float32 everywhere (the default; exact with respect to training).</summary>
    [JsonStringEnumMemberName("float32")]
    Float32,

    /// <summary>
    /// Linear layers multiply in bfloat16 (weights rounded once to bfloat16, activations rounded on the way in, results
    /// back to float32); layer norms, softmax and residual sums stay float32. Pays from a few rows per product up: oneDNN's
    /// bfloat16 kernels need AVX-512 BF16 (or AMX) to beat float32. In training: mixed precision through libtorch's
    /// autocast, with float32 master weights, optimiser state, layer norms, softmax and loss.
    /// </summary>
    [JsonStringEnumMemberName("bfloat16")]
    BFloat16,

    /// <summary>
    /// Linear layers multiply in int8: weights quantized once per output channel (symmetric range per row), activations
    /// quantized on the fly per product (FBGEMM, VNNI where the CPU has it); everything else stays float32.
    /// </summary>
    [JsonStringEnumMemberName("int8")]
    Int8,
}

/// <summary>
/// An encoder or decoder that can run in a reduced <see cref="Models.ComputeType"/> in eval mode (through packed weights):
/// the Transformer's encoder and decoder, the GRU's decoder.
/// </summary>
internal interface IReducedPrecisionModule
{
    /// <summary>The number type of the products in eval mode.</summary>
    ComputeType ComputeType { get; set; }
}

/// <summary>Names of <see cref="ComputeType"/> as the command line and config files spell them.</summary>
public static class ComputeTypes
{
    /// <summary>The accepted names: <c>float32</c>, <c>bfloat16</c>, <c>int8</c>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["float32", "bfloat16", "int8"];

    /// <summary>Parses a name of <see cref="Names"/> (case-insensitive); anything else throws <see cref="ArgumentException"/> listing them.</summary>
    public static ComputeType Parse(string name) => name.ToLowerInvariant() switch
    {
        "float32" or "fp32" => ComputeType.Float32,
        "bfloat16" or "bf16" => ComputeType.BFloat16,
        "int8" => ComputeType.Int8,
        _ => throw new ArgumentException($"unknown compute type '{name}' (known: {string.Join(", ", Names)})"),
    };

    /// <summary>
    /// Sets the compute type of every decoder in <paramref name="model"/> that has one; a reduced type on a model with none
    /// (the Bahdanau GRU) throws <see cref="ArgumentException"/>.
    /// </summary>
    internal static void Apply(TorchSharp.torch.nn.Module model, ComputeType type)
    {
        var decoders = model.modules().OfType<IReducedPrecisionModule>().ToList();
        if (decoders.Count == 0 && type != ComputeType.Float32)
            throw new ArgumentException($"this model ({model.GetName()}) decodes in float32 only; --compute-type {type.Name()} needs a built-in Transformer or GRU model");
        foreach (var d in decoders) d.ComputeType = type;
    }

    /// <summary>The name of <paramref name="type"/> as <see cref="Parse"/> reads it.</summary>
    public static string Name(this ComputeType type) => type switch
    {
        ComputeType.Float32 => "float32",
        ComputeType.BFloat16 => "bfloat16",
        ComputeType.Int8 => "int8",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown compute type"),
    };
}
