using System.Collections;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// The decoder step of one sentence (batch 1, one new position) in managed SIMD (<see cref="RowKernels"/>): the same
/// network as <see cref="TransformerDecodePlan"/> — fused and pre-scaled query/key/value projection, cached self-attention
/// keys and values, cross-attention over keys and values computed once per sentence — with the embedding, layer norms,
/// attention, activations and residuals in managed code. At batch 1 a libtorch step is mostly per-operation overhead
/// (~75 tensors a step at 2–4 µs each) and, in float32, MKL matrix–vector products.
/// <para>
/// Products: a float32 or bfloat16 plan whose decoder layers fit the last-level cache (<see cref="MaxBlockBytes"/>)
/// gets managed panel copies of them (<see cref="RowLinear"/>), and of the output layer when it is small enough
/// (<see cref="MaxOutputBytes"/>) — then no libtorch call is left between the token and the logits (base-cpu: float32
/// 0.21–0.23 against 0.37–0.48 ms a step, bfloat16 0.16–0.17 against 0.54–0.57). float32 panels take every layer up
/// to <see cref="MaxFloat32PanelBytes"/> in all. Otherwise (larger layers; int8) each product is the plan's own packed
/// layer on the one row, and the rest still runs here (base-cpu int8 steps 15–25 % faster, OPUS-MT size 3–7 %;
/// BENCHMARKS.md, issue 17, third pass). Panels cost as many bytes as the weights they cover, in the compute type.
/// </para>
/// <para>
/// With more than one intra-op thread, each calling thread's <see cref="RowTeam"/> splits the panel products over that
/// many threads: at one row a product streams its weights once, and two cores draw more memory bandwidth than one
/// (OPUS-MT size, two threads: 4.5–4.8 ms a step against 5.9–6.2 through oneDNN's two-thread products; BENCHMARKS.md,
/// issue 28).
/// </para>
/// </summary>
internal sealed unsafe class TransformerRowStep : IDisposable
{
    /// <summary>Largest size of the decoder layers' step weights, in the compute type, that the row step multiplies itself.</summary>
    public const long MaxBlockBytes = 24L << 20;

    /// <summary>Largest output layer, in the compute type, that the row step multiplies itself.</summary>
    public const long MaxOutputBytes = 16L << 20;

    /// <summary>
    /// Largest float32 decoder and output layers, together, that the panels take (<see cref="MaxBlockBytes"/> and
    /// <see cref="MaxOutputBytes"/> bound the other types): the panels are a second copy beside the plan's packed layers
    /// (OPUS-MT: 207 MB; NLLB-200's 1 GB output layer keeps oneDNN). One row at OPUS-MT size, one thread, CPU time per
    /// call: 512 → 58,101 panels 7.1 ms against oneDNN's 8.3 and MKL's 8.4; 512 → 2,048 0.15 against 0.20; on two threads
    /// see <see cref="RowTeam"/> (BENCHMARKS.md, issue 28).
    /// </summary>
    public const long MaxFloat32PanelBytes = 256L << 20;

    // A norm module's parameters in managed memory, applied as the spec's norm kind.
    private sealed class Norm
    {
        private readonly NormKind kind;
        private readonly float[] gamma, beta;
        private readonly float eps;

        public Norm(nn.Module<Tensor, Tensor> module)
        {
            (kind, var g, var b, double e) = Norms.Parameters(module);
            gamma = RowKernels.Copy(g);
            beta = b is null ? new float[gamma.Length] : RowKernels.Copy(b);
            eps = (float)e;
        }

        public void Apply(float* x, float* y)
        {
            fixed (float* g = gamma, b = beta)
            {
                if (kind == NormKind.RmsNorm) RowKernels.RmsNorm(x, y, g, gamma.Length, eps);
                else RowKernels.LayerNorm(x, y, g, b, gamma.Length, eps);
            }
        }
    }

