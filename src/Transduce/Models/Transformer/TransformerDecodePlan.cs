using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// The eval-mode decoding path of <see cref="TransformerDecoder"/>: the same network as the modules compute, with its
/// linear layers packed once (<see cref="PackedLinear"/>: transposed float32, bfloat16 or int8) and fewer native calls per
/// step — the self-attention's query, key and value projections are one product, 1/√d is folded into the query weights,
/// a single new position reshapes heads with views only, and nothing checks <c>training</c> or builds a mask it does not
/// need. Built lazily on the first eval-mode call; rebuilt when the weights change (their version counters, see
/// <see cref="Native.WeightVersions"/>) or when the model leaves eval mode.
/// </summary>
internal sealed class TransformerDecodePlan : IPackedPlan
{
    /// <summary>One decoder block's packed layers (and its modules' layer norms).</summary>
    internal sealed record Block(LayerNorm Norm1, LayerNorm Norm2, LayerNorm Norm3, PackedLinear SelfQkv, PackedLinear SelfOut,
        PackedLinear CrossQuery, PackedLinear CrossKeyValue, PackedLinear CrossOut, PackedLinear Ffn1, PackedLinear Ffn2) : IDisposable
    {
        public void Dispose()
        {
            foreach (var p in new[] { SelfQkv, SelfOut, CrossQuery, CrossKeyValue, CrossOut, Ffn1, Ffn2 }) p.Dispose();
        }
    }

    private readonly Block[] blocks;
    private readonly PackedLinear output;
    private readonly bool preNorm;
    private readonly int heads;
    private readonly long hidden, headSize;
    private readonly string activation;

    public TransformerDecodePlan(ComputeType type, IReadOnlyList<TransformerDecoderBlock> modules, Linear dense, bool preNorm, string activation, long version)
    {
        ComputeType = type;
        Version = version;
        this.preNorm = preNorm;
        this.activation = activation;
        (heads, headSize, hidden, double queryScale) = PackedBlockOps.Geometry(modules[0].SelfAttention);
        blocks = modules.Select(m =>
        {
            var s = m.SelfAttention;
            var c = m.CrossAttention;
            return new Block(m.Norm1, m.Norm2, m.Norm3,
                PackedLinear.Pack(type, [s.Query, s.Key, s.Value], [queryScale, 1, 1]),
                PackedLinear.Pack(type, [s.Output]),
                PackedLinear.Pack(type, [c.Query], [queryScale]),
                // Cross-attention keys/values: once per sentence over the whole source, in the same type as the rest.
                PackedLinear.Pack(type, [c.Key, c.Value]),
                PackedLinear.Pack(type, [c.Output]),
                PackedLinear.Pack(type, [m.Ffn.First]),
                PackedLinear.Pack(type, [m.Ffn.Second]));
        }).ToArray();
        output = PackedLinear.Pack(type, [(dense.weight!, dense.bias)]);
    }

    private TransformerRowStep? rowStep;
    private bool rowStepTried;
    private readonly bool rowStepAllowed = PlanCache.Packing.RowStep;

    /// <summary>The packed output layer.</summary>
    public PackedLinear Output => output;

    /// <summary>The packed blocks, in order.</summary>
    public IReadOnlyList<Block> Blocks => blocks;

    /// <summary>
    /// The managed one-row step for the same weights (made by <paramref name="create"/> on first use, null where it does
    /// not apply or <see cref="DecodingKernels.RowStep"/> is off), released with the plan.
    /// </summary>
    public TransformerRowStep? RowStep(Func<TransformerRowStep?> create)
    {
        lock (blocks)
        {
            if (!rowStepTried)
            {
                rowStepTried = true;
                if (rowStepAllowed) rowStep = create();
            }
            return rowStep;
        }
    }

    /// <summary>
    /// The element type of cached keys and values: bfloat16 for a bfloat16 plan, whose products round their outputs to
    /// bfloat16 anyway (exact, and half the bytes for attention to read), else float32.
    /// </summary>
    public ScalarType CacheType => ComputeType == ComputeType.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;

    private Tensor Stored(Tensor t)
    {
        using var dense = t.contiguous();
        return CacheType == ScalarType.Float32 ? dense.alias() : dense.to_type(CacheType);
    }

    /// <summary>The number type the plan multiplies in.</summary>
    public ComputeType ComputeType { get; }

    /// <summary>The sum of the decoder weights' version counters when the plan was packed.</summary>
    public long Version { get; }

    /// <summary>Bytes of packed weights.</summary>
    public long Bytes => blocks.Sum(b => new[] { b.SelfQkv, b.SelfOut, b.CrossQuery, b.CrossKeyValue, b.CrossOut, b.Ffn1, b.Ffn2 }.Sum(p => p.Bytes)) + output.Bytes;

