using System.Reflection;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Transduce.Native;

/// <summary>
/// Reads libtorch's version counter of a tensor (<c>Tensor._version</c> in Python: every in-place change bumps it), which
/// TorchSharp does not bind, from libtorch's exported operator entry point. A packed copy of weights compares the sum of
/// the counters to know whether the weights changed since it was packed. Both entry points are resolved once
/// (<see cref="Binding"/>); where either is missing (another libtorch), <see cref="Sum"/> returns null and the packed
/// copies treat the weights as unchanged: packed once per load (and again when the model leaves eval mode or the compute
/// type or kernels change), never once per call.
/// </summary>
internal static class WeightVersions
{
    private const string VersionSymbol = "_ZN2at4_ops8_version4callERKNS_6TensorE";
    private const string IsInferenceSymbol = "_ZN2at4_ops12is_inference4callERKNS_6TensorE";

    [DllImport("libtorch_cpu", EntryPoint = VersionSymbol)]
    private static extern long Version(IntPtr tensor);

    // Inference tensors (made under inference mode, e.g. a model loaded inside one) have no version counter: asking
    // throws in C++, which would end the process. They are read as version 0: they change only in place under
    // inference mode, which no counter records.
    [DllImport("libtorch_cpu", EntryPoint = IsInferenceSymbol)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool IsInference(IntPtr tensor);

    /// <summary>The two entry points, resolved once.</summary>
    public static NativeBinding Binding { get; } = new("weight version counters", "at::_ops::_version, at::_ops::is_inference",
        "packed weights are treated as unchanged: packed once per load, not after an in-place change in eval mode", Probe);

    private static string? Probe()
    {
        using (var _ = empty(0)) { } // TorchSharp has loaded libtorch_cpu
        foreach (string name in new[] { nameof(Version), nameof(IsInference) })
        {
            try
            {
                Marshal.Prelink(typeof(WeightVersions).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                return $"{(name == nameof(Version) ? VersionSymbol : IsInferenceSymbol)} not found in libtorch_cpu";
            }
        }
        using var probe = zeros(1);
        if (IsInference(probe.Handle)) return null; // probed under inference mode: no counter to try, the symbols resolved
        long before = Version(probe.Handle);
        probe.add_(1);
        return Version(probe.Handle) == before + 1 ? null : "the version counter did not move on an in-place change";
    }

    /// <summary>The sum of the version counters of <paramref name="tensors"/>, or null when they cannot be read.</summary>
    public static long? Sum(IEnumerable<Tensor> tensors)
    {
        if (!Binding.Available) return null;
        long sum = 0;
        foreach (var t in tensors)
            if (!IsInference(t.Handle)) sum += Version(t.Handle);
        return sum;
    }
}
