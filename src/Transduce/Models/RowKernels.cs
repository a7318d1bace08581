using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using Transduce.IO;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>
/// The arithmetic of one decoding position in managed SIMD, on raw float32 (and bfloat16) memory: the whole step of one
/// sentence (<see cref="Transformer.TransformerRowStep"/>), and in batched steps the new position's attention
/// (<see cref="AttendOne(float*, long, float*, float*, int, int, int, int, ReadOnlySpan{int}, float*, float*, float*, int, StoredRows)"/>) and
/// greedy's pick (<see cref="ArgMaxRows"/>). At one row a libtorch operation costs 2–4 µs of dispatch and tensor
/// bookkeeping whatever its size, and small matrix–vector products through MKL run 2–3× slower than a panel-packed loop
/// here (BENCHMARKS.md, issue 17, third pass).
/// </summary>
internal static unsafe class RowKernels
{
    /// <summary>Whether the kernels run vectorised here (x64 with AVX2 or AVX-512); elsewhere callers keep libtorch.</summary>
    public static bool Supported => Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated;

    /// <summary>y = LN(x) over <paramref name="n"/> values: (x − mean) / √(var + eps) · γ + β (biased variance, as libtorch).</summary>
    public static void LayerNorm(float* x, float* y, float* gamma, float* beta, int n, float eps)
    {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += x[i];
        float mean = (float)(sum / n);
        double squares = 0;
        for (int i = 0; i < n; i++)
        {
            double d = x[i] - mean;
            squares += d * d;
        }
        float rstd = (float)(1.0 / Math.Sqrt(squares / n + eps));
        for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
    }

    /// <summary>y = x / √(mean(x²) + eps) · γ over <paramref name="n"/> values (RMSNorm; no mean, no bias).</summary>
    public static void RmsNorm(float* x, float* y, float* gamma, int n, float eps)
    {
        double squares = 0;
        for (int i = 0; i < n; i++) squares += (double)x[i] * x[i];
        float rstd = (float)(1.0 / Math.Sqrt(squares / n + eps));
        for (int i = 0; i < n; i++) y[i] = x[i] * rstd * gamma[i];
    }

    /// <summary>Σ a[i]·b[i] over <paramref name="n"/> values.</summary>
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        var acc = Vector256<float>.Zero;
        for (; i + 8 <= n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
        float s = Vector256.Sum(acc);
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>y += p · x over <paramref name="n"/> values.</summary>
    public static void AddScaled(float* y, float* x, float p, int n)
    {
        int i = 0;
        var pv = Vector256.Create(p);
        for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(pv, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += p * x[i];
    }

    /// <summary>Softmax of <paramref name="n"/> scores in place (max subtracted first, as libtorch).</summary>
    public static void Softmax(float* s, int n)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = MathF.Max(max, s[i]);
        float sum = 0;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(max);
            var total = Vector256<float>.Zero;
            for (; j + 8 <= n; j += 8)
            {
                var e = Vector256.Exp(Vector256.Load(s + j) - m);
                e.Store(s + j);
                total += e;
            }
            sum = Vector256.Sum(total);
        }
        for (; j < n; j++) sum += s[j] = MathF.Exp(s[j] - max);
        float inverse = 1f / sum;
        for (int i = 0; i < n; i++) s[i] *= inverse;
    }

    /// <summary>
    /// Attention of one query position per batch row and head: for row b and head h, softmax over positions t &lt;
    /// <c>count[b]</c> of q_bh · k_bht (the queries pre-scaled), times the values. <paramref name="queries"/> holds row b's
    /// heads side by side at b · <paramref name="queryStride"/>; keys and values are laid out (batch, heads,
    /// <paramref name="stride"/>, head size); <paramref name="context"/> receives (batch, heads · head size), and
    /// <paramref name="weights"/>, when given, the softmax weights as (batch, heads, <paramref name="stride"/>), zero past
    /// each row's count. <paramref name="bias"/>, when given, is added to head h's scores before the softmax, from
    /// h · <paramref name="biasStride"/> on (the same for every row: relative position biases). <paramref name="rows"/>
    /// says which stored row holds each row's keys and values when they are not the row's own (see <see cref="StoredRows"/>).
    /// </summary>
    public static void AttendOne(float* queries, long queryStride, float* keys, float* values, int batch, int heads, int headSize, int stride,
        ReadOnlySpan<int> count, float* context, float* weights, float* bias = null, int biasStride = 0, StoredRows rows = default) =>
        AttendOne<Float32Rows>(queries, queryStride, keys, values, batch, heads, headSize, stride, count, context, weights, bias, biasStride, rows);

