using TorchSharp;
using TorchSharp.Modules;
using Transduce.Architecture;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>Reads the Transformer options of a <see cref="ModelConfig"/>.</summary>
internal static class TransformerOptions
{
    public static SinusoidLayout Layout(ModelConfig c) =>
        c.PositionalLayout == "halves" ? SinusoidLayout.Halves : SinusoidLayout.Interleaved;
}

/// <summary>Position-wise feed-forward network (d2l §11.7.2): Linear → activation → Linear.</summary>
internal sealed class PositionWiseFfn : nn.Module<Tensor, Tensor>
{
    private readonly Linear dense1, dense2;
    private readonly string activation;

    internal (Tensor Weight, Tensor? Bias) First => (dense1.weight!, dense1.bias);
    internal (Tensor Weight, Tensor? Bias) Second => (dense2.weight!, dense2.bias);

    public PositionWiseFfn(long hiddenSize, long ffnSize, string activation) : base(nameof(PositionWiseFfn))
    {
        dense1 = nn.Linear(hiddenSize, ffnSize);
        dense2 = nn.Linear(ffnSize, hiddenSize);
        this.activation = activation;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = dense1.call(x);
        using var a = activation switch
        {
            "gelu" => nn.functional.gelu(h),
            "gelu_tanh" => GeluTanh(h),
            "swish" => nn.functional.silu(h),
            _ => nn.functional.relu(h),
        };
        return dense2.call(a);
    }