    private sealed record Block(Norm Norm1, Norm Norm2, Norm Norm3, IRowProduct SelfQkv, IRowProduct SelfOut, IRowProduct CrossQuery,
        IRowProduct CrossOut, IRowProduct Ffn1, IRowProduct Ffn2) : IDisposable
    {
        public Norm Norm(SubLayer sub) => sub switch { SubLayer.Self => Norm1, SubLayer.Cross => Norm2, _ => Norm3 };

        public IRowProduct Output(SubLayer sub) => sub switch { SubLayer.Self => SelfOut, SubLayer.Cross => CrossOut, _ => Ffn2 };

        public IEnumerable<IRowProduct> Linears => [SelfQkv, SelfOut, CrossQuery, CrossOut, Ffn1, Ffn2];

        public void Dispose()
        {
            foreach (var l in Linears) l.Dispose();
        }
    }

    private readonly Block[] blocks;
    private readonly Norm? finalNorm, embeddingNorm;
    private readonly RowLinear? output;        // null: the plan's packed output layer multiplies
    private readonly PackedLinear packedOutput;
    private readonly Tensor embedding;          // an alias of the target embedding's weight, kept alive for its memory
    private readonly float* embeddingRows;
    private readonly long vocabulary;
    private readonly float embeddingScale;
    private readonly float[]? positions;        // (max positions, hidden), or null without absolute positions
    private readonly float[]? relativeTable;    // relative position biases: (buckets, heads), or null
    private readonly int[]? bucketByDistance;   // the bucket of each look-back distance
    private readonly int maxPositions, heads, headSize, hidden, attentionWidth, ffnSize;
    private readonly TransformerSpec spec;
    private readonly FeedForwardKind feedForward;
    private readonly ThreadLocal<Scratch> scratch;
    private readonly ThreadLocal<RowTeam>? teams;  // per calling thread: splits panel products over the intra-op threads (read when made)
    private readonly Tensor?[] noViews;          // a managed step's state hands out no per-layer views (see TransformerState.PastKeys)

    private TransformerRowStep(TransformerDecodePlan plan, TransformerDecoder decoder, bool managedProducts, bool managedOutput)
    {
        var spec = decoder.Spec;
        var modules = decoder.Blocks;
        (heads, long size, long width, double queryScale) = PackedBlockOps.Geometry(spec);
        (headSize, hidden) = ((int)size, (int)width);
        attentionWidth = heads * headSize;
        this.spec = spec;
        feedForward = spec.FeedForward;
        embeddingScale = (float)spec.EmbeddingScale;
        packedOutput = plan.Output;
        bool half = plan.ComputeType == ComputeType.BFloat16;
        blocks = modules.Zip(plan.Blocks, (m, packed) => managedProducts
            ? new Block(new Norm(m.Norm1), new Norm(m.Norm2), new Norm(m.Norm3),
                RowLinear.Pack([m.SelfAttention.Query, m.SelfAttention.Key, m.SelfAttention.Value], [queryScale, 1, 1], half),
                RowLinear.Pack([m.SelfAttention.Output], bfloat16: half),
                RowLinear.Pack([m.CrossAttention.Query], [queryScale], half),
                RowLinear.Pack([m.CrossAttention.Output], bfloat16: half),
                RowLinear.Pack(m.Ffn.FirstParts, bfloat16: half),
                RowLinear.Pack([m.Ffn.Second], bfloat16: half))
            : new Block(new Norm(m.Norm1), new Norm(m.Norm2), new Norm(m.Norm3),
                new PackedRowProduct(packed.SelfQkv), new PackedRowProduct(packed.SelfOut), new PackedRowProduct(packed.CrossQuery),
                new PackedRowProduct(packed.CrossOut), new PackedRowProduct(packed.Ffn1), new PackedRowProduct(packed.Ffn2))).ToArray();
        ffnSize = spec.FfnSize;
        noViews = new Tensor?[modules.Count];
        finalNorm = decoder.FinalNorm is { } final ? new Norm(final) : null;
        embeddingNorm = decoder.EmbeddingNorm is { } first ? new Norm(first) : null;
        if (managedOutput)
            output = RowLinear.Pack([TransformerDecodePlan.OutputProjection(decoder)], bfloat16: half,
                stillRead: TransformerDecodePlan.TiedToEmbedding(decoder));
        embedding = decoder.Embedding.weight!.detach().alias();
        embeddingRows = RowKernels.Pointer(embedding);
        vocabulary = embedding.shape[0];
        maxPositions = decoder.Positions.Positions;
        if (decoder.RelativeBias is { } relative)
        {
            using var table = relative.Weight.detach().contiguous();
            relativeTable = RowKernels.Copy(table);
            bucketByDistance = relative.CausalBucketsByDistance(maxPositions);
        }
        if (decoder.Positions.Rows is { } rows)
        {
            using var table = rows.detach().contiguous();
            positions = RowKernels.Copy(table);
        }
        int padded = Math.Max(Math.Max(blocks[0].SelfQkv.PaddedOut, blocks[0].Ffn1.PaddedOut), blocks[0].SelfOut.PaddedOut), logits = output?.PaddedOut ?? 0;
        scratch = new ThreadLocal<Scratch>(() => new Scratch(padded, attentionWidth, logits));
        int threads = get_num_threads();
        if (threads > 1 && (managedProducts || managedOutput))
            teams = new ThreadLocal<RowTeam>(() => new RowTeam(threads), trackAllValues: true);
    }

