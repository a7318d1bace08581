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

/// <summary>The <c>--compute-type</c> flag of translate, evaluate, serve and convert, read into <see cref="Models.ComputeType"/>.</summary>
internal static class ComputeTypeFlag
{
    /// <summary>What the flag does in the commands that decode; <paramref name="whose"/> names the default's owner.</summary>
    public static string Decoding(string whose = "the checkpoint's") =>
        $"Number type of the model's linear layers in decoding (encoder and decoder): {string.Join(", ", Models.ComputeTypes.Names)}. [default: {whose}, else float32]";

    public static Option<string?> Create(string description)
    {
        var option = new Option<string?>("--compute-type") { Description = description };
        CliValues.OneOf(option, [.. Models.ComputeTypes.Names]);
        return option;
    }

    /// <summary>The type given, or null when the flag is absent.</summary>
    public static Models.ComputeType? Read(ParseResult r, Option<string?> option) =>
        r.GetValue(option) is { } type ? Models.ComputeTypes.Parse(type) : null;
}
