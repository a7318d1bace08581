using System.Runtime.InteropServices;
using Transduce.Native;

namespace Transduce.Tests.Native;

/// <summary>
/// A missing libtorch is one sentence naming the package to add (<see cref="TorchRuntime"/>). The failure itself is
/// exercised for real by .ci/package-test (an application with the Transduce package and no libtorch package); here, the
/// mapping from TorchSharp's exceptions to that sentence.
/// </summary>
public sealed class TorchRuntimeTests
{
    // What TorchSharp 0.107 throws from torch's static constructor when it cannot load its native libraries.
    private static TypeInitializationException TorchSharpFailure(Exception inner) => new("TorchSharp.torch", inner);

    [Fact]
    public void MissingLibTorchNamesThePackageOfThePlatform()
    {
        var failure = TorchSharpFailure(new NotSupportedException(
            "This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64, Version=2.10.0.0.\n\nConsider …\nTrace from LoadNativeBackend: …"));
        Assert.Equal("libtorch not found: add the package libtorch-cpu-linux-x64 (dotnet add package libtorch-cpu-linux-x64)",
            TorchRuntime.MissingMessage(failure, "linux-x64"));
        Assert.Equal("libtorch not found: add the package libtorch-cpu-win-arm64 (dotnet add package libtorch-cpu-win-arm64)",
            TorchRuntime.MissingMessage(failure, "win-arm64"));
        string? message = TorchRuntime.MissingMessage(TorchSharpFailure(new DllNotFoundException("LibTorchSharp")), "osx-arm64");
        Assert.Equal("libtorch not found: add the package libtorch-cpu-osx-arm64 (dotnet add package libtorch-cpu-osx-arm64)", message);
        Assert.DoesNotContain("\n", message!);
    }

    [Fact]
    public void APlatformWithoutALibTorchPackageIsSaidSo()
    {
        string? message = TorchRuntime.MissingMessage(TorchSharpFailure(new NotSupportedException("…")), "linux-arm64");
        Assert.Equal("libtorch not found, and TorchSharp publishes no libtorch package for linux-arm64 (it has libtorch-cpu-linux-x64, " +
                     "libtorch-cpu-win-x64, libtorch-cpu-win-arm64, libtorch-cpu-osx-arm64)", message);
    }

    [Fact]
    public void OtherFailuresAreNotMistakenForAMissingLibrary()
    {
        Assert.Null(TorchRuntime.MissingMessage(TorchSharpFailure(new InvalidOperationException("something else")), "linux-x64"));
        Assert.Null(TorchRuntime.MissingMessage(new InvalidDataException("model.safetensors: truncated"), "linux-x64"));
    }

    [Fact]
    public void TheCurrentPlatformIsAPortableRid()
    {
        string rid = TorchRuntime.CurrentRid();
        Assert.Matches("^[a-z]+-[a-z0-9]+$", rid);
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64)
            Assert.Equal("linux-x64", rid);
    }

    [Fact]
    public void WithLibTorchPresentTheEntryPointsLoadIt()
    {
        Assert.True(TorchRuntime.BridgeLoads(), "LibTorchSharp does not load from the application's native libraries");
        TorchRuntime.EnsureLoaded();
        TorchRuntime.EnsureLoaded();   // once per process, then nothing
        using var t = TorchSharp.torch.ones(2);
        using var sum = t.sum();
        Assert.Equal(2f, sum.item<float>());
    }
}