    /// <summary>
    /// <see cref="AttendOne(float*, long, float*, float*, int, int, int, int, ReadOnlySpan{int}, float*, float*, float*, int, StoredRows)"/> over
    /// keys and values stored as bfloat16 (their raw 16-bit patterns), widened to float32 as they are read.
    /// </summary>
    public static void AttendOne(float* queries, long queryStride, ushort* keys, ushort* values, int batch, int heads, int headSize, int stride,
        ReadOnlySpan<int> count, float* context, float* weights, float* bias = null, int biasStride = 0, StoredRows rows = default) =>
        AttendOne<BFloat16Rows>(queries, queryStride, keys, values, batch, heads, headSize, stride, count, context, weights, bias, biasStride, rows);

    private static void AttendOne<TRows>(float* queries, long queryStride, void* keys, void* values, int batch, int heads, int headSize, int stride,
        ReadOnlySpan<int> count, float* context, float* weights, float* bias, int biasStride, StoredRows rows) where TRows : IRows
    {
        var scores = stride <= 1024 ? stackalloc float[stride] : new float[stride];
        var offsets = stride <= 1024 ? stackalloc long[stride] : new long[stride];
        fixed (float* s = scores)
        fixed (long* at = offsets)
            for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                {
                    int n = count[b];
                    long head = (long)b * heads + h;
                    // Where each position's key and value start: consecutive in the row's own block unless a row map says
                    // which stored row holds it (beam search reorders rows without moving them, see StoredRows).
                    rows.Offsets(b, h, n, heads, stride, headSize, at);
                    float* q = queries + b * queryStride + h * headSize;
                    float* c = context + head * headSize;
                    float* headBias = bias is null ? null : bias + (long)h * biasStride;
                    if (headSize == 64 && Vector512.IsHardwareAccelerated) Head64<TRows>(q, keys, values, at, n, s, c, headBias);
                    else
                    {
                        for (int t = 0; t < n; t++) s[t] = TRows.Dot(q, keys, at[t], headSize);
                        if (headBias is not null)
                            for (int t = 0; t < n; t++) s[t] += headBias[t];
                        Softmax(s, n);
                        new Span<float>(c, headSize).Clear();
                        for (int t = 0; t < n; t++) TRows.AddScaled(c, values, at[t], s[t], headSize);
                    }
                    if (weights is not null)
                    {
                        float* w = weights + head * stride;
                        new ReadOnlySpan<float>(s, n).CopyTo(new Span<float>(w, n));
                        new Span<float>(w + n, stride - n).Clear();
                    }
                }
    }

