using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Transduce.IO;

/// <summary>
/// Weights files mapped into memory copy-on-write (libtorch's <c>from_file</c>, <c>MAP_PRIVATE</c>): tensors that are views
/// of the file cost no copy and no load time — the kernel reads a page when it is first touched — and writing into one
/// (training) copies that page for this process, never changing the file. After a layer's weights were packed into
/// another layout (<c>PackedLinear</c>), <see cref="Evict"/> tells the kernel their pages may go: the process keeps what it
/// decodes with, not the float32 originals, and reading them again simply faults them back in from the file.
/// Linux and macOS; elsewhere (<see cref="Supported"/> false) files are read into memory instead.
/// </summary>
internal static class MappedFile
{
    private const int MadvisePageOut = 21; // MADV_PAGEOUT (Linux ≥ 5.4): reclaim now; contents are kept (re-read from the file)
    private const int MadviseNormal = 0;   // MADV_NORMAL: the kernel's default read-ahead on faults
    private const int MadviseRandom = 1;   // MADV_RANDOM: a fault reads its own page only

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(IntPtr address, nuint length, int advice);

    [DllImport("LibTorchSharp", EntryPoint = "THSTensor_data")]
    private static extern IntPtr Data(IntPtr tensor); // TorchSharp's own binding: the address of a tensor's first element

    /// <summary>Largest weight still read a row at a time that <see cref="Evict"/> leaves in memory.</summary>
    public const long StillReadResidentBytes = 256L << 20;

    private static readonly List<(long Start, long End)> Mapped = [];
    private static int adviseFailed;

    /// <summary>Whether weights files are mapped rather than read (not on Windows, where a mapped file cannot be replaced).</summary>
    public static bool Supported => !OperatingSystem.IsWindows();

    /// <summary>
    /// The first <paramref name="elements"/> elements of <paramref name="path"/> as a one-dimensional tensor of
    /// <paramref name="type"/> over a private mapping of the file (the caller disposes it; views keep the mapping alive).
    /// </summary>
    public static Tensor Map(string path, ScalarType type, long elements)
    {
        var tensor = from_file(path, shared: false, size: elements, dtype: type);
        long start = Data(tensor.Handle).ToInt64();
        lock (Mapped) Mapped.Add((start, start + elements * tensor.ElementSize));
        return tensor;
    }

    /// <summary>The address of <paramref name="t"/>'s first element.</summary>
    public static long Address(Tensor t) => Data(t.Handle).ToInt64();

    /// <summary>
    /// Lets the kernel reclaim the pages of <paramref name="t"/> when it is a contiguous view of a mapped file (whole pages
    /// inside it only); otherwise does nothing. The values stay what they were: a clean page is re-read from the file,
    /// a page this process wrote to is kept. Returns the bytes advised. <paramref name="stillRead"/> marks a weight that
    /// is still read a few rows at a time (a tied output layer is also the embedding table): up to
    /// <see cref="StillReadResidentBytes"/> it stays, since decoding soon reads every row of it; larger, it leaves and
    /// its range is advised as read at random, so a row comes back alone, not with the kernel's read-ahead around it,
    /// which cost 3–9 ms a row here against 60–80 µs (NLLB-200's 1 GB table; BENCHMARKS.md, issue 28).
    /// <see cref="ReadWhole"/> undoes the advice before a whole pass.
    /// </summary>
    public static long Evict(Tensor t, bool stillRead = false)
    {
        if (!Pages(t, out long first, out long last) || stillRead && last - first <= StillReadResidentBytes) return 0;
        if (Advise(first, last, MadvisePageOut) && stillRead) Advise(first, last, MadviseRandom);
        return last - first;
    }

    /// <summary>
    /// Restores the kernel's read-ahead over <paramref name="t"/> when it is a view of a mapped file that
    /// <see cref="Evict"/> advised as read at random, before a pass reads it whole (packing it again); otherwise does nothing.
    /// </summary>
    public static void ReadWhole(Tensor t)
    {
        if (Pages(t, out long first, out long last)) Advise(first, last, MadviseNormal);
    }

    // The whole pages inside t when it is a contiguous CPU view of a mapped file and advice works here.
    private static bool Pages(Tensor t, out long first, out long last)
    {
        first = last = 0;
        if (!OperatingSystem.IsLinux() || t.device_type != TorchSharp.DeviceType.CPU || !t.is_contiguous() || Volatile.Read(ref adviseFailed) != 0) return false;
        long start = Data(t.Handle).ToInt64(), end = start + t.NumberOfElements * t.ElementSize;
        lock (Mapped)
            if (!Mapped.Any(m => m.Start <= start && end <= m.End)) return false;
        long page = Environment.SystemPageSize;
        (first, last) = ((start + page - 1) / page * page, end / page * page);
        return last > first;
    }

    // madvise over [first, last); an older kernel or a libc without it stops all advice (the pages simply stay).
    private static bool Advise(long first, long last, int advice)
    {
        try
        {
            if (Madvise(new IntPtr(first), (nuint)(last - first), advice) == 0) return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        Interlocked.Exchange(ref adviseFailed, 1);
        return false;
    }
}
