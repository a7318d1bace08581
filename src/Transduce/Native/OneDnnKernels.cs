using System.IO.Compression;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Native;

/// <summary>
/// oneDNN's float32 inner product over a weight reordered once into oneDNN's own blocked layout
/// (libtorch's <c>mkldnn::_reorder_linear_weight</c> and <c>mkldnn::_linear_pointwise</c>, the kernels PyTorch's
/// compiler uses on CPU). libtorch's <c>linear</c>/<c>addmm</c> run MKL, which takes a generic path on this project's
/// AMD CPU: 114 GFLOP/s for the GRU's 32 × 256 → 17,644 output layer where oneDNN's AVX-512 kernel reaches 463
/// (BENCHMARKS.md, issue 17). Without the one-time reorder oneDNN would reorder the weight on every call and lose
/// its advantage, which is why a dense weight is not simply handed to libtorch's <c>mkldnn_linear</c>.
/// <para>
/// TorchSharp binds neither operator, and TorchScript compiled from source (<see cref="jit.compile"/>) resolves only
/// <c>aten</c>; a TorchScript archive resolves every registered namespace. So this class writes a four-file archive
/// (code, an empty module's pickle, no constants) in memory and loads it with TorchSharp's <c>jit.load</c>.
/// </para>
/// <see cref="Models.DecodingKernels.OneDnn"/> set to false decodes with MKL's products instead, which is also the
/// fallback where these operators are missing (<see cref="Binding"/>: see <c>LinearPointwise</c>).
/// </summary>
internal static class OneDnnKernels
{
    // TorchScript's serialized form of a module with three methods: what torch.jit.save writes, written by hand.
    private const string Code = """
        class Kernels(Module):
          __parameters__ = []
          __buffers__ = []
          training : bool
          def pack(self: __torch__.Kernels,
            w: Tensor) -> Tensor:
            return ops.mkldnn._reorder_linear_weight(w, None)
          def linear(self: __torch__.Kernels,
            x: Tensor,
            w: Tensor,
            b: Tensor) -> Tensor:
            return ops.mkldnn._linear_pointwise(x, w, b, "none", annotate(List[Optional[number]], []), "")
          def linear_no_bias(self: __torch__.Kernels,
            x: Tensor,
            w: Tensor) -> Tensor:
            return ops.mkldnn._linear_pointwise(x, w, None, "none", annotate(List[Optional[number]], []), "")

        """;

    private static jit.ScriptModule? module;

    /// <summary>The two operators, resolved and tried once (the archive loads only where both are present).</summary>
    public static NativeBinding Binding { get; } = new("oneDNN inner product", "mkldnn::_linear_pointwise, mkldnn::_reorder_linear_weight",
        "float32 products run libtorch's addmm (MKL) and bfloat16 products its linear", Load);

    // libtorch's implementation of mkldnn::_linear_pointwise, by its Itanium-mangled name, which spells out the signature
    // this archive calls. A TorchScript archive naming an operator libtorch lacks (a build without oneDNN, another
    // schema) does not fail with an exception: libtorch terminates the process. So the archive is loaded only where this
    // symbol exists: libtorch_cpu for Linux built with oneDNN, with this signature. Never called, only resolved.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at6native23mkldnn_linear_pointwiseERKNS_6TensorES3_RKSt8optionalIS1_ESt17basic_string_viewIcSt11char_traitsIcEEN3c104ListIS4_INSC_6ScalarEEEES4_ISB_E")]
    private static extern void LinearPointwise();

    // mkldnn::_reorder_linear_weight has no exported symbol of its own (its kernel is file-local); it is registered in
    // MKLDNNConversions.cpp, whose exported neighbour this is. Never called, only resolved.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at6native28mkldnn_reorder_conv2d_weightERKNS_6TensorEN3c108ArrayRefIlEES6_S6_lNS4_16OptionalArrayRefIlEE")]
    private static extern void ReorderConversions();