    // One head of width 64 (Marian's and most models'): the query and the context stay in four 16-wide registers.
    private static void Head64<TRows>(float* q, void* k, void* v, long* offsets, int n, float* s, float* c, float* bias) where TRows : IRows
    {
        var q0 = Vector512.Load(q); var q1 = Vector512.Load(q + 16); var q2 = Vector512.Load(q + 32); var q3 = Vector512.Load(q + 48);
        for (int t = 0; t < n; t++)
        {
            long at = offsets[t];
            var sum = Vector512.FusedMultiplyAdd(q3, TRows.Load16(k, at + 48), Vector512.FusedMultiplyAdd(q2, TRows.Load16(k, at + 32),
                Vector512.FusedMultiplyAdd(q1, TRows.Load16(k, at + 16), q0 * TRows.Load16(k, at))));
            s[t] = Vector512.Sum(sum);
        }
        if (bias is not null)
            for (int t = 0; t < n; t++) s[t] += bias[t];
        Softmax(s, n);
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int t = 0; t < n; t++)
        {
            long at = offsets[t];
            var p = Vector512.Create(s[t]);
            c0 = Vector512.FusedMultiplyAdd(p, TRows.Load16(v, at), c0);
            c1 = Vector512.FusedMultiplyAdd(p, TRows.Load16(v, at + 16), c1);
            c2 = Vector512.FusedMultiplyAdd(p, TRows.Load16(v, at + 32), c2);
            c3 = Vector512.FusedMultiplyAdd(p, TRows.Load16(v, at + 48), c3);
        }
        c0.Store(c); c1.Store(c + 16); c2.Store(c + 32); c3.Store(c + 48);
    }

    /// <summary>
    /// Which stored row holds a decoding row's keys and values, for attention over tensors laid out (stored rows, heads,
    /// positions, head size) whose rows are not the decoding's rows. Beam search reorders and drops rows every step;
    /// instead of copying every layer's tensors, a state records where each row's data is: <paramref name="rowOf"/>[b]
    /// for all of row b's positions (cross-attention: the encoder row a beam row reads), or, per position,
    /// <paramref name="table"/>[b · <paramref name="columns"/> + t] for t &lt; <paramref name="columns"/> (self-attention:
    /// position t was written by whichever row the hypothesis occupied at step t), later positions being row b's own.
    /// The default reads row b for every position.
    /// </summary>
    internal readonly struct StoredRows(int* rowOf, int* table, int columns)
    {
        /// <summary>Element offsets of row b's positions 0 … n − 1 for head h into <paramref name="at"/>.</summary>
        public void Offsets(int b, int h, int n, int heads, int stride, int headSize, long* at)
        {
            if (table is null)
            {
                int row = rowOf is null ? b : rowOf[b];
                long first = ((long)row * heads + h) * stride * headSize;
                for (int t = 0; t < n; t++) at[t] = first + (long)t * headSize;
                return;
            }
            int* own = table + (long)b * columns;
            for (int t = 0; t < n; t++)
                at[t] = (((long)(t < columns ? own[t] : b) * heads + h) * stride + t) * headSize;
        }
    }

    // How attention reads stored keys and values: float32, or bfloat16 widened on the fly (a bfloat16 is the top half of
    // a float32, so widening is exact). Static abstract members let the JIT compile one specialised loop per format.
    private interface IRows
    {
        static abstract Vector512<float> Load16(void* rows, long at);

        static abstract float Dot(float* q, void* rows, long at, int n);

        static abstract void AddScaled(float* c, void* rows, long at, float p, int n);
    }

    private readonly struct Float32Rows : IRows
    {
        public static Vector512<float> Load16(void* rows, long at) => Vector512.Load((float*)rows + at);

        public static float Dot(float* q, void* rows, long at, int n) => RowKernels.Dot(q, (float*)rows + at, n);

        public static void AddScaled(float* c, void* rows, long at, float p, int n) => RowKernels.AddScaled(c, (float*)rows + at, p, n);
    }

    private readonly struct BFloat16Rows : IRows
    {
        public static Vector512<float> Load16(void* rows, long at) =>
            Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)rows + at).ToVector512Unsafe()), 16).AsSingle();

        public static float Dot(float* q, void* rows, long at, int n)
        {
            ushort* r = (ushort*)rows + at;
            float sum = 0;
            for (int i = 0; i < n; i++) sum += q[i] * Widen(r[i]);
            return sum;
        }

        public static void AddScaled(float* c, void* rows, long at, float p, int n)
        {
            ushort* r = (ushort*)rows + at;
            for (int i = 0; i < n; i++) c[i] += p * Widen(r[i]);
        }

        private static float Widen(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
    }

    /// <summary>
    /// Each row's index of its first largest value, as libtorch's <c>max(-1).indexes</c> gives it (a NaN counts as the
    /// largest), for a contiguous float32 CPU matrix (rows, columns); null for any other tensor. libtorch's reduction
    /// takes 431 µs for 32 × 58,101 logits here; two vector passes over each row take a fraction of it.
    /// </summary>
    public static long[]? ArgMaxRows(Tensor scores)
    {
        if (!Vector256.IsHardwareAccelerated || scores.dim() != 2 || scores.dtype != ScalarType.Float32 || scores.device_type != DeviceType.CPU
            || !scores.is_contiguous() || scores.shape[1] == 0)
            return null;
        int rows = (int)scores.shape[0], columns = (int)scores.shape[1];
        var picks = new long[rows];
        var all = Floats(scores);
        fixed (float* p = all)
            for (int r = 0; r < rows; r++) picks[r] = ArgMax(p + (long)r * columns, columns);
        return picks;
    }

    private static int ArgMax(float* x, int n)
    {
        // Pass 1: the maximum, or the first NaN. Pass 2: the first position holding the maximum.
        int i = 0;
        float max = float.NegativeInfinity;
        if (n >= 8)
        {
            var best = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(x + i);
                if (!Vector256.EqualsAll(v, v)) return FirstNaN(x, n);
                best = Vector256.Max(best, v);
            }
            for (int j = 0; j < 8; j++) max = MathF.Max(max, best.GetElement(j));
        }
        for (; i < n; i++)
        {
            if (float.IsNaN(x[i])) return FirstNaN(x, n);
            max = MathF.Max(max, x[i]);
        }
        int k = 0;
        var target = Vector256.Create(max);
        for (; k + 8 <= n; k += 8)
        {
            uint hits = Vector256.Equals(Vector256.Load(x + k), target).ExtractMostSignificantBits();
            if (hits != 0) return k + System.Numerics.BitOperations.TrailingZeroCount(hits);
        }
        for (; k < n; k++)
            if (x[k] == max) return k;
        return 0;
    }

    private static int FirstNaN(float* x, int n)
    {
        for (int i = 0; i < n; i++)
            if (float.IsNaN(x[i])) return i;
        return 0;
    }

    /// <summary>The address of a contiguous float32 CPU tensor's first element (the tensor must outlive its use).</summary>
    public static float* Pointer(Tensor t)
    {
        if (t.dtype != ScalarType.Float32 || !t.is_contiguous() || t.device_type != DeviceType.CPU)
            throw new ArgumentException("a contiguous float32 CPU tensor is required", nameof(t));
        using var storage = t.storage<float>();
        return (float*)storage.data_ptr() + t.storage_offset();
    }

    /// <summary>The bfloat16 nearest to <paramref name="value"/> (ties to even, NaN kept), as its raw 16 bits: libtorch's rounding.</summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return 0x7FC0;
        bits += 0x7FFF + ((bits >> 16) & 1);
        return (ushort)(bits >> 16);
    }

    /// <summary><paramref name="value"/> rounded to the nearest bfloat16 (ties to even), as a float32.</summary>
    public static float RoundToBFloat16(float value) => BitConverter.UInt32BitsToSingle((uint)ToBFloat16(value) << 16);

    /// <summary>The memory of a contiguous float32 CPU tensor (valid while the tensor lives).</summary>
    public static Span<float> Floats(Tensor t)
    {
        if (t.dtype != ScalarType.Float32 || !t.is_contiguous() || t.device_type != DeviceType.CPU)
            throw new ArgumentException("a contiguous float32 CPU tensor is required", nameof(t));
        return MemoryMarshal.Cast<byte, float>(t.bytes);
    }

    /// <summary>Copies a float32 tensor's values into a new array.</summary>
    public static float[] Copy(Tensor t)
    {
        using var c = t.detach().to_type(ScalarType.Float32).contiguous().cpu();
        return c.data<float>().ToArray();
    }
}

