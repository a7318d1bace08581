using TorchSharp;
using Transduce.IO;
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
    internal sealed record Block(nn.Module<Tensor, Tensor> Norm1, nn.Module<Tensor, Tensor> Norm2, nn.Module<Tensor, Tensor> Norm3, PackedLinear SelfQkv, PackedLinear SelfOut,
        PackedLinear CrossQuery, PackedLinear CrossKeyValue, PackedLinear CrossOut, PackedLinear Ffn1, PackedLinear Ffn2) : IDisposable
    {
        /// <summary>The norm of a sub-layer.</summary>
        public nn.Module<Tensor, Tensor> Norm(SubLayer sub) => sub switch { SubLayer.Self => Norm1, SubLayer.Cross => Norm2, _ => Norm3 };

        /// <summary>The output product of a sub-layer.</summary>
        public PackedLinear Output(SubLayer sub) => sub switch { SubLayer.Self => SelfOut, SubLayer.Cross => CrossOut, _ => Ffn2 };

        public void Dispose()
        {
            foreach (var p in new[] { SelfQkv, SelfOut, CrossQuery, CrossKeyValue, CrossOut, Ffn1, Ffn2 }) p.Dispose();
        }
    }

    private readonly Block[] blocks;
    private readonly PackedLinear output;
    private readonly TransformerSpec spec;
    private readonly int heads;
    private readonly long hidden, headSize;
    private readonly FeedForwardKind feedForward;
    private readonly nn.Module<Tensor, Tensor>? finalNorm;

    public TransformerDecodePlan(ComputeType type, TransformerDecoder decoder, long version)
    {
        var spec = decoder.Spec;
        ComputeType = type;
        Version = version;
        this.spec = spec;
        feedForward = spec.FeedForward;
        finalNorm = decoder.FinalNorm;
        (heads, headSize, hidden, double queryScale) = PackedBlockOps.Geometry(spec);
        blocks = decoder.Blocks.Select(m =>
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
                PackedLinear.Pack(type, m.Ffn.FirstParts),
                PackedLinear.Pack(type, [m.Ffn.Second]));
        }).ToArray();
        // The output scale (T5's d^−½ before a tied projection) is folded into the weights, not into the bias. A weight tied
        // to the embedding is still read, a row per token: it stays in memory, or past MappedFile.StillReadResidentBytes
        // leaves and comes back a row at a time (NLLB-200, random tokens: 0.8 s more per batch of 32 with the kernel's
        // read-ahead around each row; BENCHMARKS.md, issue 28).
        output = PackedLinear.Pack(type, [OutputProjection(decoder)], stillRead: TiedToEmbedding(decoder));
    }

    /// <summary>The output projection's weight, multiplied by the spec's output scale, and its bias: what the packed paths multiply by.</summary>
    internal static (Tensor Weight, Tensor? Bias) OutputProjection(TransformerDecoder decoder)
    {
        var dense = decoder.Output;
        double scale = decoder.Spec.OutputScale;
        return (scale == 1.0 ? dense.weight! : dense.weight!.detach().mul(scale), dense.bias);
    }

    /// <summary>Whether the output layer multiplies by the target embedding's own weight (tied, with no output scale).</summary>
    internal static bool TiedToEmbedding(TransformerDecoder decoder) =>
        decoder.Spec.OutputScale == 1.0 && MappedFile.Address(decoder.Output.weight!) == MappedFile.Address(decoder.Embedding.weight!);

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
    /// <remarks>
    /// A state whose rows were selected lazily (<see cref="TransformerState.MemoryRows"/>, <see cref="TransformerState.PositionRows"/>)
    /// is read through its maps; its keys and values then have no per-layer views (null), and the next state's row table is returned.
    /// </remarks>
    public (Tensor Logits, Tensor?[] Keys, Tensor?[] Values, Tensor[] CrossAttention, KeyValueCache Cache, int[]? PositionRows) Forward(Tensor x,
        TransformerState state, Tensor? causal, Tensor? positionBias = null)
    {
        long batch = x.shape[0], steps = x.shape[1];
        using var causalMasked = causal?.logical_not();
        // One new position attends in managed code (RowKernels.AttendOne): through libtorch each head's scores and
        // context are a one-row product, which MKL runs on its slow generic path here (1.6 ms of a 8.4 ms bfloat16 step
        // at OPUS-MT size, batch 32).
        var attendOne = steps == 1 ? PackedBlockOps.OneQueryLengths(state, batch) : null;
        // (batch, 1, 1, source), true = padding: only libtorch's attention reads it; the managed one knows each row's length.
        using var sourceMasked = attendOne is null ? state.SourceMask.logical_not() : null;
        if (attendOne is null && state.Remapped) throw new InvalidOperationException("lazily selected rows must be made dense before this step");
        var cache = KeyValueCache.For(state, batch, steps, heads, headSize, CacheType);
        // Writing in place into lazily reordered buffers: earlier positions are where the table says.
        var table = ReferenceEquals(cache, state.Cache) ? state.PositionRows : null;
        var backend = new Batched
        {
            Plan = this, State = state, Batch = batch, Steps = steps, Table = table,
            Cache = cache,
            Keys = new Tensor[blocks.Length], Values = new Tensor[blocks.Length], CrossWeights = new Tensor[blocks.Length],
            SourceMasked = sourceMasked, CausalMasked = causalMasked, AttendOne = attendOne, PositionBias = positionBias,
            SelfLengths = attendOne is null ? null : Enumerable.Repeat((int)state.Steps + 1, (int)batch).ToArray(),
        };
        var h = TransformerStep.Decoder<Batched, Tensor>(ref backend, spec, x.reshape(batch * steps, hidden));
        var logits = output.Forward(h);
        StepPhases.Mark(StepPhase.OutputProjection);
        int[]? nextTable = null;
        if (table is not null)
        {
            // Each row's earlier positions where they were; the one just written in its own row.
            int before = (int)state.Steps, after = before + 1;
            nextTable = new int[batch * after];
            for (int b = 0; b < batch; b++)
            {
                Array.Copy(table, b * before, nextTable, b * after, before);
                nextTable[b * after + before] = b;
            }
        }
        return (logits.view(batch, steps, output.OutFeatures), backend.Keys, backend.Values, backend.CrossWeights, backend.Cache, nextTable);
    }

    /// <summary>
    /// The step's operations on a batch of rows through the packed layers (<see cref="IStepBackend{TValue}"/> over
    /// (rows, width) tensors, in the caller's dispose scope): the new positions' keys and values are written into the
    /// cache, attention runs in libtorch, or for one new position in managed code.
    /// </summary>
    private struct Batched : IStepBackend<Tensor>
    {
        public TransformerDecodePlan Plan;
        public TransformerState State;
        public KeyValueCache Cache;
        public long Batch, Steps;
        public Tensor?[] Keys, Values;
        public Tensor[] CrossWeights;
        public int[]? Table;
        public Tensor? SourceMasked;
        public Tensor? CausalMasked, PositionBias;
        public int[]? AttendOne, SelfLengths;

        public readonly Tensor Norm(int layer, SubLayer sub, Tensor x) => Plan.blocks[layer].Norm(sub).call(x);

        public Tensor Inner(int layer, SubLayer sub, Tensor x)
        {
            var b = Plan.blocks[layer];
            int heads = Plan.heads;
            long headSize = Plan.headSize;
            switch (sub)
            {
                case SubLayer.Self:
                    // Over the cache and the new positions.
                    var qkv = b.SelfQkv.Forward(x);
                    StepPhases.Mark(StepPhase.SelfQkv);
                    var (q, k, v) = PackedBlockOps.SplitQkv(qkv, Batch, Steps, heads, headSize);
                    (k, v) = Cache.Append(layer, k, v, State.Steps);
                    // Views of the buffers are the rows' keys and values unless a row table says where they are.
                    Keys[layer] = Table is null && Cache.Keys[0].shape[0] == Batch ? k : null;
                    Values[layer] = Table is null && Cache.Keys[0].shape[0] == Batch ? v : null;
                    return AttendOne is null
                        ? PackedBlockOps.Attend(q, k, v, CausalMasked, out _, PositionBias)
                        : PackedBlockOps.AttendOne(qkv, Cache.Keys[layer], Cache.Values[layer], SelfLengths!, heads, headSize, weighted: false, out _, PositionBias,
                            table: Table, columns: (int)State.Steps);
                case SubLayer.Cross:
                    // Over the encoder output; the weights are kept (attention maps come from the decoding itself).
                    var query = b.CrossQuery.Forward(x);
                    StepPhases.Mark(StepPhase.CrossQuery);
                    return AttendOne is null
                        ? PackedBlockOps.Attend(Plan.SplitHeads(query, Batch, Steps), State.CrossKeys[layer], State.CrossValues[layer], SourceMasked, out CrossWeights[layer])
                        : PackedBlockOps.AttendOne(query, State.CrossKeys[layer], State.CrossValues[layer], AttendOne, heads, headSize, weighted: true, out CrossWeights[layer],
                            rowOf: State.MemoryRows);
                default:
                    var first = b.Ffn1.Forward(x);
                    StepPhases.Mark(StepPhase.Ffn1);
                    return Plan.feedForward.Hidden(first);
            }
        }

        public readonly Tensor Project(int layer, SubLayer sub, Tensor inner, Tensor residual) =>
            Plan.blocks[layer].Output(sub).Forward(inner).add_(residual);

        public readonly Tensor FinalNorm(Tensor x) => Plan.finalNorm!.call(x);
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
