using System.CommandLine;

namespace Transduce.Cli.Commands;

/// <summary>The <c>--kernels</c> flag of translate, evaluate, serve and doctor, read into <see cref="Models.DecodingKernels"/>.</summary>
internal static class KernelFlags
{
    public static Option<string> Create() => new("--kernels")
    {
        Description = $"Decoding kernels, comma-separated: {string.Join(", ", Models.DecodingKernels.Names)} " +
                      "(auto: each where available; modules: no packed decoding; no-row-step: one-sentence steps through libtorch; no-onednn: MKL products).",
        DefaultValueFactory = _ => "auto",
    };

    public static Models.DecodingKernels Read(ParseResult r, Option<string> option) => Models.DecodingKernels.Parse(r.GetValue(option) ?? "auto");

    /// <summary>Writes the capability report for <paramref name="kernels"/>, one line each.</summary>
    public static void Print(TextWriter writer, Models.DecodingKernels kernels)
    {
        foreach (var line in Models.Capabilities.Report(kernels)) writer.WriteLine(line);
    }
}

/// <summary><c>transduce doctor</c>: what this machine and libtorch can run, kernel by kernel.</summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var kernels = KernelFlags.Create();
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var command = new Command("doctor", "Print the CPU features .NET sees, the TorchSharp and libtorch versions, threads, and each decoding kernel: in use, off or its fallback, and why.")
        {
            kernels, threads,
        };
        command.SetAction(r =>
        {
            if (r.GetValue(threads) is int n) TorchSharp.torch.set_num_threads(n);
            KernelFlags.Print(Console.Out, KernelFlags.Read(r, kernels));
            return 0;
        });
        return command;
    }
}
