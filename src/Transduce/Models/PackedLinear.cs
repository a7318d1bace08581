using TorchSharp;
using Transduce.IO;
using Transduce.Native;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>
/// An inference-only copy of one linear layer — or of several that read the same input, concatenated along their
/// outputs (a fused query/key/value projection) — laid out for decoding in a <see cref="ComputeType"/>:
/// <list type="bullet">
/// <item><b>float32</b>: the weight reordered once for oneDNN's inner product (<see cref="OneDnnKernels"/>), which is 2–4×
/// faster than libtorch's MKL products on this project's AMD CPU from two rows up, and at one row for layers larger
/// than 256 × 1,024. Small layers also keep the weight transposed to (in, out) for one-row products, where
/// <c>addmm</c> wins: oneDNN's ≈ 12 µs per call costs more than the product. (libtorch's own <c>linear</c> at one row runs MKL's transposed
/// matrix–vector kernel, 2–2.5× slower than <c>addmm</c> with the transposed copy.) Without oneDNN every product is
/// that <c>addmm</c>.</item>
/// <item><b>bfloat16</b>: the weight rounded to bfloat16 and reordered once for oneDNN's inner product (AVX-512 BF16 here;
/// libtorch's <c>linear</c> would reorder it on every call: 2.4–4× slower at one row); inputs rounded on the way in,
/// outputs back to float32.</item>
/// <item><b>int8</b>: each output row scaled to [−1, 1] and quantized (per-channel symmetric scales, so a row with small
/// weights keeps its precision), products in FBGEMM's int8 kernels with the input quantized on the fly, then the rows
/// scaled back. libtorch's <c>fbgemm_linear_int8_weight_fp32_activation</c> is reached through a TorchScript function
/// compiled from source (<see cref="torch.jit.compile"/>): TorchSharp has no binding for it.</item>
/// </list>
/// Without oneDNN (<see cref="DecodingKernels.OneDnn"/> off, or not in this libtorch) float32 products are
/// <c>addmm</c> and bfloat16 ones libtorch's <c>linear</c>; without FBGEMM (<see cref="Int8Kernels.Binding"/>) an int8
/// layer is packed as a float32 one.
/// The source weights are copied: after they change, pack again. The copy costs memory (float32: one more copy of
/// each packed weight; bfloat16 half; int8 a quarter); a source that is a view of a mapped weights file is handed back to
/// the kernel after packing (<see cref="MappedFile.Evict"/>), so it stops counting.
/// </summary>
internal sealed class PackedLinear : IDisposable
{
    private readonly ComputeType type;
    private readonly Tensor? weight;         // float32: (in, out) when small or without oneDNN; bfloat16: (out, in) without oneDNN; int8: quantized (out, in)
    private readonly Tensor? oneDnn;         // float32/bfloat16: oneDNN's reordered (out, in)
    private readonly Tensor? bias;           // float32/bfloat16: (out); int8: bias / row scale
    private readonly Tensor? packed, columnOffsets, rowScales; // int8 only
    private readonly double int8Scale;
    private readonly long int8ZeroPoint;

    /// <summary>Input width.</summary>
    public long InFeatures { get; }

    /// <summary>Output width (the sum of the parts' outputs).</summary>
    public long OutFeatures { get; }

    /// <summary>
    /// Packs the layers <paramref name="parts"/> (weights (out_i, in), optional biases (out_i)) as one layer of
    /// Σ out_i outputs in the order given. <paramref name="scales"/>, when given, multiplies each part's weight and bias
    /// (the attention's 1/√d folded into the query projection). <paramref name="kernels"/> (null: those of the plan being
    /// packed, <see cref="PlanCache.Packing"/>) says whether oneDNN may serve. A source weight that is a view of a mapped
    /// file leaves memory after packing (<see cref="MappedFile.Evict"/>), except, with <paramref name="stillRead"/>, a weight
    /// something else still reads a few rows at a time (a tied output layer is also the embedding table), which
    /// <see cref="MappedFile.Evict"/> keeps up to its bound and otherwise lets come back a row at a time.
    /// </summary>
    public static PackedLinear Pack(ComputeType type, IReadOnlyList<(Tensor Weight, Tensor? Bias)> parts, IReadOnlyList<double>? scales = null,
        DecodingKernels? kernels = null, bool stillRead = false)
    {
        using var scope = NewDisposeScope();
        foreach (var (weight, _) in parts) MappedFile.ReadWhole(weight); // read ahead again if an earlier packing advised otherwise
        var (w, b) = Concatenate(parts, scales);
        bool oneDnn = (kernels ?? PlanCache.Packing).OneDnn && OneDnnKernels.Available;
        if (type == ComputeType.Int8 && !Int8Kernels.Available) type = ComputeType.Float32;
        var result = new PackedLinear(type, w, b, oneDnn);
        result.Detach();
        foreach (var (weight, _) in parts) MappedFile.Evict(weight, stillRead); // the packed copy serves now: a mapped original may leave memory
        return result;
    }

