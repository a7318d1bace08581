using System.Diagnostics;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>What the machine can do: the fp32 matmul peak on the benchmark's threads, and the process's peak memory.</summary>
internal static class Hardware
{
    /// <summary>
    /// The best GFLOP/s of square matmuls (n = 512 … 2048) in <paramref name="type"/> (fp32 unless said) on the current
    /// libtorch threads: the ceiling that model FLOPs utilisation is measured against. Each size runs for about
    /// <paramref name="secondsPerSize"/>, in four windows of which the best counts, so a moment of noise on a shared
    /// machine does not lower the ceiling. In float32 the same products also run through oneDNN's inner product over a
    /// pre-reordered weight (what decoding uses, <see cref="Transduce.Native.OneDnnKernels"/>), and the faster kernel
    /// sets the ceiling: on this AMD CPU it is oneDNN, about twice MKL's.
    /// </summary>
    public static (double GFlops, int Size) MatmulPeak(double secondsPerSize = 2, ScalarType type = ScalarType.Float32)
    {
        double best = 0;
        int bestSize = 0;
        using var _ = no_grad();
        foreach (int n in new[] { 512, 1024, 1536, 2048 })
        {
            using var a = randn(n, n, dtype: type);
            using var b = randn(n, n, dtype: type);
            using var packed = type == ScalarType.Float32 && Transduce.Native.OneDnnKernels.Available ? Transduce.Native.OneDnnKernels.Pack(b) : null;
            var products = new List<Func<Tensor>> { () => a.mm(b) };
            if (packed is not null) products.Add(() => Transduce.Native.OneDnnKernels.Linear(a, packed, null));
            foreach (var product in products)
            {
                product().Dispose(); // warm-up
                for (int window = 0; window < 4; window++)
                {
                    long calls = 0;
                    var clock = Stopwatch.StartNew();
                    while (clock.Elapsed.TotalSeconds < secondsPerSize / 4)
                    {
                        product().Dispose();
                        calls++;
                    }
                    double gflops = 2.0 * n * n * n * calls / clock.Elapsed.TotalSeconds / 1e9;
                    if (gflops > best) (best, bestSize) = (gflops, n);
                }
            }
        }
        return (best, bestSize);
    }

    /// <summary>Peak resident set size of this process so far (VmHWM), in bytes; 0 where /proc is absent.</summary>
    public static long PeakRss()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return 0;
        foreach (string line in File.ReadLines(status))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                // "VmHWM:\t 123456 kB": the number is padded to 8 characters, so from 10 GB on no space follows the tab.
                return long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        return 0;
    }

    /// <summary>
    /// One timed pass, measured the same way on every side: the managed heap collected and libtorch's freed native memory
    /// handed back first (else the high-water mark would start from what an earlier mode left behind), the peak reset,
    /// then <paramref name="run"/> timed by the wall clock and by the process's CPU time (every thread; comparable even on a
    /// shared machine).
    /// </summary>
    public static (T Result, double Seconds, double CpuSeconds, long PeakRss) TimedPass<T>(Func<T> run)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Transduce.Native.NativeMemory.ReleaseFreedMemory();
        ResetPeakRss();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var result = run();
        clock.Stop();
        return (result, clock.Elapsed.TotalSeconds, (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds, PeakRss());
    }

    /// <summary>Resets the peak RSS counter (writes 5 to /proc/self/clear_refs, Linux ≥ 4.0), so a phase can be measured alone.</summary>
    public static void ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
