using System.Runtime.InteropServices;

namespace Transduce.Bench;

/// <summary>Gives the C library's free heap memory back to the system, so that a phase's peak RSS starts from what is live.</summary>
internal static class NativeHeap
{
    [DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>glibc's <c>malloc_trim(0)</c>; does nothing where there is no glibc.</summary>
    public static void Trim()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc: nothing to trim this way
        }
    }
}