    // A product on the calling thread's team when it is a panel product and the team has helpers, else on the caller.
    private static void Multiply(IRowProduct product, float* x, float* y, float* residual, RowTeam? team)
    {
        if (team is not null && product is RowLinear panels) team.Forward(panels, x, y, residual);
        else product.Forward(x, y, residual);
    }

    /// <summary>
    /// The row step of <paramref name="plan"/>'s decoder, or null where it does not apply: no AVX2, an activation without a
    /// managed form, weights not float32 on the CPU. Its products are managed panels for a float32 or bfloat16 plan whose
    /// decoder layers fit <see cref="MaxBlockBytes"/> in that type, or for a float32 plan within
    /// <see cref="MaxFloat32PanelBytes"/> (panels need AVX-512), else the plan's own packed layers (int8, larger layers, AVX2 only).
    /// </summary>
    public static TransformerRowStep? TryCreate(TransformerDecodePlan plan, TransformerDecoder decoder)
    {
        var modules = decoder.Blocks;
        if (!RowKernels.Supported || !decoder.Spec.FeedForward.Function().HasManagedForm() || modules.Count == 0 || modules.Count != plan.Blocks.Count)
            return null;
        var weights = modules.SelectMany(m => new[] { m.SelfAttention.Query, m.SelfAttention.Key, m.SelfAttention.Value, m.SelfAttention.Output,
            m.CrossAttention.Query, m.CrossAttention.Output, m.Ffn.Second }.Concat(m.Ffn.FirstParts)).Select(p => p.Weight).ToList();
        if (weights.Append(decoder.Embedding.weight!).Any(w => w.dtype != ScalarType.Float32 || w.device_type != DeviceType.CPU)) return null;
        long elements = weights.Sum(w => w.NumberOfElements);
        bool managedProducts = plan.ComputeType switch
        {
            ComputeType.Float32 => RowLinear.Supported && elements * sizeof(float) <= MaxBlockBytes,
            ComputeType.BFloat16 => RowLinear.Supported && elements * sizeof(ushort) <= MaxBlockBytes,
            _ => false,
        };
        using var scope = NewDisposeScope();
        long outputBytes = decoder.Output.weight!.NumberOfElements * (plan.ComputeType == ComputeType.BFloat16 ? sizeof(ushort) : sizeof(float));
        bool managedOutput = managedProducts && outputBytes <= MaxOutputBytes;
        // float32 panels take every layer (and the output layer) within MaxFloat32PanelBytes.
        if (plan.ComputeType == ComputeType.Float32 && RowLinear.Supported && elements * sizeof(float) + outputBytes <= MaxFloat32PanelBytes)
            managedProducts = managedOutput = true;
        return new TransformerRowStep(plan, decoder, managedProducts, managedOutput);
    }

