using System.Reflection;
using System.Runtime.InteropServices;

namespace Transduce.Native;

/// <summary>
/// libtorch takes tensor memory from the C library's <c>malloc</c>. glibc serves every block above its mmap threshold
/// (at most 32 MB) with a fresh <c>mmap</c> and unmaps it on free, so a training step whose logits alone are
/// ~120 MB faults every page of them in again, every step: 300 million page faults in an hour of the base preset,
/// about a tenth of its CPU time. Keeping freed memory in the heap for reuse removes that churn.
/// </summary>
internal static class NativeMemory
{
    private const int TrimThreshold = -1, MmapMax = -4; // mallopt parameters M_TRIM_THRESHOLD and M_MMAP_MAX (malloc.h)

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    private static extern int Mallopt(int parameter, int value);

    [DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>glibc's <c>mallopt</c> and <c>malloc_trim</c>, resolved once (Linux with glibc only).</summary>
    public static NativeBinding Binding { get; } = new("keep freed native memory", "glibc mallopt, malloc_trim",
        "freed native memory goes back to the system as the C library decides", Probe);

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux()) return "not Linux";
        try
        {
            Marshal.Prelink(typeof(NativeMemory).GetMethod(nameof(Mallopt), BindingFlags.NonPublic | BindingFlags.Static)!);
            Marshal.Prelink(typeof(NativeMemory).GetMethod(nameof(MallocTrim), BindingFlags.NonPublic | BindingFlags.Static)!);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "no glibc (libc.so.6 with mallopt, malloc_trim)"; // musl, for one: its allocator keeps its own policy
        }
    }

    /// <summary>Whether <see cref="KeepFreedMemory"/> has been applied in this process.</summary>
    public static bool Kept { get; private set; }

    /// <summary>
    /// Process-wide: serves large blocks from the heap instead of fresh mappings and never gives freed memory back to the
    /// system, so the process keeps its peak footprint and reuses it (the way PyTorch's caching allocators do).
    /// Only on Linux with glibc; elsewhere nothing changes.
    /// </summary>
    /// <returns>True when the setting was applied.</returns>
    public static bool KeepFreedMemory()
    {
        if (!Binding.Available) return false;
        if (Kept) return true;
        return Kept = Mallopt(MmapMax, 0) == 1 && Mallopt(TrimThreshold, int.MaxValue) == 1;
    }

    /// <summary>
    /// Gives the free memory of the C heap back to the system now (glibc's <c>malloc_trim(0)</c>), e.g. so that a
    /// measurement's peak RSS starts from what is live. Only on Linux with glibc; elsewhere nothing happens.
    /// </summary>
    public static void ReleaseFreedMemory()
    {
        if (Binding.Available) MallocTrim(0);
    }
}
