using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>The masks and masked softmax of d2l §11.1–11.3, shared by every attention block.</summary>
internal static class AttentionMasks
{
    /// <summary>
    /// A key mask from valid lengths: <c>true</c> where key j &lt; valid length of the row.
    /// Shape (batch, 1, 1, keys), broadcastable over heads and queries.
    /// </summary>
    public static Tensor FromValidLengths(Tensor validLengths, long keys)
    {
        using var positions = arange(keys, ScalarType.Int64, validLengths.device);
        using var lengths = validLengths.to(ScalarType.Int64).reshape(-1, 1, 1, 1);
        return positions.reshape(1, 1, 1, keys).lt(lengths);
    }

    /// <summary>
    /// The causal mask of a decoder: query i (at absolute position <paramref name="offset"/> + i) sees keys 0 … offset + i.
    /// Shape (1, 1, queries, offset + queries).
    /// </summary>
    public static Tensor Causal(long queries, long offset, Device? device = null)
    {
        long keys = offset + queries;
        using var q = arange(offset, keys, ScalarType.Int64, device).reshape(queries, 1);
        using var k = arange(keys, ScalarType.Int64, device).reshape(1, keys);
        using var mask = k.le(q);
        return mask.reshape(1, 1, queries, keys);
    }

    /// <summary>
    /// Masked softmax over the last axis (d2l §11.3): masked-out positions get exactly zero weight.
    /// </summary>
    /// <param name="scores">(…, queries, keys).</param>
    /// <param name="mask">Broadcastable boolean mask, <c>true</c> = keep; null for none.</param>
    /// <remarks>Scores in a reduced precision (bf16 matmuls under autocast) are normalised in float32 and the weights returned in float32.</remarks>
    public static Tensor MaskedSoftmax(Tensor scores, Tensor? mask)
    {
        // Reduced-precision scores (from bf16 matmuls) are normalised in float32: small weights keep their accuracy.
        var type = scores.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : scores.dtype;
        if (mask is null) return nn.functional.softmax(scores, -1, type);
        // -inf gives exp(…) = 0 exactly; every row keeps at least one key (<eos>, or itself under the causal mask).
        using var filled = scores.masked_fill(mask.logical_not(), float.NegativeInfinity);
        return nn.functional.softmax(filled, -1, type);
    }
}