/// <summary>A linear layer applied to one row in managed memory: y = x Wᵀ + b (+ a residual), as the row step needs it.</summary>
internal unsafe interface IRowProduct : IDisposable
{
    /// <summary>Output width.</summary>
    int Out { get; }

    /// <summary>The length an output buffer needs (at least <see cref="Out"/>).</summary>
    int PaddedOut { get; }

    /// <summary>y = x Wᵀ + b for one row <paramref name="x"/>, plus <paramref name="residual"/> when given (not null).</summary>
    void Forward(float* x, float* y, float* residual);
}

/// <summary>
/// A linear layer (or several that read the same input, concatenated along their outputs) packed for one-row float32
/// products in managed SIMD: the transposed weight cut into panels of 128 outputs, each panel's (in × 128) block
/// contiguous, so that a product streams the weights once, in order, with 128 running sums in registers. The panels are
/// a copy (native memory, 64-byte aligned): as many bytes as the float32 weights.
/// </summary>
internal sealed unsafe class RowLinear : IRowProduct
{
    /// <summary>Outputs per panel.</summary>
    public const int Panel = 128;

    private float* panels;   // float32: [panel][in][Panel]
    private ushort* halves;  // bfloat16 (raw 16-bit patterns): [panel][in][Panel]
    private float* bias;     // [PaddedOut], zeros without a bias

    /// <summary>Input width.</summary>
    public int In { get; }

    /// <summary>Output width.</summary>
    public int Out { get; }

