using System.CommandLine;

namespace Transduce.Bench;

/// <summary>Decoding throughput (to be written).</summary>
internal static class InferBench
{
    /// <summary>The <c>infer</c> command.</summary>
    public static Command Create() => new("infer", "Decoding throughput, side by side with the PyTorch twin.");
}