    /// <summary>Whether the decoder layers multiply through managed panels (<see cref="RowLinear"/>) rather than the plan's packed layers.</summary>
    internal bool ManagedProducts => blocks.Any(b => b.Linears.OfType<RowLinear>().Any());

    /// <summary>Threads a panel product is split over: libtorch's intra-op threads when this step was made (1: the caller alone).</summary>
    internal int ProductThreads => teams is null ? 1 : teams.Value!.Threads;

    /// <summary>Whether the output layer multiplies through managed panels rather than the plan's packed output layer.</summary>
    internal bool ManagedOutput => output is not null;

    /// <summary>Bytes of packed copies (the embedding is read in place).</summary>
    public long Bytes => blocks.Sum(b => b.Linears.OfType<RowLinear>().Sum(l => l.Bytes)) + (output?.Bytes ?? 0) + (positions?.Length ?? 0) * sizeof(float);

    /// <summary>
    /// Whether <paramref name="state"/> can take a row step: one sentence whose cross-attention keys and values are
    /// contiguous float32 or bfloat16 tensors (as the packed plan makes them), with its source length known.
    /// </summary>
    public static bool Accepts(TransformerState state, long rows) =>
        rows == 1 && state.SourceLengths is [_] && state.CrossKeys.Concat(state.CrossValues).All(t =>
            t.device_type == DeviceType.CPU && t.dtype is ScalarType.Float32 or ScalarType.BFloat16 && t.is_contiguous());

    /// <summary>
    /// Feeds <paramref name="token"/> (1, 1) at position <c>state.Steps</c>; returns the logits (1, 1, vocabulary) and the
    /// next state. The new position's key and value are written in place into the state's <see cref="KeyValueCache"/>
    /// (float32; a new one, with the past copied, when the state has none that fits), which the next state carries and
    /// libtorch reads where it takes over; the step creates no other tensor.
    /// </summary>
    public (Tensor Logits, TransformerState State) Step(Tensor token, TransformerState state)
    {
        StepPhases.Start();
        long id = token.item<long>();
        if (id < 0 || id >= vocabulary) throw new ArgumentOutOfRangeException(nameof(token), id, $"token id outside the vocabulary of {vocabulary}");
        int position = (int)state.Steps;
        if (position >= maxPositions)
            throw new ArgumentException($"sequence of {position + 1} positions exceeds the positional table ({maxPositions}); raise max_positions");
        var cache = KeyValueCache.For(state, 1, 1, heads, headSize, ScalarType.Float32);
        int source = (int)state.CrossKeys[0].shape[2];
        var attention = new float[blocks.Length * heads * source];
        var buffers = scratch.Value!;
        float[]? bias = null;
        if (relativeTable is not null)
        {
            // This position's bias over every cached key: head h, key k reads the bucket of distance position − k.
            bias = new float[heads * (position + 1)];
            for (int head = 0; head < heads; head++)
                for (int k = 0; k <= position; k++)
                    bias[head * (position + 1) + k] = relativeTable[bucketByDistance![position - k] * heads + head];
        }
        Tensor? hiddenRow = null;
        fixed (float* h = buffers.Hidden, qkv = buffers.Qkv, context = buffers.Context, y = buffers.Output, inner = buffers.Inner,
            weights = attention, pos = positions, outputs = buffers.Logits, relativeBias = bias)
        {
            float* e = embeddingRows + id * hidden;
            if (pos is null)
                for (int i = 0; i < hidden; i++) h[i] = e[i] * embeddingScale;
            else
            {
                float* p = pos + (long)position * hidden;
                for (int i = 0; i < hidden; i++) h[i] = e[i] * embeddingScale + p[i];
            }
            embeddingNorm?.Apply(h, h);
            StepPhases.Mark(StepPhase.Embedding);
            var team = teams?.Value;
            var backend = new Managed
            {
                Step = this, Team = team, State = state, Cache = cache, Position = position, Source = source, SourceLength = state.SourceLengths![0],
                H = h, Y = y, Qkv = qkv, Context = context, Hidden = inner, Weights = weights, Bias = relativeBias,
            };
            float* last = TransformerStep.Decoder<Managed, Row>(ref backend, spec, new Row(h)).P;
            if (output is not null) Multiply(output, last, outputs, null, team);
            else
            {
                hiddenRow = empty(1, hidden);
                new ReadOnlySpan<float>(last, hidden).CopyTo(RowKernels.Floats(hiddenRow));
            }
        }
        cache.Wrote(position + 1);
        Tensor result;
        if (output is not null)
        {
            result = empty(1, 1, output.Out);
            buffers.Logits.AsSpan(0, output.Out).CopyTo(RowKernels.Floats(result));
        }
        else
        {
            using var hidden1 = hiddenRow!;
            using var flat = packedOutput.Forward(hidden1);
            result = flat.view(1, 1, packedOutput.OutFeatures);
        }
        StepPhases.Mark(StepPhase.OutputProjection);
        return (result, state with
        {
            Steps = position + 1, Cache = cache, SelfKeys = noViews, SelfValues = noViews, ManagedStep = true,
            CrossAttention = new Weights(attention, blocks.Length, heads, source),
        });
    }