    /// <summary>Output width rounded up to whole panels: the length an output buffer needs.</summary>
    public int PaddedOut { get; }

    /// <summary>Whether the weights are stored in bfloat16 (see <see cref="Pack"/>).</summary>
    public bool BFloat16 => halves is not null;

    /// <summary>Bytes of native memory held.</summary>
    public long Bytes => (long)PaddedOut * In * (BFloat16 ? sizeof(ushort) : sizeof(float)) + PaddedOut * sizeof(float);

    /// <summary>
    /// Whether panels run here: they keep a panel's 128 sums in eight AVX-512 registers (and widen bfloat16 weights 32 at
    /// a time). Elsewhere the row step multiplies through <see cref="PackedLinear"/>.
    /// </summary>
    public static bool Supported => Vector512.IsHardwareAccelerated;

    /// <summary>
    /// Packs layers that read the same input, as <see cref="PackedLinear.Pack"/> does (same order and scales). With
    /// <paramref name="bfloat16"/> the weights and bias are rounded to bfloat16 and so are each product's input and output,
    /// as oneDNN's bfloat16 inner product computes (float32 sums in between): the same numbers as
    /// <see cref="PackedLinear"/> in <see cref="ComputeType.BFloat16"/>, up to the order of the sums. Mapped sources leave
    /// memory again after packing, as <see cref="PackedLinear.Pack"/> lets them (<paramref name="stillRead"/>: the same).
    /// </summary>
    public static RowLinear Pack(IReadOnlyList<(Tensor Weight, Tensor? Bias)> parts, IReadOnlyList<double>? scales = null, bool bfloat16 = false,
        bool stillRead = false)
    {
        if (!Supported) throw new PlatformNotSupportedException("panels need AVX-512");
        RowLinear result;
        using (var scope = NewDisposeScope())
        {
            foreach (var (weight, _) in parts) MappedFile.ReadWhole(weight);
            var (w, b) = PackedLinear.Concatenate(parts, scales);
            // Read in place (no managed copy: for an output layer that would be another 119 MB at OPUS-MT size).
            var dense = w.contiguous();
            result = new RowLinear(RowKernels.Pointer(dense), b is null ? null : RowKernels.Copy(b), (int)w.shape[0], (int)w.shape[1], bfloat16);
        }
        foreach (var (weight, _) in parts) MappedFile.Evict(weight, stillRead); // the panels serve now: a mapped original may leave memory
        return result;
    }

    private RowLinear(float* weight, float[]? bias, int outFeatures, int inFeatures, bool bfloat16)
    {
        Out = outFeatures;
        In = inFeatures;
        PaddedOut = (outFeatures + Panel - 1) / Panel * Panel;
        long entries = (long)PaddedOut * In;
        if (bfloat16) halves = (ushort*)NativeMemory.AlignedAlloc((nuint)(entries * sizeof(ushort)), 64);
        else panels = (float*)NativeMemory.AlignedAlloc((nuint)(entries * sizeof(float)), 64);
        this.bias = (float*)NativeMemory.AlignedAlloc((nuint)(PaddedOut * sizeof(float)), 64);
        for (int p = 0; p < PaddedOut / Panel; p++)
            for (int i = 0; i < In; i++)
            {
                long at = ((long)p * In + i) * Panel;
                for (int j = 0; j < Panel; j++)
                {
                    int o = p * Panel + j;
                    float value = o < Out ? weight[(long)o * In + i] : 0f;
                    if (bfloat16) halves[at + j] = RowKernels.ToBFloat16(value);
                    else panels[at + j] = value;
                }
            }
        for (int o = 0; o < PaddedOut; o++)
        {
            float value = bias is not null && o < Out ? bias[o] : 0f;
            this.bias[o] = bfloat16 ? RowKernels.RoundToBFloat16(value) : value;
        }
    }

    /// <summary>
    /// y = x Wᵀ + b for one row <paramref name="x"/> (<see cref="In"/> values) into <paramref name="y"/>
    /// (<see cref="PaddedOut"/> values; those past <see cref="Out"/> are zero), plus <paramref name="residual"/> when given.
    /// </summary>
    public void Forward(float* x, float* y, float* residual) => Forward(x, y, residual, 0, PaddedOut / Panel);

