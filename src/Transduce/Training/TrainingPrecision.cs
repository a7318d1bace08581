using System.Diagnostics;
using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>The number type of training's matrix products (<see cref="TrainingOptions.Precision"/>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<TrainingPrecision>))]
public enum TrainingPrecision
{
    /// <summary>Float32 everywhere (the default).</summary>
    [JsonStringEnumMemberName("float32")]
    Float32,

    /// <summary>
    /// Mixed precision through libtorch's CPU autocast: the matmuls run in bfloat16, while the weights, gradients, Adam's
    /// state, layer norms, softmax and the loss stay float32, and checkpoints stay float32.
    /// </summary>
    [JsonStringEnumMemberName("bfloat16")]
    BFloat16,

    /// <summary>
    /// The faster of the two on this machine, measured when a new run starts (<see cref="TrainingPrecisions.Choose"/>):
    /// bfloat16 only where its matmuls clearly beat float32's (AMX). The run saves the choice it made, so a resumed run
    /// keeps it.
    /// </summary>
    [JsonStringEnumMemberName("auto")]
    Auto,
}

/// <summary>Names of <see cref="TrainingPrecision"/> and the rule behind <see cref="TrainingPrecision.Auto"/>.</summary>
internal static class TrainingPrecisions
{
    /// <summary>
    /// How much faster bfloat16 products must be than float32 ones for <see cref="TrainingPrecision.Auto"/> to take them.
    /// Two hosts measured (BENCHMARKS.md, issues 16 and 27): bf16 matmul peaks 3.75× fp32 gave training 2.68× fp32; 0.51× gave
    /// 0.64×. So training follows the product speed, with a little margin for the casts autocast adds and the exactness
    /// float32 keeps.
    /// </summary>
    public const double BFloat16Margin = 1.2;

    /// <summary>The accepted names: <c>float32</c>, <c>bfloat16</c>, <c>auto</c> (and <c>fp32</c>, <c>bf16</c>).</summary>
    public static IReadOnlyList<string> Names { get; } = ["float32", "bfloat16", "auto"];

    /// <summary>Parses a name of <see cref="Names"/> (case-insensitive); anything else throws <see cref="ArgumentException"/> listing them.</summary>
    public static TrainingPrecision Parse(string name) => name.ToLowerInvariant() switch
    {
        "float32" or "fp32" => TrainingPrecision.Float32,
        "bfloat16" or "bf16" => TrainingPrecision.BFloat16,
        "auto" => TrainingPrecision.Auto,
        _ => throw new ArgumentException($"unknown training precision '{name}' (known: fp32, bf16, auto; int8 is for decoding)"),
    };

    /// <summary>The name of <paramref name="precision"/> as <see cref="Parse"/> reads it.</summary>
    public static string Name(this TrainingPrecision precision) => precision switch
    {
        TrainingPrecision.Float32 => "float32",
        TrainingPrecision.BFloat16 => "bfloat16",
        TrainingPrecision.Auto => "auto",
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "unknown training precision"),
    };

    /// <summary>
    /// The rule of <see cref="TrainingPrecision.Auto"/>: bfloat16 when its matmuls run at least <see cref="BFloat16Margin"/>×
    /// as fast as float32's (GFLOP/s measured on the same threads), float32 otherwise (and when either figure is not a
    /// positive number).
    /// </summary>
    internal static TrainingPrecision Choose(double float32GFlops, double bfloat16GFlops) =>
        float32GFlops > 0 && bfloat16GFlops >= BFloat16Margin * float32GFlops ? TrainingPrecision.BFloat16 : TrainingPrecision.Float32;

    /// <summary>
    /// Measures the square matmuls training's products go through (libtorch's <c>mm</c>, 1,024 wide) in float32 and in
    /// bfloat16 on the current intra-op threads, and returns what <see cref="Choose"/> makes of them, with the figures.
    /// Each type is timed in a few short windows after a warm-up and its best window counts, so a moment of noise on a
    /// shared machine does not decide; it takes about a quarter of a second.
    /// </summary>
    internal static (TrainingPrecision Chosen, double Float32GFlops, double BFloat16GFlops) Measure(double secondsPerType = 0.1)
    {
        double f32 = MatmulGFlops(ScalarType.Float32, secondsPerType), bf16 = MatmulGFlops(ScalarType.BFloat16, secondsPerType);
        return (Choose(f32, bf16), f32, bf16);
    }

    private static double MatmulGFlops(ScalarType type, double seconds)
    {
        const int N = 1024, Windows = 4;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = randn(N, N).to(type);
        var b = randn(N, N).to(type);
        a.mm(b).Dispose();
        double best = 0;
        for (int w = 0; w < Windows; w++)
        {
            long calls = 0;
            var clock = Stopwatch.StartNew();
            do
            {
                a.mm(b).Dispose();
                calls++;
            }
            while (clock.Elapsed.TotalSeconds < seconds / Windows);
            best = Math.Max(best, 2.0 * N * N * N * calls / clock.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }

    /// <summary>The concrete precision of <paramref name="precision"/>: itself, or <see cref="Measure"/>'s choice for <see cref="TrainingPrecision.Auto"/>.</summary>
    internal static (TrainingPrecision Chosen, string Reason) Resolve(TrainingPrecision precision)
    {
        if (precision != TrainingPrecision.Auto) return (precision, "");
        var (chosen, f32, bf16) = Measure();
        return (chosen, $"auto: matmuls {bf16:N0} GFLOP/s in bfloat16, {f32:N0} in float32");
    }
}