    /// <summary>
    /// The float32 weight (Σ out_i, in) and bias (Σ out_i, or null) of <paramref name="parts"/> concatenated in order,
    /// each part multiplied by its scale when <paramref name="scales"/> is given; detached copies in the caller's scope.
    /// </summary>
    internal static (Tensor Weight, Tensor? Bias) Concatenate(IReadOnlyList<(Tensor Weight, Tensor? Bias)> parts, IReadOnlyList<double>? scales)
    {
        if (parts.Count == 0) throw new ArgumentException("nothing to pack", nameof(parts));
        bool hasBias = parts[0].Bias is not null;
        if (parts.Any(p => (p.Bias is not null) != hasBias)) throw new ArgumentException("either every part has a bias or none", nameof(parts));
        using var grad = no_grad();
        var weights = parts.Select((p, i) => scales is null || scales[i] == 1.0 ? p.Weight.detach() : p.Weight.detach().mul(scales[i])).ToArray();
        var w = weights.Length == 1 ? weights[0] : cat(weights, 0);
        Tensor? b = null;
        if (hasBias)
        {
            var biases = parts.Select((p, i) => scales is null || scales[i] == 1.0 ? p.Bias!.detach() : p.Bias!.detach().mul(scales[i])).ToArray();
            b = biases.Length == 1 ? biases[0] : cat(biases, 0);
        }
        return (w.to_type(ScalarType.Float32), b?.to_type(ScalarType.Float32));
    }

    private PackedLinear(ComputeType type, Tensor w, Tensor? b, bool useOneDnn)
    {
        this.type = type;
        OutFeatures = w.shape[0];
        InFeatures = w.shape[1];
        switch (type)
        {
            case ComputeType.Float32:
                bias = b?.contiguous();
                if (useOneDnn) oneDnn = OneDnnKernels.Pack(w);
                if (oneDnn is null || InFeatures * OutFeatures <= SmallProduct) weight = w.t().contiguous();
                break;
            case ComputeType.BFloat16:
                bias = b?.to_type(ScalarType.BFloat16);
                using (var rounded = w.to_type(ScalarType.BFloat16).contiguous())
                {
                    if (useOneDnn) oneDnn = OneDnnKernels.Pack(rounded);
                    else weight = rounded.alias();
                }
                break;
            case ComputeType.Int8:
                // Per-channel: row r is divided by its largest |w| so every row spans [−1, 1]; FBGEMM then quantizes the
                // whole matrix with one scale, which is now as fine for a row of small weights as for one of large weights.
                // Temporaries go as soon as they are used: for a 256k-row output layer each is a gigabyte.
                Tensor rowMax;
                using (var magnitude = w.abs())
                    rowMax = magnitude.amax([1], keepdim: true).clamp_min_(1e-12);
                (Tensor Weight, Tensor Packed, Tensor ColumnOffsets, double Scale, long ZeroPoint) q;
                using (var normalised = w / rowMax)
                    q = Int8Kernels.Quantize(normalised);
                // FBGEMM's product reads only the shape of the unpacked int8 matrix (its values live on in the packed
                // one): a stand-in of that shape, on one byte, halves what an int8 model keeps.
                q.Weight.Dispose();
                weight = zeros([1, 1], ScalarType.Int8).expand(OutFeatures, InFeatures);
                packed = q.Packed;
                columnOffsets = q.ColumnOffsets;
                int8Scale = q.Scale;
                int8ZeroPoint = q.ZeroPoint;
                rowScales = rowMax.reshape(OutFeatures);
                bias = b is null ? zeros(OutFeatures) : b / rowScales;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unknown compute type");
        }
    }

    // At most this many multiply-adds (rows × in × out), addmm with the transposed weight beats oneDNN's call overhead
    // (BENCHMARKS.md, issue 17: 1 × 256 → 1,024 10–12 µs against 15–17; 1 × 512 → 1,536 39 against 29).
    private const long SmallProduct = 256 * 1024;

    private Tensor?[] Owned => [weight, oneDnn, bias, packed, columnOffsets, rowScales];

    private void Detach()
    {
        foreach (var t in Owned)
            t?.DetachFromDisposeScope(); // long-lived: owned by this object, not by the caller's scope
    }

    /// <summary>Whether the products run oneDNN's inner product (for some or all row counts).</summary>
    public bool UsesOneDnn => oneDnn is not null;

    /// <summary>The number type of the products.</summary>
    public ComputeType ComputeType => type;

    /// <summary>y = x Wᵀ + b for <paramref name="x"/> of shape (rows, in); returns (rows, out), float32.</summary>
    public Tensor Forward(Tensor x)
    {
        switch (type)
        {
            case ComputeType.Float32:
                long rows = x.shape[0];
                if (rows == 0) return zeros(0, OutFeatures, device: x.device);
                if (oneDnn is not null && (weight is null || rows * InFeatures * OutFeatures > SmallProduct))
                    return OneDnnKernels.Linear(x.is_contiguous() ? x : x.contiguous(), oneDnn, bias);
                return bias is null ? x.mm(weight!) : addmm(bias, x, weight!, 1, 1);
            case ComputeType.BFloat16:
            {
                if (x.shape[0] == 0) return zeros(0, OutFeatures, device: x.device);
                using var xb = x.to_type(ScalarType.BFloat16);
                using var y = oneDnn is not null ? OneDnnKernels.Linear(xb, oneDnn, bias) : nn.functional.linear(xb, weight!, bias);
                return y.to_type(ScalarType.Float32);
            }
            default:
            {
                var y = Int8Kernels.Linear(x, weight!, packed!, columnOffsets!, int8Scale, int8ZeroPoint, bias!);
                return y.mul_(rowScales!);
            }
        }
    }

    /// <summary>Bytes held by the packed copy.</summary>
    public long Bytes => Owned.Where(t => !(type == ComputeType.Int8 && ReferenceEquals(t, weight))) // int8: a one-byte stand-in
        .Sum(t => t is null ? 0 : t.NumberOfElements * t.ElementSize);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in Owned) t?.Dispose();
    }
}