    /// <summary>Each block's cross-attention keys and values of <paramref name="memory"/> (batch, source, hidden), as (batch, heads, source, head size).</summary>
    public (Tensor[] Keys, Tensor[] Values) CrossKeyValues(Tensor memory)
    {
        long batch = memory.shape[0], steps = memory.shape[1];
        var keys = new Tensor[blocks.Length];
        var values = new Tensor[blocks.Length];
        using var flat = memory.reshape(batch * steps, hidden);
        for (int i = 0; i < blocks.Length; i++)
        {
            using var kv = blocks[i].CrossKeyValue.Forward(flat);
            using var split = kv.view(batch, steps, 2, heads, headSize);
            using var perm = split.permute(2, 0, 3, 1, 4);        // (2, batch, heads, steps, head size)
            keys[i] = Stored(perm[0]);
            values[i] = Stored(perm[1]);
        }
        return (keys, values);
    }

    /// <summary>
    /// One decoder call on <paramref name="x"/>, the embedded and position-encoded target (batch, steps, hidden);
    /// returns the logits, each block's self-attention keys and values so far (views of the cache's buffers), each block's
    /// cross-attention weights (batch, heads, steps, source), which the softmax computes anyway, and the cache written.
    /// </summary>
    public (Tensor Logits, Tensor[] Keys, Tensor[] Values, Tensor[] CrossAttention, KeyValueCache Cache) Forward(Tensor x, TransformerState state,
        Tensor? causal, LayerNorm? finalNorm)
    {
        long batch = x.shape[0], steps = x.shape[1];
        var cache = KeyValueCache.For(state, batch, steps, heads, headSize, CacheType);
        var keys = new Tensor[blocks.Length];
        var values = new Tensor[blocks.Length];
        var crossWeights = new Tensor[blocks.Length];
        var h = x.reshape(batch * steps, hidden);
        using var sourceMasked = state.SourceMask.logical_not();          // (batch, 1, 1, source): true = padding
        using var causalMasked = causal?.logical_not();
        // One new position attends in managed code (RowKernels.AttendOne): through libtorch each head's scores and
        // context are a one-row product, which MKL runs on its slow generic path here (1.6 ms of a 8.4 ms bfloat16 step
        // at OPUS-MT size, batch 32).
        var attendOne = steps == 1 ? PackedBlockOps.OneQueryLengths(state, batch) : null;
        var selfLengths = attendOne is null ? null : Enumerable.Repeat((int)state.Steps + 1, (int)batch).ToArray();
        for (int i = 0; i < blocks.Length; i++)
        {
            var b = blocks[i];
            // Self-attention over the cache and the new positions.
            var normed = preNorm ? b.Norm1.call(h) : h;
            var qkv = b.SelfQkv.Forward(normed);
            var (q, k, v) = PackedBlockOps.SplitQkv(qkv, batch, steps, heads, headSize);
            (k, v) = cache.Append(i, k, v, state.Steps);
            keys[i] = k;
            values[i] = v;
            var selfContext = attendOne is null
                ? PackedBlockOps.Attend(q, k, v, causalMasked, out _)
                : PackedBlockOps.AttendOne(qkv, cache.Keys[i], cache.Values[i], selfLengths!, heads, headSize, weighted: false, out _);
            h = PackedBlockOps.Residual(h, b.SelfOut.Forward(selfContext), b.Norm1, preNorm);
            // Cross-attention over the encoder output.
            normed = preNorm ? b.Norm2.call(h) : h;
            var crossQuery = b.CrossQuery.Forward(normed);
            var crossContext = attendOne is null
                ? PackedBlockOps.Attend(SplitHeads(crossQuery, batch, steps), state.CrossKeys[i], state.CrossValues[i], sourceMasked, out crossWeights[i])
                : PackedBlockOps.AttendOne(crossQuery, state.CrossKeys[i], state.CrossValues[i], attendOne, heads, headSize, weighted: true, out crossWeights[i]);
            h = PackedBlockOps.Residual(h, b.CrossOut.Forward(crossContext), b.Norm2, preNorm);
            // Feed-forward.
            normed = preNorm ? b.Norm3.call(h) : h;
            var inner = PackedBlockOps.Activate(b.Ffn1.Forward(normed), activation);
            h = PackedBlockOps.Residual(h, b.Ffn2.Forward(inner), b.Norm3, preNorm);
        }
        if (finalNorm is not null) h = finalNorm.call(h);
        var logits = output.Forward(h);
        return (logits.view(batch, steps, output.OutFeatures), keys, values, crossWeights, cache);
    }

    private Tensor SplitHeads(Tensor x, long batch, long steps) =>
        steps == 1 ? x.view(batch, heads, 1, headSize) : x.view(batch, steps, heads, headSize).transpose(1, 2);

    public void Dispose()
    {
        foreach (var b in blocks) b.Dispose();
        output.Dispose();
        rowStep?.Dispose();
    }
}
