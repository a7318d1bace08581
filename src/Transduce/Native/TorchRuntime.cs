using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Transduce.Native;

/// <summary>
/// Loads libtorch at the library's entry points (<c>TrainingRun</c>, <c>Checkpoint.Load</c> and so
/// <c>Translator.Load</c>), so that an application without a libtorch package learns in one sentence which package to
/// add for its platform, instead of TorchSharp's page-long load trace wrapped in a <see cref="TypeInitializationException"/>.
/// The Transduce package brings TorchSharp but no native library: the application picks the libtorch build, as TorchSharp
/// advises.
/// </summary>
internal static class TorchRuntime
{
    /// <summary>The platforms TorchSharp 0.107 publishes a CPU libtorch package for (libtorch-cpu-RID).</summary>
    internal static readonly string[] PackagedRids = ["linux-x64", "win-x64", "win-arm64", "osx-arm64"];

    private static readonly Lock Gate = new();
    private static int loaded;

    /// <summary>
    /// Makes sure TorchSharp has loaded libtorch (once per process; afterwards a no-op). A missing native library
    /// throws <see cref="DllNotFoundException"/> whose message names the package to add (the original is its inner exception).
    /// </summary>
    public static void EnsureLoaded()
    {
        if (Volatile.Read(ref loaded) == 1) return;
        lock (Gate)
        {
            if (loaded == 1) return;
            // TorchSharp writes its page-long load trace to the console before it throws; when its native bridge does
            // not load from where the application's native libraries are, the console is silenced while TorchSharp
            // tries its own fallbacks (a libtorch package in the NuGet cache), so that the sentence below is all the
            // user sees. (One caller at a time, so that the console put back is the one taken.)
            TextWriter? console = null;
            if (!BridgeLoads())
            {
                console = Console.Out;
                Console.SetOut(TextWriter.Null);
            }
            try
            {
                // TorchSharp loads libtorch and LibTorchSharp in torch's static constructor.
                RuntimeHelpers.RunClassConstructor(typeof(torch).TypeHandle);
            }
            catch (TypeInitializationException e) when (MissingMessage(e, CurrentRid()) is { } message)
            {
                throw new DllNotFoundException(message, e);
            }
            finally
            {
                if (console is not null) Console.SetOut(console);
            }
            Volatile.Write(ref loaded, 1);
        }
    }

    /// <summary>
    /// The one sentence for a failure to load libtorch on <paramref name="rid"/>, or null when
    /// <paramref name="failure"/> is not one (TorchSharp reports a missing or unloadable native library as a
    /// <see cref="NotSupportedException"/> or <see cref="DllNotFoundException"/> inside the type initializer's exception).
    /// </summary>
    internal static string? MissingMessage(Exception failure, string rid)
    {
        Exception inner = failure is TypeInitializationException { InnerException: { } i } ? i : failure;
        if (inner is not (NotSupportedException or DllNotFoundException)) return null;
        string package = $"libtorch-cpu-{rid}";
        return PackagedRids.Contains(rid)
            ? $"libtorch not found: add the package {package} (dotnet add package {package})"
            : $"libtorch not found, and TorchSharp publishes no libtorch package for {rid} " +
              $"(it has {string.Join(", ", PackagedRids.Select(r => $"libtorch-cpu-{r}"))})";
    }

    /// <summary>Whether TorchSharp's native bridge (and so libtorch, which it needs) loads from the application's native libraries.</summary>
    internal static bool BridgeLoads() => NativeLibrary.TryLoad("LibTorchSharp", typeof(torch).Assembly, null, out _);

    /// <summary>This process's platform as a portable RID (linux-x64, win-arm64, osx-arm64, …).</summary>
    internal static string CurrentRid()
    {
        string os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : OperatingSystem.IsLinux() ? "linux"
            : RuntimeInformation.OSDescription.Split(' ')[0].ToLowerInvariant();
        return $"{os}-{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()}";
    }
}
