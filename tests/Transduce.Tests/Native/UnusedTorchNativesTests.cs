namespace Transduce.Tests.Native;

/// <summary>
/// build/Transduce.targets (imported by every project here, and shipped as the Transduce package's buildTransitive
/// targets) leaves out of the output the libtorch libraries nothing loads, and keeps the ones TorchSharp loads: this
/// test assembly's own output is such an output.
/// </summary>
public sealed class UnusedTorchNativesTests
{
    private static readonly string[] Unused =
        ["libtorch_python", "libshm", "libtorch_global_deps", "libtorchbind_test", "libjitbackend_test", "libbackend_with_compiler", "libaoti_custom_ops", "libnnapi_backend"];

    [Fact]
    public void TheOutputHasOnlyTheLibTorchLibrariesThatLoad()
    {
        var names = Directory.EnumerateFiles(AppContext.BaseDirectory, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetFileName(f)).ToHashSet();
        if (OperatingSystem.IsLinux())
            foreach (string needed in new[] { "libtorch_cpu.so", "libtorch.so", "libc10.so", "libLibTorchSharp.so" })
                Assert.Contains(needed, names);
        foreach (string unused in Unused)
            Assert.DoesNotContain(names, n => n.StartsWith(unused + ".", StringComparison.Ordinal));
        string deps = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Transduce.Tests.deps.json"));
        foreach (string unused in Unused)
            Assert.DoesNotContain(unused + ".", deps);
        Assert.Contains("libtorch_cpu.", deps);
    }
}