    /// <summary>A managed row of activations: the value type of the row step's <see cref="IStepBackend{TValue}"/>.</summary>
    private readonly struct Row(float* p)
    {
        public readonly float* P = p;
    }

    /// <summary>One thread's working rows (a step uses them only while it runs).</summary>
    private sealed class Scratch(int padded, int width, int logits)
    {
        public readonly float[] Hidden = new float[padded], Qkv = new float[padded], Context = new float[width], Output = new float[padded],
            Inner = new float[padded], Logits = new float[logits];
    }

    /// <summary>
    /// The step's operations on one managed row (<see cref="IStepBackend{TValue}"/>): products through the row products
    /// (panels or the plan's packed layers), attention over the cache's buffers in place. The running row alternates
    /// between two buffers, <see cref="H"/> and <see cref="Y"/>: a product adds its residual as it stores into the other
    /// one, and a norm writes the other one too, so nothing is copied.
    /// </summary>
    private struct Managed : IStepBackend<Row>
    {
        public TransformerRowStep Step;
        public RowTeam? Team;
        public TransformerState State;
        public KeyValueCache Cache;
        public int Position, Source, SourceLength;
        public float* H, Y, Qkv, Context, Hidden, Weights, Bias;

        private readonly float* Other(Row x) => x.P == H ? Y : H;

        public readonly Row Norm(int layer, SubLayer sub, Row x)
        {
            float* to = Other(x);
            Step.blocks[layer].Norm(sub).Apply(x.P, to);
            return new Row(to);
        }

