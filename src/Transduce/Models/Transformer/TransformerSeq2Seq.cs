using TorchSharp;
using TorchSharp.Modules;
using Transduce.Architecture;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// Position-wise feed-forward network (d2l §11.7.2): Linear → activation → Linear, or for a gated
/// <see cref="FeedForwardKind"/> W₂·(f(W₁x) ⊙ Vx) with V as <c>up</c>.
/// </summary>
internal sealed class PositionWiseFfn : nn.Module<Tensor, Tensor>
{
    private readonly Linear dense1, dense2;
    private readonly Linear? up;
    private readonly FeedForwardKind kind;

    internal (Tensor Weight, Tensor? Bias) First => (dense1.weight!, dense1.bias);
    internal (Tensor Weight, Tensor? Bias)? Up => up is null ? null : (up.weight!, up.bias);
    internal (Tensor Weight, Tensor? Bias) Second => (dense2.weight!, dense2.bias);

    /// <summary>The first product's parts: W₁, and V after it for a gated kind (their outputs side by side).</summary>
    internal IReadOnlyList<(Tensor Weight, Tensor? Bias)> FirstParts => Up is { } v ? [First, v] : [First];

    public PositionWiseFfn(TransformerSpec spec) : base(nameof(PositionWiseFfn))
    {
        kind = spec.FeedForward;
        dense1 = ModelConstruction.Linear(spec.Hidden, spec.FfnSize, hasBias: spec.FeedForwardBias);
        if (kind.IsGated()) up = ModelConstruction.Linear(spec.Hidden, spec.FfnSize, hasBias: spec.FeedForwardBias);
        dense2 = ModelConstruction.Linear(spec.FfnSize, spec.Hidden, hasBias: spec.FeedForwardBias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = kind.Function().Apply(dense1.call(x), inPlace: false);
        if (up is not null) h = h.mul(up.call(x));
        return dense2.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A residual connection around a sub-layer with layer normalisation (d2l §11.7.2's AddNorm). Post-norm
/// (the paper's and the book's): LN(x + dropout(f(x))). Pre-norm: x + dropout(f(LN(x))), which trains more
/// stably without warm-up tricks and needs one final LN after the stack.
/// </summary>
internal sealed class Residual : nn.Module<Tensor, Func<Tensor, Tensor>, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly PackedDropout dropout;
    private readonly bool preNorm;

    internal nn.Module<Tensor, Tensor> Norm => norm;

    public Residual(TransformerSpec spec) : base(nameof(Residual))
    {
        norm = Norms.Create(spec);
        dropout = new PackedDropout(spec.Dropout);
        preNorm = spec.PreNorm;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Func<Tensor, Tensor> sublayer)
    {
        // Dropout is skipped outright in eval mode: at decoding time every op saved is a native call saved per step.
        if (preNorm)
        {
            using var normed = norm.call(x);
            using var y = sublayer(normed);
            if (!training) return x + y;
            using var dropped = dropout.call(y);
            return x + dropped;
        }
        using (var y = sublayer(x))
        using (var dropped = training ? dropout.call(y) : y.alias())
        using (var sum = x + dropped)
            return norm.call(sum);
    }
}

/// <summary>One Transformer encoder block: self-attention and FFN, each wrapped in <see cref="Residual"/>.</summary>
internal sealed class TransformerEncoderBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly MultiHeadAttention attention;
    private readonly Residual addNorm1, addNorm2;
    private readonly PositionWiseFfn ffn;

    internal MultiHeadAttention Attention => attention;
    internal nn.Module<Tensor, Tensor> Norm1 => addNorm1.Norm;
    internal nn.Module<Tensor, Tensor> Norm2 => addNorm2.Norm;
    internal PositionWiseFfn Ffn => ffn;

    public TransformerEncoderBlock(TransformerSpec spec) : base(nameof(TransformerEncoderBlock))
    {
        attention = new MultiHeadAttention(spec);
        addNorm1 = new Residual(spec);
        ffn = new PositionWiseFfn(spec);
        addNorm2 = new Residual(spec);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor mask) => Forward(x, mask, null);

    /// <summary>The block, with <paramref name="positionBias"/> (1, heads, steps, steps) added to the attention scores when given.</summary>
    public Tensor Forward(Tensor x, Tensor mask, Tensor? positionBias)
    {
        using var y = addNorm1.call(x, h => attention.Forward(h, h, h, mask, positionBias));
        return addNorm2.call(y, h => ffn.call(h));
    }
}

/// <summary>
/// The input stage of either stack, as a <see cref="TransformerSpec"/> says: embedding × scale + positions, the embedding
/// norm where the model has one, dropout while training. (The modules stay fields of the encoder and decoder, so that
/// parameter names do not change.)
/// </summary>
internal static class TransformerEmbedding
{
    /// <summary>Embeds <paramref name="tokens"/> (batch, steps) at positions <paramref name="start"/> onwards.</summary>
    public static Tensor Embed(Embedding embedding, double scale, PositionalEncoding positions, nn.Module<Tensor, Tensor>? norm,
        PackedDropout dropout, Tensor tokens, long start)
    {
        using var scope = NewDisposeScope();
        var x = positions.call(embedding.call(tokens).mul_(scale), start);
        if (norm is not null) x = norm.call(x);
        // Dropout is skipped outright in eval mode: at decoding time every op saved is a native call saved per step.
        if (dropout.training) x = dropout.call(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Transformer encoder (d2l §11.7.4): embeddings and positions, then a stack of blocks.</summary>
internal sealed class TransformerEncoder : PackedEncoder, IReducedPrecisionModule
{
    private readonly Embedding embedding;
    private readonly PositionalEncoding positions;
    private readonly nn.Module<Tensor, Tensor>? embeddingNorm;
    private readonly PackedDropout dropout;
    private readonly RelativePositionBias? relativeBias;
    private readonly ModuleList<TransformerEncoderBlock> blocks;
    private readonly nn.Module<Tensor, Tensor>? finalNorm;
    private readonly TransformerSpec spec;

    /// <summary>The number type of the blocks' linear layers in eval mode (float32 by default); training runs the modules in float32.</summary>
    public ComputeType ComputeType
    {
        get => PackedType;
        set => PackedType = value;
    }

    /// <summary>Creates the encoder; <paramref name="embedding"/> may be shared with the decoder.</summary>
    public TransformerEncoder(TransformerSpec spec, Embedding embedding) : base(nameof(TransformerEncoder))
    {
        this.spec = spec;
        this.embedding = embedding;
        positions = new PositionalEncoding(spec);
        embeddingNorm = spec.EmbeddingNorm ? Norms.Create(spec) : null;
        dropout = new PackedDropout(spec.Dropout);
        if (spec.Positions == PositionKind.RelativeBuckets) relativeBias = new RelativePositionBias(spec, bidirectional: true);
        blocks = nn.ModuleList(Enumerable.Range(0, spec.EncoderLayers).Select(_ => new TransformerEncoderBlock(spec)).ToArray());
        finalNorm = spec.FinalEncoderNorm ? Norms.Create(spec) : null;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override EncoderOutput forward(Tensor source, Tensor validLengths)
    {
        using var scope = NewDisposeScope();
        var mask = AttentionMasks.FromValidLengths(validLengths, source.shape[1]);
        var x = TransformerEmbedding.Embed(embedding, spec.EmbeddingScale, positions, embeddingNorm, dropout, source, 0);
        // In eval mode without gradients the blocks run over packed weights (the same computation); otherwise the modules.
        // Relative position biases: computed once, shared by every block.
        var bias = relativeBias?.Bias(0, source.shape[1], source.shape[1]);
        if (Plan((type, version) => new TransformerEncodePlan(type, blocks.ToList(), finalNorm, spec, version)) is { } plan)
            x = plan.Forward(x, mask, bias); // the blocks and the final norm
        else
        {
            foreach (var block in blocks) x = block.Forward(x, mask, bias);
            if (finalNorm is not null) x = finalNorm.call(x);
        }
        return new EncoderOutput(x.MoveToOuterDisposeScope(), null);
    }
}

/// <summary>
/// Incremental state of <see cref="TransformerDecoder"/>: the source key mask, each layer's projected
/// cross-attention keys/values of the encoder output (computed once), each layer's projected self-attention
/// keys/values of the target prefix so far (grown by one step per call), and how many target positions
/// have been consumed.
/// </summary>
internal sealed record TransformerState(Tensor SourceMask, Tensor[] CrossKeys, Tensor[] CrossValues, Tensor?[] SelfKeys, Tensor?[] SelfValues, long Steps)
    : ICrossAttentionState
{
    /// <inheritdoc />
    public IEnumerable<Tensor> Tensors =>
        new[] { SourceMask }.Concat(CrossKeys).Concat(CrossValues).Concat(SelfKeys.OfType<Tensor>()).Concat(SelfValues.OfType<Tensor>())
            .Concat(Cache?.Tensors ?? []);

    /// <inheritdoc />
    public IReadOnlyList<Tensor> CrossAttention { get; init; } = [];

    /// <summary>
    /// The buffers behind the self-attention keys and values when a packed step wrote them (batched or managed), else
    /// null. The batched path also hands out views of them as <see cref="SelfKeys"/> and <see cref="SelfValues"/>; the
    /// managed row step, which creates no tensors per step, leaves those null (<see cref="PastKeys"/> makes the views).
    /// </summary>
    internal KeyValueCache? Cache { get; init; }

    /// <summary>Whether the step that made this state ran in managed code (<see cref="TransformerRowStep"/>).</summary>
    internal bool ManagedStep { get; init; }

    /// <summary>Each row's source length (the keys cross-attention sees), when known: carried so that steps need not count the mask.</summary>
    internal int[]? SourceLengths { get; init; }

    /// <summary>
    /// For each row, the row of <see cref="SourceMask"/>, <see cref="CrossKeys"/> and <see cref="CrossValues"/> it reads, when
    /// rows were selected without copying those (beam search: a sentence's beams all read its one encoder row); null: row b
    /// reads row b.
    /// </summary>
    internal int[]? MemoryRows { get; init; }

    /// <summary>
    /// When rows were reordered without moving the cache (<see cref="TransformerDecoder.SelectRows"/>), (rows × <see cref="Steps"/>):
    /// the <see cref="Cache"/> row that holds row b's position t, at [b · Steps + t]; null: row b's positions are in the
    /// cache's row b.
    /// </summary>
    internal int[]? PositionRows { get; init; }

    /// <summary>The rows being decoded.</summary>
    internal long Rows => MemoryRows?.Length ?? SourceMask.shape[0];

    /// <summary>Whether rows were selected lazily (<see cref="MemoryRows"/>, <see cref="PositionRows"/>, or a cache with more rows than the state).</summary>
    internal bool Remapped => MemoryRows is not null || PositionRows is not null || (Cache is { } c && c.Keys[0].shape[0] != Rows);

    /// <summary>Layer <paramref name="layer"/>'s cached self-attention keys, (rows, heads, steps, head size): a view or alias, or a gathered copy when <see cref="Remapped"/>.</summary>
    internal Tensor PastKeys(int layer) => SelfKeys[layer]?.alias() ?? Cache!.Read(keys: true, layer, Rows, Steps, PositionRows);

    /// <summary>Layer <paramref name="layer"/>'s cached self-attention values, as <see cref="PastKeys"/>.</summary>
    internal Tensor PastValues(int layer) => SelfValues[layer]?.alias() ?? Cache!.Read(keys: false, layer, Rows, Steps, PositionRows);

    /// <summary>
    /// This state with lazily selected rows (<see cref="Remapped"/>) copied into place — new tensors in the caller's dispose
    /// scope — for the paths that read rows as they are stored (the modules, several positions, the row step); else itself.
    /// </summary>
    internal TransformerState Dense()
    {
        if (!Remapped) return this;
        Tensor mask = SourceMask;
        Tensor[] crossKeys = CrossKeys, crossValues = CrossValues;
        if (MemoryRows is { } memoryRows)
        {
            using var rows = tensor(memoryRows.Select(r => (long)r).ToArray(), device: SourceMask.device);
            mask = SourceMask.index_select(0, rows);
            crossKeys = CrossKeys.Select(t => t.index_select(0, rows)).ToArray();
            crossValues = CrossValues.Select(t => t.index_select(0, rows)).ToArray();
        }
        var cache = Cache is { } c && Steps > 0 ? c.Gathered(Rows, Steps, PositionRows) : null;
        var keys = Enumerable.Range(0, SelfKeys.Length).Select(i => cache is null ? null : (Tensor?)cache.Keys[i].narrow(2, 0, Steps)).ToArray();
        var values = Enumerable.Range(0, SelfKeys.Length).Select(i => cache is null ? null : (Tensor?)cache.Values[i].narrow(2, 0, Steps)).ToArray();
        return this with
        {
            SourceMask = mask, CrossKeys = crossKeys, CrossValues = crossValues, SelfKeys = keys, SelfValues = values, Cache = cache,
            MemoryRows = null, PositionRows = null, ManagedStep = false,
        };
    }
}

/// <summary>One decoder block: causal self-attention, cross-attention over the encoder output, FFN.</summary>
internal sealed class TransformerDecoderBlock : nn.Module
{
    public readonly MultiHeadAttention SelfAttention, CrossAttention;
    private readonly Residual addNorm1, addNorm2, addNorm3;
    private readonly PositionWiseFfn ffn;

    internal nn.Module<Tensor, Tensor> Norm1 => addNorm1.Norm;
    internal nn.Module<Tensor, Tensor> Norm2 => addNorm2.Norm;
    internal nn.Module<Tensor, Tensor> Norm3 => addNorm3.Norm;
    internal PositionWiseFfn Ffn => ffn;

    public TransformerDecoderBlock(TransformerSpec spec) : base(nameof(TransformerDecoderBlock))
    {
        SelfAttention = new MultiHeadAttention(spec);
        addNorm1 = new Residual(spec);
        CrossAttention = new MultiHeadAttention(spec);
        addNorm2 = new Residual(spec);
        ffn = new PositionWiseFfn(spec);
        addNorm3 = new Residual(spec);
        RegisterComponents();
    }

    /// <summary>Runs the block on new positions <paramref name="x"/>; returns the output, the grown self-attention cache and the cross-attention weights.</summary>
    public (Tensor Output, Tensor Keys, Tensor Values, Tensor CrossWeights) Forward(Tensor x, Tensor? pastKeys, Tensor? pastValues, Tensor? causalMask,
        Tensor crossKeys, Tensor crossValues, Tensor sourceMask, Tensor? positionBias = null)
    {
        Tensor keys = null!, values = null!;
        var y = addNorm1.call(x, h =>
        {
            using var q = SelfAttention.ProjectQuery(h);
            var (k, v) = SelfAttention.ProjectKeyValue(h, h);
            if (pastKeys is not null)
            {
                var (newKeys, newValues) = (k, v);
                k = cat([pastKeys, newKeys], 2);
                v = cat([pastValues!, newValues], 2);
                newKeys.Dispose();
                newValues.Dispose();
            }
            keys = k;
            values = v;
            return SelfAttention.Attend(q, k, v, causalMask, positionBias);
        });
        using (y)
        {
            Tensor crossWeights = null!;
            using var z = addNorm2.call(y, h =>
            {
                using var q = CrossAttention.ProjectQuery(h);
                return CrossAttention.Attend(q, crossKeys, crossValues, sourceMask, out crossWeights);
            });
            return (addNorm3.call(z, h => ffn.call(h)), keys, values, crossWeights);
        }
    }
}

/// <summary>
/// Transformer decoder (d2l §11.7.5) with incremental decoding: fed a whole teacher-forced target it uses a
/// causal mask; fed one token at a time it extends cached keys/values, so each step costs one position's
/// work and gives the same logits as recomputing the prefix.
/// </summary>
internal sealed class TransformerDecoder : PackedDecoder<TransformerState>
{
    private readonly Embedding embedding;
    private readonly PositionalEncoding positions;
    private readonly nn.Module<Tensor, Tensor>? embeddingNorm;
    private readonly PackedDropout dropout;
    private readonly RelativePositionBias? relativeBias;
    private readonly ModuleList<TransformerDecoderBlock> blocks;
    private readonly nn.Module<Tensor, Tensor>? finalNorm;
    private readonly Linear dense;
    private readonly TransformerSpec spec;

    /// <summary>Creates the decoder; <paramref name="embedding"/> may be shared with the encoder and/or tied to the output projection.</summary>
    public TransformerDecoder(TransformerSpec spec, Embedding embedding) : base(nameof(TransformerDecoder))
    {
        this.spec = spec;
        this.embedding = embedding;
        positions = new PositionalEncoding(spec);
        embeddingNorm = spec.EmbeddingNorm ? Norms.Create(spec) : null;
        dropout = new PackedDropout(spec.Dropout);
        if (spec.Positions == PositionKind.RelativeBuckets) relativeBias = new RelativePositionBias(spec, bidirectional: false);
        blocks = nn.ModuleList(Enumerable.Range(0, spec.DecoderLayers).Select(_ => new TransformerDecoderBlock(spec)).ToArray());
        finalNorm = spec.FinalDecoderNorm ? Norms.Create(spec) : null;
        dense = ModelConstruction.Linear(spec.Hidden, spec.TargetVocabulary, hasBias: spec.OutputBias);
        if (spec.TieOutput) dense.weight = embedding.weight!;
        RegisterComponents();
    }

    /// <summary>The structure this decoder was built from.</summary>
    internal TransformerSpec Spec => spec;

    /// <summary>The target embedding.</summary>
    internal Embedding Embedding => embedding;

    /// <summary>The positions.</summary>
    internal PositionalEncoding Positions => positions;

    /// <summary>The norm over embeddings + positions, or null.</summary>
    internal nn.Module<Tensor, Tensor>? EmbeddingNorm => embeddingNorm;

    /// <summary>The causal relative position biases of self-attention, or null.</summary>
    internal RelativePositionBias? RelativeBias => relativeBias;

    /// <summary>The blocks, in order.</summary>
    internal IReadOnlyList<TransformerDecoderBlock> Blocks => blocks.ToList();

    /// <summary>The norm after the last block, or null.</summary>
    internal nn.Module<Tensor, Tensor>? FinalNorm => finalNorm;

    /// <summary>The output projection (its input multiplied by <see cref="TransformerSpec.OutputScale"/> first).</summary>
    internal Linear Output => dense;

    /// <inheritdoc />
    public override TransformerState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths)
    {
        var memory = encoderOutput.Outputs;
        var mask = AttentionMasks.FromValidLengths(sourceValidLengths, memory.shape[1]);
        if (Plan((type, version) => new TransformerDecodePlan(type, this, version)) is { } lean)
        {
            var (keys, values) = lean.CrossKeyValues(memory);
            int[]? lengths = null;
            if (mask.device_type == DeviceType.CPU)
                using (var visible = mask.sum([1, 2, 3], type: ScalarType.Int32)) lengths = visible.data<int>().ToArray(); // masks are prefixes
            return new TransformerState(mask, keys, values, new Tensor?[blocks.Count], new Tensor?[blocks.Count], 0) { SourceLengths = lengths };
        }
        var crossKeys = new Tensor[blocks.Count];
        var crossValues = new Tensor[blocks.Count];
        for (int i = 0; i < blocks.Count; i++)
            (crossKeys[i], crossValues[i]) = blocks[i].CrossAttention.ProjectKeyValue(memory, memory);
        return new TransformerState(mask, crossKeys, crossValues, new Tensor?[blocks.Count], new Tensor?[blocks.Count], 0);
    }

    /// <inheritdoc />
    /// <remarks>
    /// On the CPU with the managed attention kernels, nothing is copied: the new state records which stored row each row
    /// reads (<see cref="TransformerState.MemoryRows"/>, <see cref="TransformerState.PositionRows"/>) and the one-position
    /// batched step attends through those maps, so beam search's reordering costs a table of row numbers instead of every
    /// layer's keys and values each step. Other paths copy the rows into place when they need them (<see cref="TransformerState.Dense"/>).
    /// </remarks>
    public override TransformerState SelectRows(TransformerState s, Tensor batchIndices)
    {
        // Keeping the one row of a one-row decoding (a beam of one) keeps its state as it is.
        if (s.Rows == 1 && batchIndices.NumberOfElements == 1 && batchIndices.item<long>() == 0) return s;
        if (s.SourceLengths is { } known && batchIndices.device_type == DeviceType.CPU && RowKernels.Supported && !training
            && s.CrossKeys.Concat(s.CrossValues).All(t => t.dtype is ScalarType.Float32 or ScalarType.BFloat16 && t.is_contiguous())
            && (s.Cache is not null || s.Steps == 0))
        {
            using var rows = batchIndices.to_type(ScalarType.Int64);
            var picked = rows.data<long>().ToArray();
            if (picked.Any(r => r < 0 || r >= s.Rows)) throw new ArgumentOutOfRangeException(nameof(batchIndices), "a selected row does not exist");
            int[]? table = null;
            if (s.Steps > 0)
            {
                int steps = (int)s.Steps;
                table = new int[picked.Length * steps];
                for (int b = 0; b < picked.Length; b++)
                {
                    int from = (int)picked[b];
                    if (s.PositionRows is { } old) Array.Copy(old, from * steps, table, b * steps, steps);
                    else Array.Fill(table, from, b * steps, steps);
                }
            }
            var noViews = new Tensor?[s.SelfKeys.Length];
            return s with
            {
                MemoryRows = picked.Select(r => s.MemoryRows?[r] ?? (int)r).ToArray(), PositionRows = table,
                SourceLengths = picked.Select(r => known[r]).ToArray(), SelfKeys = noViews, SelfValues = noViews,
                CrossAttention = [], ManagedStep = false,
            };
        }
        s = s.Dense();
        int[]? lengths = null;
        if (s.SourceLengths is { } sourceLengths && batchIndices.device_type == DeviceType.CPU)
        {
            using var rows = batchIndices.to_type(ScalarType.Int64);
            lengths = rows.data<long>().ToArray().Select(r => sourceLengths[r]).ToArray();
        }
        var mask = s.SourceMask.index_select(0, batchIndices);
        var crossKeys = s.CrossKeys.Select(t => t.index_select(0, batchIndices)).ToArray();
        var crossValues = s.CrossValues.Select(t => t.index_select(0, batchIndices)).ToArray();
        if (s.Cache is { } cache)
        {
            // The buffers' rows, with their room to grow: the next step writes in place again.
            var selected = cache.SelectRows(batchIndices, s.Steps);
            return new(mask, crossKeys, crossValues, selected.Keys.Select(k => (Tensor?)k.narrow(2, 0, s.Steps)).ToArray(),
                selected.Values.Select(v => (Tensor?)v.narrow(2, 0, s.Steps)).ToArray(), s.Steps) { Cache = selected, SourceLengths = lengths };
        }
        return new(mask, crossKeys, crossValues,
            s.SelfKeys.Select(t => t?.index_select(0, batchIndices)).ToArray(),
            s.SelfValues.Select(t => t?.index_select(0, batchIndices)).ToArray(),
            s.Steps) { SourceLengths = lengths };
    }

    /// <inheritdoc />
    public override (Tensor Logits, TransformerState State) forward(Tensor target, TransformerState state)
    {
        StepPhases.Start();
        long steps = target.shape[1];
        // Rows selected lazily are read through their maps by the batched one-position step only; every other path gets
        // them copied into place first (new tensors in the caller's scope, which the next state takes over).
        if (state.Remapped && (steps != 1 || target.shape[0] == 1 || Packed<TransformerDecodePlan>() is null
                || PackedBlockOps.OneQueryLengths(state, target.shape[0]) is null))
            state = state.Dense();
        if (steps == 1 && TransformerRowStep.Accepts(state, target.shape[0]) && Packed<TransformerDecodePlan>() is { } rowPlan
            && rowPlan.RowStep(() => TransformerRowStep.TryCreate(rowPlan, this)) is { } row)
            return row.Step(target, state);
        using var scope = NewDisposeScope();
        // A single new position may see every cached key, so its causal mask would keep everything: leave it out.
        Tensor? causal = steps == 1 ? null : AttentionMasks.Causal(steps, state.Steps, target.device);
        var x = TransformerEmbedding.Embed(embedding, spec.EmbeddingScale, positions, embeddingNorm, dropout, target, state.Steps);
        StepPhases.Mark(StepPhase.Embedding);
        if (Packed<TransformerDecodePlan>() is { } plan)
        {
            // InitState packed (or checked) the weights for this decoding; steps use them as they are.
            var (leanLogits, keys, values, attention, cache, table) = plan.Forward(x, state, causal, relativeBias?.Bias(state.Steps, steps, state.Steps + steps));
            foreach (var t in keys.Concat(values).OfType<Tensor>().Concat(attention)) t.MoveToOuterDisposeScope();
            if (!ReferenceEquals(cache, state.Cache))
                foreach (var t in cache.Tensors) t.MoveToOuterDisposeScope();
            return (leanLogits.MoveToOuterDisposeScope(), state with
            {
                SelfKeys = keys, SelfValues = values, Steps = state.Steps + steps, CrossAttention = attention, Cache = cache, PositionRows = table,
                ManagedStep = false,
            });
        }
        // The modules grow plain tensors: a cache a packed step wrote (possibly in bfloat16) continues as views of it.
        if (state.Steps > 0 && state.Cache is not null)
            state = state with
            {
                SelfKeys = Enumerable.Range(0, blocks.Count).Select(i => (Tensor?)state.PastKeys(i)).ToArray(),
                SelfValues = Enumerable.Range(0, blocks.Count).Select(i => (Tensor?)state.PastValues(i)).ToArray(),
                Cache = null,
            };
        // A state a bfloat16 plan started (its keys and values cached in bfloat16) continues here in float32.
        if (state.CrossKeys.Concat(state.SelfKeys.OfType<Tensor>()).Any(t => t.dtype != x.dtype))
        {
            // The converted tensors outlive this call (the next state holds the cross-attention ones).
            Tensor?[] Float(Tensor?[] ts) => ts.Select(t => t?.to_type(x.dtype).MoveToOuterDisposeScope()).ToArray();
            state = state with
            {
                CrossKeys = Float(state.CrossKeys)!, CrossValues = Float(state.CrossValues)!,
                SelfKeys = Float(state.SelfKeys), SelfValues = Float(state.SelfValues),
            };
        }
        var selfKeys = new Tensor?[blocks.Count];
        var selfValues = new Tensor?[blocks.Count];
        var crossWeights = new Tensor[blocks.Count];
        var positionBias = relativeBias?.Bias(state.Steps, steps, state.Steps + steps);
        for (int i = 0; i < blocks.Count; i++)
        {
            (x, var k, var v, var w) = blocks[i].Forward(x, state.SelfKeys[i], state.SelfValues[i], causal,
                state.CrossKeys[i], state.CrossValues[i], state.SourceMask, positionBias);
            selfKeys[i] = k.MoveToOuterDisposeScope();
            selfValues[i] = v.MoveToOuterDisposeScope();
            crossWeights[i] = w.MoveToOuterDisposeScope();
        }
        if (finalNorm is not null) x = finalNorm.call(x);
        if (spec.OutputScale != 1.0) x = x.mul(spec.OutputScale);
        var logits = dense.call(x).MoveToOuterDisposeScope();
        return (logits, state with { SelfKeys = selfKeys, SelfValues = selfValues, Steps = state.Steps + steps, CrossAttention = crossWeights, Cache = null, ManagedStep = false });
    }
}

/// <summary>
/// The Transformer of d2l §11.7 (Vaswani et al. 2017), with options a real toolkit needs: pre-norm,
/// tied target embedding / output projection, shared source–target embeddings, FFN activation, attention biases,
/// separate decoder depth and Marian's sinusoid layout (enough to run Hugging Face MarianMT checkpoints, whose
/// <c>final_logits_bias</c> is the output projection's bias).
/// </summary>
internal sealed class TransformerSeq2Seq : EncoderDecoder<TransformerState>
{
    /// <summary>Builds the model from <paramref name="config"/>.</summary>
    public TransformerSeq2Seq(TransformerConfig config) : this(config.ToSpec().Validate()) { }

    /// <summary>Builds the model <paramref name="spec"/> describes.</summary>
    public TransformerSeq2Seq(TransformerSpec spec) : this(spec, CreateEmbeddings(spec)) { }

    private TransformerSeq2Seq(TransformerSpec spec, (Embedding Source, Embedding Target) embeddings)
        : base(nameof(TransformerSeq2Seq), new TransformerEncoder(spec, embeddings.Source), new TransformerDecoder(spec, embeddings.Target))
    {
        // As in d2l §11.7, linear layers keep PyTorch's default (Kaiming-uniform) initialisation.
    }

    private static (Embedding, Embedding) CreateEmbeddings(TransformerSpec spec)
    {
        var target = ModelConstruction.Embedding(spec.TargetVocabulary, spec.Hidden);
        var source = spec.ShareEmbeddings ? target : ModelConstruction.Embedding(spec.SourceVocabulary, spec.Hidden);
        if (spec.TieOutput || spec.EmbeddingScale == 1.0)
        {
            // A tied or unscaled embedding is used at N(0, 1/d) so that logits and inputs start at unit scale.
            using var _ = no_grad();
            nn.init.normal_(target.weight, 0, Math.Pow(spec.Hidden, -0.5));
            if (!ReferenceEquals(source, target)) nn.init.normal_(source.weight, 0, Math.Pow(spec.Hidden, -0.5));
        }
        return (source, target);
    }
}