    /// <summary>GELU with the tanh approximation (transformers' <c>gelu_new</c>): ½x(1 + tanh(√(2/π)(x + 0.044715x³))).</summary>
    internal static Tensor GeluTanh(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = (x + x.pow(3) * 0.044715) * Math.Sqrt(2 / Math.PI);
        return (x * 0.5 * (inner.tanh() + 1)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A residual connection around a sub-layer with layer normalisation (d2l §11.7.2's AddNorm). Post-norm
/// (the paper's and the book's): LN(x + dropout(f(x))). Pre-norm: x + dropout(f(LN(x))), which trains more
/// stably without warm-up tricks and needs one final LN after the stack.
/// </summary>
internal sealed class Residual : nn.Module<Tensor, Func<Tensor, Tensor>, Tensor>
{
    private readonly LayerNorm norm;
    private readonly Dropout dropout;
    private readonly bool preNorm;

    internal LayerNorm Norm => norm;

    public Residual(long hiddenSize, double dropout, bool preNorm) : base(nameof(Residual))
    {
        norm = nn.LayerNorm(hiddenSize);
        this.dropout = nn.Dropout(dropout);
        this.preNorm = preNorm;
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

    public TransformerEncoderBlock(ModelConfig c) : base(nameof(TransformerEncoderBlock))
    {
        attention = new MultiHeadAttention(c.HiddenSize, c.Heads, c.Dropout, c.AttentionBias);
        addNorm1 = new Residual(c.HiddenSize, c.Dropout, c.PreNorm);
        ffn = new PositionWiseFfn(c.HiddenSize, c.FfnSize, c.Activation);
        addNorm2 = new Residual(c.HiddenSize, c.Dropout, c.PreNorm);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor mask)
    {
        using var y = addNorm1.call(x, h => attention.call(h, h, h, mask));
        return addNorm2.call(y, h => ffn.call(h));
    }
}

/// <summary>Transformer encoder (d2l §11.7.4): scaled embeddings + positions, then a stack of blocks.</summary>
public sealed class TransformerEncoder : Encoder
{
    private readonly Embedding embedding;
    private readonly PositionalEncoding positions;
    private readonly ModuleList<TransformerEncoderBlock> blocks;
    private readonly LayerNorm? finalNorm;
    private readonly double embeddingScale;

    /// <summary>Creates the encoder; <paramref name="embedding"/> may be shared with the decoder.</summary>
    public TransformerEncoder(ModelConfig c, Embedding embedding) : base(nameof(TransformerEncoder))
    {
        this.embedding = embedding;
        positions = new PositionalEncoding(c.HiddenSize, c.Dropout, c.MaxPositions, TransformerOptions.Layout(c));
        blocks = nn.ModuleList(Enumerable.Range(0, c.Layers).Select(_ => new TransformerEncoderBlock(c)).ToArray());
        finalNorm = c.PreNorm ? nn.LayerNorm(c.HiddenSize) : null;
        embeddingScale = c.ScaleEmbedding ? Math.Sqrt(c.HiddenSize) : 1.0;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override EncoderOutput forward(Tensor source, Tensor validLengths)
    {
        using var scope = NewDisposeScope();
        var mask = AttentionMasks.FromValidLengths(validLengths, source.shape[1]);
        var x = positions.call(embedding.call(source).mul_(embeddingScale), 0);
        foreach (var block in blocks) x = block.call(x, mask);
        if (finalNorm is not null) x = finalNorm.call(x);
        return new EncoderOutput(x.MoveToOuterDisposeScope(), null);
    }
}

/// <summary>
/// Incremental state of <see cref="TransformerDecoder"/>: the source key mask, each layer's projected
/// cross-attention keys/values of the encoder output (computed once), each layer's projected self-attention
/// keys/values of the target prefix so far (grown by one step per call), and how many target positions
/// have been consumed.
/// </summary>
public sealed record TransformerState(Tensor SourceMask, Tensor[] CrossKeys, Tensor[] CrossValues, Tensor?[] SelfKeys, Tensor?[] SelfValues, long Steps)
    : IDecoderState
{
    /// <inheritdoc />
    public IEnumerable<Tensor> Tensors =>
        new[] { SourceMask }.Concat(CrossKeys).Concat(CrossValues).Concat(SelfKeys.OfType<Tensor>()).Concat(SelfValues.OfType<Tensor>());
}

/// <summary>One decoder block: causal self-attention, cross-attention over the encoder output, FFN.</summary>
internal sealed class TransformerDecoderBlock : nn.Module
{
    public readonly MultiHeadAttention SelfAttention, CrossAttention;
    private readonly Residual addNorm1, addNorm2, addNorm3;
    private readonly PositionWiseFfn ffn;

    internal LayerNorm Norm1 => addNorm1.Norm;
    internal LayerNorm Norm2 => addNorm2.Norm;
    internal LayerNorm Norm3 => addNorm3.Norm;
    internal PositionWiseFfn Ffn => ffn;

    public TransformerDecoderBlock(ModelConfig c) : base(nameof(TransformerDecoderBlock))
    {
        SelfAttention = new MultiHeadAttention(c.HiddenSize, c.Heads, c.Dropout, c.AttentionBias);
        addNorm1 = new Residual(c.HiddenSize, c.Dropout, c.PreNorm);
        CrossAttention = new MultiHeadAttention(c.HiddenSize, c.Heads, c.Dropout, c.AttentionBias);
        addNorm2 = new Residual(c.HiddenSize, c.Dropout, c.PreNorm);
        ffn = new PositionWiseFfn(c.HiddenSize, c.FfnSize, c.Activation);
        addNorm3 = new Residual(c.HiddenSize, c.Dropout, c.PreNorm);
        RegisterComponents();
    }

    /// <summary>Runs the block on new positions <paramref name="x"/>; returns the output and the grown self-attention cache.</summary>
    public (Tensor Output, Tensor Keys, Tensor Values) Forward(Tensor x, Tensor? pastKeys, Tensor? pastValues, Tensor? causalMask,
        Tensor crossKeys, Tensor crossValues, Tensor sourceMask)
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
            return SelfAttention.Attend(q, k, v, causalMask);
        });
        using (y)
        {
            using var z = addNorm2.call(y, h =>
            {
                using var q = CrossAttention.ProjectQuery(h);
                return CrossAttention.Attend(q, crossKeys, crossValues, sourceMask);
            });
            return (addNorm3.call(z, h => ffn.call(h)), keys, values);
        }
    }
}

/// <summary>
/// Transformer decoder (d2l §11.7.5) with incremental decoding: fed a whole teacher-forced target it uses a
/// causal mask; fed one token at a time it extends cached keys/values, so each step costs one position's
/// work and gives the same logits as recomputing the prefix.
/// </summary>
public sealed class TransformerDecoder : Decoder<TransformerState>, IAttentionCapture, IReducedPrecisionDecoder
{
    private readonly Embedding embedding;
    private readonly PositionalEncoding positions;
    private readonly ModuleList<TransformerDecoderBlock> blocks;
    private readonly LayerNorm? finalNorm;
    private readonly Linear dense;
    private readonly double embeddingScale;
    private readonly List<Tensor>[] captured;
    private readonly bool preNorm;
    private readonly string activation;
    private TransformerDecodePlan? plan;
    private ComputeType computeType = ComputeType.Float32;

    /// <summary>Creates the decoder; <paramref name="embedding"/> may be shared with the encoder and/or tied to the output projection.</summary>
    public TransformerDecoder(ModelConfig c, Embedding embedding) : base(nameof(TransformerDecoder))
    {
        preNorm = c.PreNorm;
        activation = c.Activation;
        this.embedding = embedding;
        positions = new PositionalEncoding(c.HiddenSize, c.Dropout, c.MaxPositions, TransformerOptions.Layout(c));
        blocks = nn.ModuleList(Enumerable.Range(0, c.DecoderLayerCount).Select(_ => new TransformerDecoderBlock(c)).ToArray());
        finalNorm = c.PreNorm ? nn.LayerNorm(c.HiddenSize) : null;
        dense = nn.Linear(c.HiddenSize, c.TargetVocabSize);
        if (c.TieEmbeddings) dense.weight = embedding.weight!;
        embeddingScale = c.ScaleEmbedding ? Math.Sqrt(c.HiddenSize) : 1.0;
        captured = Enumerable.Range(0, c.DecoderLayerCount).Select(_ => new List<Tensor>()).ToArray();
        RegisterComponents();
    }

    /// <inheritdoc />
    public bool CaptureAttention
    {
        get => blocks[0].CrossAttention.CaptureWeights;
        set
        {
            foreach (var b in blocks) b.CrossAttention.CaptureWeights = value;
        }
    }

    /// <inheritdoc />
    public IReadOnlyList<Tensor> CapturedCrossAttention =>
        captured.Where(l => l.Count > 0).Select(l => cat(l, 2)).ToList();

    /// <inheritdoc />
    public void ClearCapturedAttention()
    {
        foreach (var list in captured)
        {
            foreach (var t in list) t.Dispose();
            list.Clear();
        }
        foreach (var b in blocks) b.CrossAttention.ClearCapturedWeights();
    }

    /// <summary>
    /// The number type of the linear layers' products when decoding in eval mode (<see cref="ComputeType.Float32"/> by
    /// default). Training and teacher-forced eval calls with <see cref="CaptureAttention"/> on always run the modules in float32.
    /// </summary>
    public ComputeType ComputeType
    {
        get => computeType;
        set
        {
            if (value == computeType) return;
            computeType = value;
            DropPlan();
        }
    }

    /// <summary>Leaving or entering eval mode drops the packed decoding weights (they are packed again when next needed).</summary>
    public override void train(bool train = true)
    {
        DropPlan();
        base.train(train);
    }

    /// <summary>Disposing the decoder also releases its packed decoding weights.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing) DropPlan();
        base.Dispose(disposing);
    }

    private void DropPlan()
    {
        plan?.Dispose();
        plan = null;
    }

    /// <summary>
    /// The packed eval-mode path, or null when the modules must run (training, attention capture). Packed weights are
    /// rebuilt when the compute type or any decoder weight changed since they were packed.
    /// </summary>
    private TransformerDecodePlan? Plan()
    {
        if (training || CaptureAttention || !TransformerDecodePlan.Enabled) return null;
        long? version = WeightVersions.Sum(parameters());
        if (plan is not null && version is long v && v == plan.Version) return plan;
        DropPlan();
        using (no_grad())
            plan = new TransformerDecodePlan(computeType, blocks.ToList(), dense, preNorm, activation, version ?? -1);
        return plan;
    }

    /// <inheritdoc />
    public override TransformerState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths)
    {
        var memory = encoderOutput.Outputs;
        if (Plan() is { } lean)
        {
            var (keys, values) = lean.CrossKeyValues(memory);
            return new TransformerState(AttentionMasks.FromValidLengths(sourceValidLengths, memory.shape[1]), keys, values,
                new Tensor?[blocks.Count], new Tensor?[blocks.Count], 0);
        }
        var crossKeys = new Tensor[blocks.Count];
        var crossValues = new Tensor[blocks.Count];
        for (int i = 0; i < blocks.Count; i++)
            (crossKeys[i], crossValues[i]) = blocks[i].CrossAttention.ProjectKeyValue(memory, memory);
        var mask = AttentionMasks.FromValidLengths(sourceValidLengths, memory.shape[1]);
        return new TransformerState(mask, crossKeys, crossValues, new Tensor?[blocks.Count], new Tensor?[blocks.Count], 0);
    }

    /// <inheritdoc />
    public override TransformerState SelectRows(TransformerState s, Tensor batchIndices) => new(
        s.SourceMask.index_select(0, batchIndices),
        s.CrossKeys.Select(t => t.index_select(0, batchIndices)).ToArray(),
        s.CrossValues.Select(t => t.index_select(0, batchIndices)).ToArray(),
        s.SelfKeys.Select(t => t?.index_select(0, batchIndices)).ToArray(),
        s.SelfValues.Select(t => t?.index_select(0, batchIndices)).ToArray(),
        s.Steps);

    /// <inheritdoc />
    public override (Tensor Logits, TransformerState State) forward(Tensor target, TransformerState state)
    {
        using var scope = NewDisposeScope();
        long steps = target.shape[1];
        // A single new position may see every cached key, so its causal mask would keep everything: leave it out.
        Tensor? causal = steps == 1 ? null : AttentionMasks.Causal(steps, state.Steps, target.device);
        var x = positions.call(embedding.call(target).mul_(embeddingScale), state.Steps);
        if (plan is not null && !training && !CaptureAttention)
        {
            // InitState packed (or checked) the weights for this decoding; steps use them as they are.
            var (leanLogits, keys, values) = plan.Forward(x, state, causal, finalNorm);
            foreach (var t in keys.Concat(values)) t.MoveToOuterDisposeScope();
            return (leanLogits.MoveToOuterDisposeScope(), state with { SelfKeys = keys, SelfValues = values, Steps = state.Steps + steps });
        }
        var selfKeys = new Tensor?[blocks.Count];
        var selfValues = new Tensor?[blocks.Count];
        for (int i = 0; i < blocks.Count; i++)
        {
            (x, var k, var v) = blocks[i].Forward(x, state.SelfKeys[i], state.SelfValues[i], causal,
                state.CrossKeys[i], state.CrossValues[i], state.SourceMask);
            selfKeys[i] = k.MoveToOuterDisposeScope();
            selfValues[i] = v.MoveToOuterDisposeScope();
            if (CaptureAttention && blocks[i].CrossAttention.LastWeights is { } w)
                captured[i].Add(w.clone().DetachFromDisposeScope());
        }
        if (finalNorm is not null) x = finalNorm.call(x);
        var logits = dense.call(x).MoveToOuterDisposeScope();
        return (logits, state with { SelfKeys = selfKeys, SelfValues = selfValues, Steps = state.Steps + steps });
    }
}

/// <summary>
/// The Transformer of d2l §11.7 (Vaswani et al. 2017), with options a real toolkit needs: pre-norm,
/// tied target embedding / output projection, shared source–target embeddings, FFN activation, attention biases,
/// separate decoder depth and Marian's sinusoid layout (enough to run Hugging Face MarianMT checkpoints, whose
/// <c>final_logits_bias</c> is the output projection's bias).
/// </summary>
public sealed class TransformerSeq2Seq : EncoderDecoder<TransformerState>
{
    /// <summary>Builds the model from <paramref name="config"/>.</summary>
    public TransformerSeq2Seq(ModelConfig config) : this(config, CreateEmbeddings(config)) { }

    private TransformerSeq2Seq(ModelConfig config, (Embedding Source, Embedding Target) embeddings)
        : base(nameof(TransformerSeq2Seq), new TransformerEncoder(config, embeddings.Source), new TransformerDecoder(config, embeddings.Target))
    {
        // As in d2l §11.7, linear layers keep PyTorch's default (Kaiming-uniform) initialisation.
    }

    private static (Embedding, Embedding) CreateEmbeddings(ModelConfig c)
    {
        var target = nn.Embedding(c.TargetVocabSize, c.HiddenSize);
        var source = c.ShareEmbeddings ? target : nn.Embedding(c.SourceVocabSize, c.HiddenSize);
        if (c.TieEmbeddings || !c.ScaleEmbedding)
        {
            // A tied or unscaled embedding is used at N(0, 1/d) so that logits and inputs start at unit scale.
            using var _ = no_grad();
            nn.init.normal_(target.weight, 0, Math.Pow(c.HiddenSize, -0.5));
            if (!ReferenceEquals(source, target)) nn.init.normal_(source.weight, 0, Math.Pow(c.HiddenSize, -0.5));
        }
        return (source, target);
    }
}
