using Transduce.Models;
using Transduce.Native;

namespace Transduce.Tests.Cli;

/// <summary><c>transduce doctor</c> prints the capability report; <c>--kernels</c> shows what a choice switches off.</summary>
public sealed class DoctorCommandTests
{
    [Fact]
    public void DoctorPrintsEveryKernelWithItsStatus()
    {
        var (code, output, error) = CliTests.Run(null, "doctor");
        Assert.True(code == 0, error + output);
        var lines = output.TrimEnd('\n').Split('\n');
        foreach (string name in NativeBindings.All.Select(b => b.Name).Concat(["cpu Avx2", "cpu Avx512F", "Vector512 accelerated", "TorchSharp", "libtorch",
                     "threads", "packed decoding", "managed row step", "managed panels"]))
            Assert.Contains(lines, l => l.StartsWith(name + " ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith(OneDnnKernels.Binding.Name, StringComparison.Ordinal) && l.Contains(" in use "));
        Assert.Equal(Capabilities.Report().Count, lines.Length);
    }

    [Fact]
    public void DoctorShowsAChoiceAndRefusesAnUnknownOne()
    {
        var (code, output, error) = CliTests.Run(null, "doctor", "--kernels", "no-onednn,no-row-step");
        Assert.True(code == 0, error + output);
        var lines = output.Split('\n');
        Assert.Contains(lines, l => l.StartsWith(OneDnnKernels.Binding.Name, StringComparison.Ordinal) && l.Contains(" off ") && l.Contains("no-onednn"));
        Assert.Contains(lines, l => l.StartsWith("managed row step", StringComparison.Ordinal) && l.Contains(" off "));

        var bad = CliTests.Run(null, "doctor", "--kernels", "fastest");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("no-onednn", bad.Err);
    }
}
