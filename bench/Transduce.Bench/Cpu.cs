namespace Transduce.Bench;

/// <summary>CPU time of this thread or process: on a shared machine it measures the work done, where wall time also counts waiting for a core.</summary>
internal static class Cpu
{
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Timespec { public long Seconds; public long Nanoseconds; }
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGettime(int clock, out Timespec ts);
    /// <summary>CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in seconds.</summary>
    public static double ThreadSeconds() { ClockGettime(3, out var ts); return ts.Seconds + ts.Nanoseconds * 1e-9; }
    /// <summary>CPU time of the whole process (CLOCK_PROCESS_CPUTIME_ID), in seconds.</summary>
    public static double ProcessSeconds() { ClockGettime(2, out var ts); return ts.Seconds + ts.Nanoseconds * 1e-9; }
}

