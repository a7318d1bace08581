using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Native;

/// <summary>
/// libtorch's FBGEMM int8 linear kernels, which TorchSharp does not bind, reached through a TorchScript compilation unit
/// compiled once from source. (libtorch marks them deprecated and logs that once per process; they are what its own
/// dynamically quantized LSTM used, and they run on VNNI.) <see cref="Binding"/> resolves the three kernels' C++ symbols,
/// and compiles the unit; where either fails (a libtorch that dropped the deprecated
/// operators, or one built without FBGEMM) int8 layers are packed as float32 ones instead.
/// </summary>
internal static class Int8Kernels
{
    private const string Script = """
        def quantize(w: Tensor):
            q, offsets, scale, zero = torch.fbgemm_linear_quantize_weight(w)
            packed = torch.fbgemm_pack_quantized_matrix(q)
            return q, packed, offsets, torch.full([1], scale, dtype=7), torch.full([1], zero, dtype=4)  # float64, int64

        def linear(x: Tensor, q: Tensor, packed: Tensor, offsets: Tensor, scale: float, zero: int, b: Tensor):
            return torch.fbgemm_linear_int8_weight_fp32_activation(x, q, packed, offsets, scale, zero, b)
        """;

    private static jit.CompilationUnit? unit;

    /// <summary>The three operators, resolved and compiled once.</summary>
    public static NativeBinding Binding { get; } = new("FBGEMM int8 products", "fbgemm_linear_quantize_weight, fbgemm_pack_quantized_matrix, fbgemm_linear_int8_weight_fp32_activation",
        "int8 layers are packed and multiplied as float32", Load);

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at6native29fbgemm_linear_quantize_weightERKNS_6TensorE")]
    private static extern void QuantizeWeight();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at6native28fbgemm_pack_quantized_matrixERKNS_6TensorE")]
    private static extern void PackQuantizedMatrix();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at6native41fbgemm_linear_int8_weight_fp32_activationERKNS_6TensorES3_S3_S3_RKN3c106ScalarES7_S3_")]
    private static extern void LinearInt8();

    /// <summary>Whether the kernels were found and compiled.</summary>
    public static bool Available => Binding.Available;

    private static string? Load()
    {
        using (var _ = empty(0)) { } // TorchSharp has loaded libtorch_cpu
        foreach (string name in new[] { nameof(QuantizeWeight), nameof(PackQuantizedMatrix), nameof(LinearInt8) })
        {
            try
            {
                Marshal.Prelink(typeof(Int8Kernels).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                return $"libtorch_cpu has no {name switch { nameof(QuantizeWeight) => "fbgemm_linear_quantize_weight", nameof(PackQuantizedMatrix) => "fbgemm_pack_quantized_matrix", _ => "fbgemm_linear_int8_weight_fp32_activation" }}";
            }
        }
        // Compiling resolves the three operators by schema (an unknown one fails here, with an exception). The kernels are
        // not called on a probe: libtorch logs their deprecation at the first call, which should be a real int8 decoding.
        unit = jit.compile(Script + "\n");
        return null;
    }

    /// <summary>Quantizes (out, in) float32 weights with one scale and zero point, and packs them for FBGEMM.</summary>
    public static (Tensor Weight, Tensor Packed, Tensor ColumnOffsets, double Scale, long ZeroPoint) Quantize(Tensor w)
    {
        var (q, packed, offsets, scale, zero) = unit!.invoke<(Tensor, Tensor, Tensor, Tensor, Tensor)>("quantize", w.contiguous());
        using (scale)
        using (zero)
            return (q, packed, offsets, scale.item<double>(), zero.item<long>());
    }

    /// <summary>x (rows, in) float32 times the quantized weights, plus <paramref name="bias"/>; float32 (rows, out).</summary>
    public static Tensor Linear(Tensor x, Tensor q, Tensor packed, Tensor offsets, double scale, long zeroPoint, Tensor bias) =>
        (Tensor)unit!.invoke("linear", x, q, packed, offsets, scale, zeroPoint, bias);
}
