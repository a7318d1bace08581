using System.CommandLine;

namespace Transduce.Bench;

/// <summary>
/// <c>Transduce.Bench train|infer|step|gemm|infer-synthetic|ddp|load</c>: throughput of training and of decoding, each measured side by side with a
/// PyTorch twin (bench/pytorch, Debian's python3-torch) in the same run, with the model FLOPs utilisation against the
/// matmul peak measured on the same threads.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("Transduce throughput benchmarks, side by side with a PyTorch twin.")
        {
            TrainBench.Create(),
            StepPartsBench.Create(),
            InferBench.Create(),
            StepProfile.Create(),
            GemmBench.Create(),
            KernelBench.Create(),
            EncoderBench.Create(),
            SyntheticInferBench.Create(),
            DdpBench.Create(),
            OrtTwin.CreateCommand(),
        };
        foreach (var command in LoadBench.Create()) root.Subcommands.Add(command);
        return root.Parse(args).Invoke();
    }
}
