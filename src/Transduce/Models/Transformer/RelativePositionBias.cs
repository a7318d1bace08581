using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// Relative position buckets (Raffel et al. 2020, T5): instead of absolute positions, self-attention scores get a learned
/// bias per head for the bucket of the distance key − query. Near distances have a bucket each; farther ones share
/// logarithmically wider buckets up to <see cref="TransformerSpec.RelativeMaxDistance"/>; beyond it, the last bucket.
/// Bidirectional (the encoder) spends half the buckets on each side; causal (the decoder) only looks back. One table per
/// stack (parameter <c>weight</c>, (buckets, heads)), computed once per forward pass and shared by every block, as T5 does.
/// Cross-attention has no position bias.
/// </summary>
internal sealed class RelativePositionBias : nn.Module
{
    private readonly Parameter weight;
    private readonly int buckets, maxDistance;
    private readonly bool bidirectional;

    public RelativePositionBias(TransformerSpec spec, bool bidirectional) : base(nameof(RelativePositionBias))
    {
        buckets = spec.RelativeBuckets;
        maxDistance = spec.RelativeMaxDistance;
        this.bidirectional = bidirectional;
        weight = new Parameter(empty(buckets, spec.Heads, device: ModelConstruction.ParameterDevice));
        using (no_grad()) nn.init.normal_(weight, 0, Math.Pow(spec.Hidden, -0.5));
        RegisterComponents();
    }

    /// <summary>The table, (buckets, heads).</summary>
    public Tensor Weight => weight;

    /// <summary>
    /// The bucket of each relative distance <paramref name="relative"/> (key position − query position, int64), for a
    /// table of <paramref name="buckets"/> buckets: the same integer and float32 arithmetic as the reference, so that the
    /// boundaries fall where its do.
    /// </summary>
    public static Tensor Buckets(Tensor relative, int buckets, int maxDistance, bool bidirectional)
    {
        using var scope = NewDisposeScope();
        var result = zeros_like(relative);
        if (bidirectional)
        {
            buckets /= 2;
            result = result + relative.gt(0).to_type(ScalarType.Int64) * buckets;
            relative = relative.abs();
        }
        else
            relative = -relative.clamp_max(0);
        int maxExact = buckets / 2;
        var small = relative.lt(maxExact);
        // Distances past the exact range: logarithmic buckets up to maxDistance (log of 0 is never taken where it is used).
        var large = (relative.to_type(ScalarType.Float32) / maxExact).log() / Math.Log((double)maxDistance / maxExact) * (buckets - maxExact);
        var largeBuckets = (large.to_type(ScalarType.Int64) + maxExact).clamp_max(buckets - 1);
        return (result + where(small, relative, largeBuckets)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The bias of queries at positions <paramref name="queryStart"/> … + <paramref name="queries"/> − 1 over keys at
    /// 0 … <paramref name="keys"/> − 1, as (1, heads, queries, keys).
    /// </summary>
    public Tensor Bias(long queryStart, long queries, long keys)
    {
        using var scope = NewDisposeScope();
        var relative = arange(keys, ScalarType.Int64).unsqueeze(0) - arange(queryStart, queryStart + queries, ScalarType.Int64).unsqueeze(1);
        var values = weight.index_select(0, Buckets(relative, buckets, maxDistance, bidirectional).flatten()).view(queries, keys, -1); // (queries, keys, heads)
        return values.permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>Causal tables only: the bucket of each look-back distance 0 … <paramref name="distances"/> − 1 (for the managed row step).</summary>
    public int[] CausalBucketsByDistance(int distances)
    {
        if (bidirectional) throw new InvalidOperationException("a bidirectional table depends on the direction, not only the distance");
        using var scope = NewDisposeScope();
        var back = -arange(distances, ScalarType.Int64);
        return Buckets(back, buckets, maxDistance, bidirectional: false).to_type(ScalarType.Int32).data<int>().ToArray();
    }
}
