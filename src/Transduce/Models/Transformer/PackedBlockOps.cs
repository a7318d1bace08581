using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// The sub-layer arithmetic the packed encoder and decoder paths share (<see cref="TransformerEncodePlan"/>,
/// <see cref="TransformerDecodePlan"/>): attention over projected heads, the FFN activation, the residual connection —
/// the modules' computation without their dropout and training checks.
/// </summary>
internal static class PackedBlockOps
{
    /// <summary>
    /// Each row's visible source length when a one-position step can attend in managed code (<see cref="AttendOne"/>):
    /// float32 CPU tensors laid out contiguously, and a CPU with the kernels' vector units; else null.
    /// </summary>
    public static int[]? OneQueryLengths(TransformerState state, long batch)
    {
        if (!RowKernels.Supported || state.SourceMask.device_type != DeviceType.CPU) return null;
        if (state.CrossKeys.Concat(state.CrossValues).Any(t => t.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || !t.is_contiguous())) return null;
        if (state.SourceLengths is { } known) return known.Length == batch ? known : null;
        using var lengths = state.SourceMask.sum([1, 2, 3], type: ScalarType.Int32);  // masks are prefixes: the valid length
        var result = lengths.data<int>().ToArray();
        return result.Length == batch ? result : null;
    }

    /// <summary>
    /// Attention of one query position per row in managed code: <paramref name="queries"/> (batch, ≥ heads · head size),
    /// row b's heads side by side in its first columns (pre-scaled); keys and values (batch, heads, positions, head size),
    /// of which row b sees the first <paramref name="lengths"/>[b]. Returns (batch, heads · head size) and, when
    /// <paramref name="weighted"/>, the weights as (batch, heads, 1, positions), zero where a row does not see.
    /// </summary>
    /// <remarks>
    /// When the stored rows are not the queries' rows, <paramref name="rowOf"/> gives each query row's stored row, or
    /// <paramref name="table"/> (rows × <paramref name="columns"/>) the stored row of each earlier position, later ones
    /// being the row's own (<see cref="RowKernels.StoredRows"/>).
    /// </remarks>
    public static unsafe Tensor AttendOne(Tensor queries, Tensor keys, Tensor values, int[] lengths, int heads, long headSize, bool weighted, out Tensor weights,
        Tensor? positionBias = null, int[]? rowOf = null, int[]? table = null, int columns = 0)
    {
        long batch = queries.shape[0], positions = keys.shape[2];
        var context = empty(batch, heads * headSize, device: queries.device);
        weights = weighted ? empty(batch, heads, 1, positions, device: queries.device) : null!;
        var q = RowKernels.Floats(queries);
        var c = RowKernels.Floats(context);
        var w = weighted ? RowKernels.Floats(weights) : default;
        if (keys.dtype != values.dtype || !keys.is_contiguous() || !values.is_contiguous())
            throw new ArgumentException("keys and values must be contiguous and of one type");
        // A position bias (1, heads, 1, keys) is shared by every row.
        using var bias = positionBias?.reshape(heads, -1).contiguous();
        var b = bias is null ? default : RowKernels.Floats(bias);
        int biasStride = bias is null ? 0 : (int)bias.shape[1];
        if (bias is not null && lengths.Any(n => n > biasStride)) throw new ArgumentException("the position bias is shorter than the keys attended to");
        if (table is not null && table.Length != batch * columns) throw new ArgumentException("the row table needs one entry per row and earlier position");
        if (rowOf is not null && rowOf.Length != batch) throw new ArgumentException("the row map needs one entry per row");
        long storedRows = keys.shape[0];
        if ((rowOf ?? table ?? []).Any(r => r < 0 || r >= storedRows) || (rowOf is null && table is null && storedRows < batch))
            throw new ArgumentException("a row map names a row the keys do not have");
        fixed (float* pq = q, pc = c, pw = w, pb = b)
        fixed (byte* pk = keys.bytes, pv = values.bytes)
        fixed (int* pr = rowOf, pt = table)
        {
            var rows = new RowKernels.StoredRows(pr, pt, columns);
            if (keys.dtype == ScalarType.BFloat16)
                RowKernels.AttendOne(pq, queries.shape[1], (ushort*)pk, (ushort*)pv, (int)batch, heads, (int)headSize, (int)positions, lengths, pc, pw, pb, biasStride, rows);
            else if (keys.dtype == ScalarType.Float32)
                RowKernels.AttendOne(pq, queries.shape[1], (float*)pk, (float*)pv, (int)batch, heads, (int)headSize, (int)positions, lengths, pc, pw, pb, biasStride, rows);
            else
                throw new ArgumentException($"keys of type {keys.dtype}: float32 or bfloat16 expected");
        }
        return context;
    }

    /// <summary>
    /// Softmax attention of pre-scaled queries (batch, heads, queries, head size) over keys and values (batch, heads, keys,
    /// head size); masked (true) keys get −∞, after <paramref name="positionBias"/> (1, heads, queries, keys) is added when given. Returns (batch·queries, heads·head size) and the weights (batch, heads, queries, keys).
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? masked, out Tensor weights, Tensor? positionBias = null)
    {
        long batch = q.shape[0], queries = q.shape[2], width = q.shape[1] * q.shape[3];
        if (k.dtype != q.dtype) (k, v) = (k.to_type(q.dtype), v.to_type(q.dtype)); // a bfloat16 key/value cache (KeyValueCache)
        var scores = q.matmul(k.transpose(-2, -1));
        if (positionBias is not null) scores.add_(positionBias);
        if (masked is not null) scores.masked_fill_(masked, float.NegativeInfinity);
        weights = scores.softmax(-1);
        var context = weights.matmul(v);                                   // (batch, heads, queries, head size)
        return queries == 1 ? context.view(batch, width) : context.transpose(1, 2).reshape(batch * queries, width);
    }

    /// <summary>Heads, head width, model width and the score scale folded into packed query weights (1/√d, or 1), from a spec.</summary>
    public static (int Heads, long HeadSize, long Hidden, double QueryScale) Geometry(TransformerSpec spec) =>
        (spec.Heads, spec.HeadSize, spec.Hidden, spec.AttentionScale);

    /// <summary>(batch·steps, 3·hidden) → query, key, value as (batch, heads, steps, head size) views.</summary>
    public static (Tensor Q, Tensor K, Tensor V) SplitQkv(Tensor qkv, long batch, long steps, int heads, long headSize)
    {
        if (steps == 1)
        {
            // One position: (batch, 3, heads, 1, head size) is the same memory, no transpose needed.
            var parts = qkv.view(batch, 3, heads, 1, headSize).unbind(1);
            return (parts[0], parts[1], parts[2]);
        }
        var all = qkv.view(batch, steps, 3, heads, headSize).permute(2, 0, 3, 1, 4).unbind(0);
        return (all[0], all[1], all[2]);
    }
}