    private static string? MissingOperator()
    {
        foreach (string name in new[] { nameof(LinearPointwise), nameof(ReorderConversions) })
        {
            try
            {
                Marshal.Prelink(typeof(OneDnnKernels).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                return name == nameof(LinearPointwise)
                    ? "libtorch_cpu has no at::native::mkldnn_linear_pointwise with the expected signature"
                    : "libtorch_cpu has no oneDNN weight conversions (mkldnn::_reorder_linear_weight)";
            }
        }
        return null;
    }

    /// <summary>Whether the kernels loaded (libtorch built with oneDNN with these operators).</summary>
    public static bool Available => Binding.Available;

    /// <summary>The float32 weight (out, in) reordered into oneDNN's blocked layout (an opaque oneDNN tensor).</summary>
    public static Tensor Pack(Tensor weight) =>
        (Tensor)module!.invoke("pack", weight.contiguous());

    /// <summary>x (rows ≥ 1, in) float32, contiguous, times the packed weight, plus <paramref name="bias"/>: (rows, out).</summary>
    public static Tensor Linear(Tensor x, Tensor packed, Tensor? bias) =>
        bias is null
            ? (Tensor)module!.invoke("linear_no_bias", x, packed)
            : (Tensor)module!.invoke("linear", x, packed, bias);

    private static string? Load()
    {
        using (var _ = empty(0)) { } // TorchSharp has loaded libtorch_cpu
        if (MissingOperator() is { } missing) return missing;
        var loaded = jit.load(Archive());
        loaded.eval();
        using var probe = ones(1, 2);
        using var weight = ones(3, 2);
        using var packed = (Tensor)loaded.invoke("pack", weight);
        using var y = (Tensor)loaded.invoke("linear_no_bias", probe, packed);
        if (!y.shape.SequenceEqual([1L, 3L]) || y[0, 0].item<float>() != 2f)
        {
            loaded.Dispose();
            return "the oneDNN inner product gave a wrong result on its probe";
        }
        module = loaded;
        return null;
    }

    /// <summary>The archive torch.jit.save would write for <see cref="Code"/>: stored (uncompressed) zip entries.</summary>
    private static byte[] Archive()
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            void Add(string name, byte[] content)
            {
                var entry = zip.CreateEntry("transduce_kernels/" + name, CompressionLevel.NoCompression);
                using var stream = entry.Open();
                stream.Write(content);
            }
            Add("version", "3\n"u8.ToArray());
            Add("code/__torch__.py", Encoding.UTF8.GetBytes(Code.ReplaceLineEndings("\n")));
            Add("constants.pkl", [0x80, 0x02, (byte)')', (byte)'.']); // pickle protocol 2: an empty tuple
            Add("data.pkl", ModulePickle());
        }
        return buffer.ToArray();
    }

    /// <summary>Pickle (protocol 2) of a <c>__torch__.Kernels</c> object whose only state is <c>training = False</c>.</summary>
    private static byte[] ModulePickle()
    {
        var bytes = new List<byte> { 0x80, 0x02 };                        // PROTO 2
        bytes.Add((byte)'c');                                              // GLOBAL module\nname\n
        bytes.AddRange(Encoding.ASCII.GetBytes("__torch__\nKernels\n"));
        bytes.Add((byte)')');                                              // EMPTY_TUPLE
        bytes.Add(0x81);                                                   // NEWOBJ
        bytes.Add((byte)'}');                                              // EMPTY_DICT
        bytes.Add((byte)'X');                                              // BINUNICODE "training"
        bytes.AddRange([8, 0, 0, 0]);                                      //   its length, little-endian
        bytes.AddRange(Encoding.ASCII.GetBytes("training"));
        bytes.Add(0x89);                                                   // NEWFALSE
        bytes.Add((byte)'s');                                              // SETITEM
        bytes.Add((byte)'b');                                              // BUILD
        bytes.Add((byte)'.');                                              // STOP
        return bytes.ToArray();
    }
}
