using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>The switch shared by the packed eval-mode decoding paths of the GRU and the Transformer.</summary>
internal static class PackedDecoding
{
    /// <summary>False when the environment sets <c>TRANSDUCE_PACKED_DECODING=0</c>: decoding then runs the modules (for A/B measurements).</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable("TRANSDUCE_PACKED_DECODING") != "0";

    /// <summary>False when the environment sets <c>TRANSDUCE_ROW_STEP=0</c>: one-sentence float32 Transformer steps then run through libtorch too.</summary>
    public static bool RowStepEnabled { get; } = Environment.GetEnvironmentVariable("TRANSDUCE_ROW_STEP") != "0";
}

/// <summary>
/// Reads libtorch's version counter of a tensor (<c>Tensor._version</c> in Python: every in-place change bumps it), which
/// TorchSharp does not bind, from libtorch's exported operator entry point. A packed copy of weights compares the sum of
/// the counters to know whether the weights changed since it was packed. Where the entry point is missing (another
/// libtorch), <see cref="Sum"/> returns null and callers repack whenever they cannot tell.
/// </summary>
internal static class WeightVersions
{
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at4_ops8_version4callERKNS_6TensorE")]
    private static extern long Version(IntPtr tensor);

    // Inference tensors (made under inference mode, e.g. a model loaded inside one) have no version counter: asking
    // throws in C++, which would end the process. They are read as version 0: they change only in place under
    // inference mode, which no counter records.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at4_ops12is_inference4callERKNS_6TensorE")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool IsInference(IntPtr tensor);

    private static bool available = true;

    /// <summary>The sum of the version counters of <paramref name="tensors"/>, or null when they cannot be read.</summary>
    public static long? Sum(IEnumerable<Tensor> tensors)
    {
        if (!available) return null;
        try
        {
            long sum = 0;
            foreach (var t in tensors)
                if (!IsInference(t.Handle)) sum += Version(t.Handle);
            return sum;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            available = false;
            return null;
        }
    }
}