    /// <summary>As <see cref="Forward(float*, float*, float*)"/> for the panels <paramref name="first"/> … <paramref name="end"/> − 1 only.</summary>
    public void Forward(float* x, float* y, float* residual, int first, int end)
    {
        ObjectDisposedException.ThrowIf(panels is null && halves is null, this);
        if (halves is not null)
        {
            // The input rounded to bfloat16 as oneDNN rounds it; sums in float32; the output rounded back to bfloat16.
            var rounded = In <= 4096 ? stackalloc float[In] : new float[In];
            for (int i = 0; i < In; i++) rounded[i] = RowKernels.RoundToBFloat16(x[i]);
            fixed (float* xr = rounded)
                for (int p = first; p < end; p++) Panel512BFloat16(xr, halves + (long)p * In * Panel, bias + p * Panel, y + p * Panel);
            for (int o = first * Panel; o < end * Panel; o++) y[o] = RowKernels.RoundToBFloat16(y[o]);
        }
        else
        {
            for (int p = first; p < end; p++) Panel512(x, panels + (long)p * In * Panel, bias + p * Panel, y + p * Panel);
        }
        if (residual is not null)
            for (int o = first * Panel; o < Math.Min(end * Panel, Out); o++) y[o] += residual[o];
    }

    private void Panel512BFloat16(float* x, ushort* w, float* b, float* y)
    {
        // As Panel512, the 128 weights of each input widened from bfloat16 (exact: a bfloat16 is a float32's top half).
        var a0 = Vector512.Load(b); var a1 = Vector512.Load(b + 16); var a2 = Vector512.Load(b + 32); var a3 = Vector512.Load(b + 48);
        var a4 = Vector512.Load(b + 64); var a5 = Vector512.Load(b + 80); var a6 = Vector512.Load(b + 96); var a7 = Vector512.Load(b + 112);
        for (int i = 0; i < In; i++, w += Panel)
        {
            var xi = Vector512.Create(x[i]);
            var h0 = Vector512.Load(w); var h1 = Vector512.Load(w + 32); var h2 = Vector512.Load(w + 64); var h3 = Vector512.Load(w + 96);
            a0 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenLower(h0)), a0);
            a1 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenUpper(h0)), a1);
            a2 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenLower(h1)), a2);
            a3 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenUpper(h1)), a3);
            a4 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenLower(h2)), a4);
            a5 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenUpper(h2)), a5);
            a6 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenLower(h3)), a6);
            a7 = Vector512.FusedMultiplyAdd(xi, Widen(Vector512.WidenUpper(h3)), a7);
        }
        a0.Store(y); a1.Store(y + 16); a2.Store(y + 32); a3.Store(y + 48);
        a4.Store(y + 64); a5.Store(y + 80); a6.Store(y + 96); a7.Store(y + 112);
    }

    private static Vector512<float> Widen(Vector512<uint> bits) => Vector512.ShiftLeft(bits, 16).AsSingle();

    private void Panel512(float* x, float* w, float* b, float* y)
    {
        // Eight 16-wide running sums hold the panel's 128 outputs; each input value scales one 512-byte weight row.
        var a0 = Vector512.Load(b); var a1 = Vector512.Load(b + 16); var a2 = Vector512.Load(b + 32); var a3 = Vector512.Load(b + 48);
        var a4 = Vector512.Load(b + 64); var a5 = Vector512.Load(b + 80); var a6 = Vector512.Load(b + 96); var a7 = Vector512.Load(b + 112);
        for (int i = 0; i < In; i++, w += Panel)
        {
            var xi = Vector512.Create(x[i]);
            a0 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w), a0);
            a1 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 48), a3);
            a4 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 64), a4);
            a5 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 80), a5);
            a6 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 96), a6);
            a7 = Vector512.FusedMultiplyAdd(xi, Vector512.Load(w + 112), a7);
        }
        a0.Store(y); a1.Store(y + 16); a2.Store(y + 32); a3.Store(y + 48);
        a4.Store(y + 64); a5.Store(y + 80); a6.Store(y + 96); a7.Store(y + 112);
    }

    /// <summary>Frees the panels.</summary>
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the panels if the owner never disposed this copy.</summary>
    ~RowLinear() => Free();

    private void Free()
    {
        NativeMemory.AlignedFree(panels);
        NativeMemory.AlignedFree(halves);
        NativeMemory.AlignedFree(bias);
        panels = null;
        halves = null;
        bias = null;
    }
}
