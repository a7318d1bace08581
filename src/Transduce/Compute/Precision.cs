using System.Text.Json.Serialization;

namespace Transduce.Compute;

/// <summary>
/// The number format a model computes in. Weights, optimiser state and checkpoints stay float32 whatever is chosen;
/// only the arithmetic of matmuls (linear layers, attention products) changes. Written <c>fp32</c> / <c>bf16</c> in
/// settings files and on the command line.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<Precision>))]
public enum Precision
{
    /// <summary>Everything in float32.</summary>
    [JsonStringEnumMemberName("fp32")]
    Float32,

    /// <summary>
    /// Mixed precision: matmuls in bfloat16 (libtorch's CPU autocast, see <see cref="Autocast"/>), with float32
    /// master weights, residual stream, layer norms, softmax and loss.
    /// </summary>
    [JsonStringEnumMemberName("bf16")]
    BFloat16,
}

/// <summary>Names of <see cref="Precision"/> values as users write them.</summary>
public static class PrecisionNames
{
    /// <summary>The accepted names, for help texts and errors.</summary>
    public static IReadOnlyList<string> All { get; } = ["fp32", "bf16"];

    /// <summary>The user-facing name: <c>fp32</c> or <c>bf16</c>.</summary>
    public static string Name(this Precision precision) => precision switch
    {
        Precision.Float32 => "fp32",
        Precision.BFloat16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, null),
    };

    /// <summary>Parses <c>fp32</c> or <c>bf16</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Any other name; the message lists the known ones.</exception>
    public static Precision Parse(string name) => name.ToLowerInvariant() switch
    {
        "fp32" or "float32" => Precision.Float32,
        "bf16" or "bfloat16" => Precision.BFloat16,
        _ => throw new ArgumentException($"unknown precision '{name}' (known: {string.Join(", ", All)})"),
    };
}
