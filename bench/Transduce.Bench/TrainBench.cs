using System.CommandLine;

namespace Transduce.Bench;

/// <summary>Training throughput (to be written).</summary>
internal static class TrainBench
{
    /// <summary>The <c>train</c> command.</summary>
    public static Command Create() => new("train", "Training throughput, side by side with the PyTorch twin.");
}