        public readonly Row Inner(int layer, SubLayer sub, Row x)
        {
            var b = Step.blocks[layer];
            int heads = Step.heads, headSize = Step.headSize, width = Step.attentionWidth;
            switch (sub)
            {
                case SubLayer.Self:
                {
                    // This position's key and value join the cache; its query attends over all of it.
                    Multiply(b.SelfQkv, x.P, Qkv, null, Team);
                    StepPhases.Mark(StepPhase.SelfQkv);
                    Cache.Rows(layer, out float* keys, out float* values);
                    int capacity = (int)Cache.Capacity;
                    for (int head = 0; head < heads; head++)
                    {
                        long at = ((long)head * capacity + Position) * headSize;
                        new ReadOnlySpan<float>(Qkv + width + head * headSize, headSize).CopyTo(new Span<float>(keys + at, headSize));
                        new ReadOnlySpan<float>(Qkv + 2 * width + head * headSize, headSize).CopyTo(new Span<float>(values + at, headSize));
                    }
                    RowKernels.AttendOne(Qkv, 0, keys, values, 1, heads, headSize, capacity, [Position + 1], Context, null, Bias, Position + 1);
                    return new Row(Context);
                }
                case SubLayer.Cross:
                {
                    Multiply(b.CrossQuery, x.P, Qkv, null, Team);
                    StepPhases.Mark(StepPhase.CrossQuery);
                    // The state's cross-attention keys and values, read in place (bfloat16 ones widened as they are read).
                    Tensor crossKeys = State.CrossKeys[layer], crossValues = State.CrossValues[layer];
                    float* weights = Weights + (long)layer * heads * Source;
                    fixed (byte* k = crossKeys.bytes, v = crossValues.bytes)
                    {
                        if (crossKeys.dtype == ScalarType.BFloat16)
                            RowKernels.AttendOne(Qkv, 0, (ushort*)k, (ushort*)v, 1, heads, headSize, Source, [SourceLength], Context, weights);
                        else
                            RowKernels.AttendOne(Qkv, 0, (float*)k, (float*)v, 1, heads, headSize, Source, [SourceLength], Context, weights);
                    }
                    return new Row(Context);
                }
                default:
                    Multiply(b.Ffn1, x.P, Hidden, null, Team);
                    StepPhases.Mark(StepPhase.Ffn1);
                    Step.feedForward.Hidden(Hidden, Step.ffnSize);
                    return new Row(Hidden);
            }
        }

        public readonly Row Project(int layer, SubLayer sub, Row inner, Row residual)
        {
            float* to = Other(residual);
            Multiply(Step.blocks[layer].Output(sub), inner.P, to, residual.P, Team);
            return new Row(to);
        }

        public readonly Row FinalNorm(Row x)
        {
            float* to = Other(x);
            Step.finalNorm!.Apply(x.P, to);
            return new Row(to);
        }
    }

    /// <summary>Frees the packed copies.</summary>
    public void Dispose()
    {
        foreach (var b in blocks) b.Dispose();
        output?.Dispose();
        embedding.Dispose();
        scratch.Dispose();
        if (teams is not null)
        {
            foreach (var team in teams.Values) team.Dispose();
            teams.Dispose();
        }
    }

    /// <summary>
    /// A product of the plan's packed layer (any compute type) on one managed row: the row goes in as a (1, in) tensor and
    /// the product comes back into managed memory. Used where managed panels do not apply (reduced types; decoder layers
    /// larger than the cache), so that the rest of the step still runs without libtorch.
    /// </summary>
    private sealed class PackedRowProduct(PackedLinear linear) : IRowProduct
    {
        public int Out { get; } = (int)linear.OutFeatures;

        public int PaddedOut => Out;

        public void Forward(float* x, float* y, float* residual)
        {
            using var input = empty(1, linear.InFeatures);
            new ReadOnlySpan<float>(x, (int)linear.InFeatures).CopyTo(RowKernels.Floats(input));
            using var product = linear.Forward(input);
            var result = RowKernels.Floats(product);
            if (residual is null) result.CopyTo(new Span<float>(y, Out));
            else
                for (int o = 0; o < Out; o++) y[o] = result[o] + residual[o];
        }

        public void Dispose() { } // the plan owns the layer
    }

    /// <summary>One step's cross-attention weights as the (1, heads, 1, source) tensors of a libtorch step, made when read.</summary>
    private sealed class Weights(float[] values, int layers, int heads, int source) : IReadOnlyList<Tensor>
    {
        public int Count => layers;

        public Tensor this[int index]
        {
            get
            {
                ArgumentOutOfRangeException.ThrowIfNegative(index);
                ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, layers);
                var t = empty(1, heads, 1, source);
                values.AsSpan(index * heads * source, heads * source).CopyTo(RowKernels.Floats(t));
                return t;
            }
        }

        public IEnumerator<Tensor> GetEnumerator()
        {
            for (int i = 0; i < layers; i++) yield return this[i];
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
