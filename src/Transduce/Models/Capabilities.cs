using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Transduce.Native;
using NativeMemory = Transduce.Native.NativeMemory;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>One line of <see cref="Capabilities.Report"/>: a CPU feature, a version, or a kernel and whether it serves.</summary>
/// <param name="Name">What the line is about (<c>cpu Avx512F</c>, <c>libtorch</c>, <c>oneDNN inner product</c>, …).</param>
/// <param name="Status">
/// For features: <c>yes</c> or <c>no</c>; for versions and threads: the value; for kernels: <c>in use</c>, <c>off</c>
/// (switched off by the <see cref="DecodingKernels"/> asked about) or <c>fallback</c> (not available here).
/// </param>
/// <param name="Detail">The reason, and for a fallback what runs instead.</param>
public sealed record Capability(string Name, string Status, string Detail)
{
    /// <summary>The line as <c>transduce doctor</c> prints it.</summary>
    public override string ToString() => Detail.Length == 0 ? $"{Name,-26} {Status}" : $"{Name,-26} {Status,-9} {Detail}";
}

/// <summary>
/// What this process can run: the CPU features .NET sees, the TorchSharp and libtorch versions, libtorch's threads, and
/// each native binding and managed kernel of decoding with whether it is in use or which fallback serves, and why.
/// <c>transduce doctor</c> prints it, as do <c>serve</c> at start and <c>translate --verbose</c>.
/// </summary>
public static class Capabilities
{
    /// <summary>
    /// The report for decoding with <paramref name="kernels"/> (null: <see cref="DecodingKernels.Auto"/>). Probes every
    /// native binding (once per process): a binding found missing also prints its one warning.
    /// </summary>
    public static IReadOnlyList<Capability> Report(DecodingKernels? kernels = null)
    {
        kernels ??= DecodingKernels.Auto;
        static string YesNo(bool b) => b ? "yes" : "no";
        var lines = new List<Capability>
        {
            new(".NET", RuntimeInformation.FrameworkDescription, $"{RuntimeInformation.OSDescription}, {RuntimeInformation.ProcessArchitecture}"),
            new("cpu Avx2", YesNo(Avx2.IsSupported), ""),
            new("cpu Avx512F", YesNo(Avx512F.IsSupported), Avx512F.IsSupported ? "" : AvxNote()),
            new("cpu Avx512BW", YesNo(Avx512BW.IsSupported), ""),
            new("cpu AvxVnni", YesNo(AvxVnni.IsSupported), ""),
            new("cpu avx512_bf16", CpuFlag("avx512_bf16"), "from /proc/cpuinfo (.NET has no Avx512Bf16 class; oneDNN's bfloat16 kernels use it)"),
            new("cpu AdvSimd", YesNo(AdvSimd.IsSupported), ""),
            new("Vector512 accelerated", YesNo(Vector512.IsHardwareAccelerated), ""),
            new("Vector256 accelerated", YesNo(Vector256.IsHardwareAccelerated), ""),
            new("TorchSharp", typeof(TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
                ?? typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString() ?? "?", ""),
            new("libtorch", LibtorchVersion(), ""),
            new("threads", $"{get_num_threads()}", $"libtorch intra-op threads; {get_num_interop_threads()} inter-op; {Environment.ProcessorCount} logical processors"),
        };

        string packedStatus = kernels.Packed ? "in use" : "off";
        lines.Add(new("packed decoding", packedStatus, kernels.Packed
            ? "eval-mode encoder and decoder over packed linear layers"
            : "switched off (modules): the modules' forward passes decode, in float32"));
        lines.Add(Binding(OneDnnKernels.Binding, kernels.Packed && kernels.OneDnn, !kernels.Packed ? "packed decoding is off" : "switched off (no-onednn): addmm (MKL) and linear serve",
            "float32 and bfloat16 products over weights reordered once"));
        lines.Add(Binding(Int8Kernels.Binding, kernels.Packed, "packed decoding is off", "int8 products (compute type int8)"));
        bool rowStep = kernels.Packed && kernels.RowStep;
        lines.Add(new("managed row step", !rowStep ? "off" : RowKernels.Supported ? "in use" : "fallback",
            !kernels.Packed ? "packed decoding is off"
            : !kernels.RowStep ? "switched off (no-row-step): one-sentence steps run through libtorch"
            : RowKernels.Supported ? $"one-sentence Transformer steps in managed SIMD ({(Vector512.IsHardwareAccelerated ? "512" : "256")}-bit vectors)"
            : "no 256- or 512-bit vectors: one-sentence steps run through libtorch"));
        lines.Add(new("managed panels", !rowStep ? "off" : RowLinear.Supported ? "in use" : "fallback",
            !rowStep ? "the row step is off"
            : RowLinear.Supported ? $"the row step's products: float32 decoder and output layers up to {Transformer.TransformerRowStep.MaxFloat32PanelBytes >> 20} MB, " +
                $"bfloat16 decoder layers up to {Transformer.TransformerRowStep.MaxBlockBytes >> 20} MB; split over {get_num_threads()} thread(s)"
            : "Vector512 not accelerated (AVX-512 absent or disabled): the row step multiplies through the packed layers"));
        lines.Add(Binding(WeightVersions.Binding, true, "", "packed weights are packed again after an in-place change"));
        lines.Add(Binding(Autocast.Binding, true, "", "bfloat16 mixed-precision training (--precision bf16)"));
        lines.Add(new(NativeMemory.Binding.Name,
            !NativeMemory.Binding.Available ? "fallback" : NativeMemory.Kept ? "in use" : "off",
            !NativeMemory.Binding.Available ? $"{NativeMemory.Binding.Reason}: {NativeMemory.Binding.Fallback}"
            : NativeMemory.Kept ? "freed native memory is kept for reuse (process-wide)"
            : "opt-in (TranslationOptions.KeepFreedMemory; the command line opts in)"));
        return lines;
    }

    private static Capability Binding(NativeBinding binding, bool wanted, string offReason, string use) =>
        !wanted ? new(binding.Name, "off", offReason)
        : binding.Available ? new(binding.Name, "in use", $"{use} ({binding.Symbols})")
        : new(binding.Name, "fallback", $"{binding.Reason} ({binding.Symbols}): {binding.Fallback}");

    private static string AvxNote() =>
        Environment.GetEnvironmentVariable("DOTNET_EnableAVX512") == "0" ? "DOTNET_EnableAVX512=0 hides it from .NET" : "";

    private static string CpuFlag(string flag)
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return "unknown";
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("flags", StringComparison.Ordinal))
                    return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(flag) ? "yes" : "no";
            return "unknown";
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static string LibtorchVersion()
    {
        try
        {
            return __version__;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            return $"not loaded ({e.Message})";
        }
    }
}
