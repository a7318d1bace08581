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
/// 0.21–0.23 against 0.37–0.48 ms a step, bfloat16 0.16–0.17 against 0.54–0.57). Otherwise (larger layers, which stream
/// from memory where libtorch's two threads win; int8) each product is the plan's own packed layer on the one row, and
/// the rest still runs here (base-cpu int8 steps 15–25 % faster, OPUS-MT size 3–7 %; BENCHMARKS.md, issue 17, third
/// pass). Panels cost as many bytes as the weights they cover, in the compute type.
/// </para>
/// </summary>
internal sealed unsafe class TransformerRowStep : IDisposable
{
    /// <summary>Largest size of the decoder layers' step weights, in the compute type, that the row step multiplies itself.</summary>
    public const long MaxBlockBytes = 24L << 20;

    /// <summary>Largest output layer, in the compute type, that the row step multiplies itself.</summary>
    public const long MaxOutputBytes = 16L << 20;

    private sealed class Norm(LayerNorm norm)
    {
        private readonly float[] gamma = norm.weight is { } w ? RowKernels.Copy(w) : Enumerable.Repeat(1f, (int)norm.normalized_shape[^1]).ToArray();
        private readonly float[] beta = norm.bias is { } b ? RowKernels.Copy(b) : new float[norm.normalized_shape[^1]];
        private readonly float eps = (float)norm.eps;

        public void Apply(float* x, float* y)
        {
            fixed (float* g = gamma, b = beta) RowKernels.LayerNorm(x, y, g, b, gamma.Length, eps);
        }
    }

    private sealed record Block(Norm Norm1, Norm Norm2, Norm Norm3, IRowProduct SelfQkv, IRowProduct SelfOut, IRowProduct CrossQuery,
        IRowProduct CrossOut, IRowProduct Ffn1, IRowProduct Ffn2) : IDisposable
    {
        public IEnumerable<IRowProduct> Linears => [SelfQkv, SelfOut, CrossQuery, CrossOut, Ffn1, Ffn2];

        public void Dispose()
        {
            foreach (var l in Linears) l.Dispose();
        }
    }

    private readonly Block[] blocks;
    private readonly Norm? finalNorm;
    private readonly RowLinear? output;        // null: the plan's packed output layer multiplies
    private readonly PackedLinear packedOutput;
    private readonly Tensor embedding;          // an alias of the target embedding's weight, kept alive for its memory
    private readonly float* embeddingRows;
    private readonly long vocabulary;
    private readonly float embeddingScale;
    private readonly float[] positions;         // (max positions, hidden)
    private readonly int maxPositions, heads, headSize, hidden, ffnSize;
    private readonly bool preNorm;
    private readonly string activation;

    private TransformerRowStep(TransformerDecodePlan plan, IReadOnlyList<TransformerDecoderBlock> modules, Linear dense, LayerNorm? finalNorm,
        Embedding embedding, Tensor positionTable, double embeddingScale, bool preNorm, string activation, bool managedProducts)
    {
        (heads, long size, long width, double queryScale) = PackedBlockOps.Geometry(modules[0].SelfAttention);
        (headSize, hidden) = ((int)size, (int)width);
        this.preNorm = preNorm;
        this.activation = activation;
        this.embeddingScale = (float)embeddingScale;
        packedOutput = plan.Output;
        bool half = plan.ComputeType == ComputeType.BFloat16;
        blocks = modules.Zip(plan.Blocks, (m, packed) => managedProducts
            ? new Block(new Norm(m.Norm1), new Norm(m.Norm2), new Norm(m.Norm3),
                RowLinear.Pack([m.SelfAttention.Query, m.SelfAttention.Key, m.SelfAttention.Value], [queryScale, 1, 1], half),
                RowLinear.Pack([m.SelfAttention.Output], bfloat16: half),
                RowLinear.Pack([m.CrossAttention.Query], [queryScale], half),
                RowLinear.Pack([m.CrossAttention.Output], bfloat16: half),
                RowLinear.Pack([m.Ffn.First], bfloat16: half),
                RowLinear.Pack([m.Ffn.Second], bfloat16: half))
            : new Block(new Norm(m.Norm1), new Norm(m.Norm2), new Norm(m.Norm3),
                new PackedRowProduct(packed.SelfQkv), new PackedRowProduct(packed.SelfOut), new PackedRowProduct(packed.CrossQuery),
                new PackedRowProduct(packed.CrossOut), new PackedRowProduct(packed.Ffn1), new PackedRowProduct(packed.Ffn2))).ToArray();
        ffnSize = blocks[0].Ffn1.Out;
        this.finalNorm = finalNorm is null ? null : new Norm(finalNorm);
        if (managedProducts && dense.weight!.NumberOfElements * (half ? sizeof(ushort) : sizeof(float)) <= MaxOutputBytes)
            output = RowLinear.Pack([(dense.weight!, dense.bias)], bfloat16: half);
        this.embedding = embedding.weight!.detach().alias();
        embeddingRows = RowKernels.Pointer(this.embedding);
        vocabulary = this.embedding.shape[0];
        using var table = positionTable.reshape(-1, hidden);
        maxPositions = (int)table.shape[0];
        positions = RowKernels.Copy(table);
    }

    /// <summary>
    /// The row step of <paramref name="plan"/>'s decoder, or null where it does not apply: no AVX2, an activation without a
    /// managed form, weights not float32 on the CPU. Its products are managed panels for a float32 or bfloat16 plan whose
    /// decoder layers fit <see cref="MaxBlockBytes"/> in that type (panels need AVX-512), else the plan's own packed
    /// layers (int8, larger layers, AVX2 only).
    /// </summary>
    public static TransformerRowStep? TryCreate(TransformerDecodePlan plan, IReadOnlyList<TransformerDecoderBlock> modules, Linear dense,
        LayerNorm? finalNorm, Embedding embedding, Tensor positionTable, double embeddingScale, bool preNorm, string activation)
    {
        if (!RowKernels.Supported || !RowKernels.CanActivate(activation) || modules.Count == 0 || modules.Count != plan.Blocks.Count) return null;
        var weights = modules.SelectMany(m => new[] { m.SelfAttention.Query, m.SelfAttention.Key, m.SelfAttention.Value, m.SelfAttention.Output,
            m.CrossAttention.Query, m.CrossAttention.Output, m.Ffn.First, m.Ffn.Second }).Select(p => p.Weight).ToList();
        if (weights.Append(embedding.weight!).Any(w => w.dtype != ScalarType.Float32 || w.device_type != DeviceType.CPU)) return null;
        long elements = weights.Sum(w => w.NumberOfElements);
        bool managedProducts = plan.ComputeType switch
        {
            ComputeType.Float32 => RowLinear.Supported && elements * sizeof(float) <= MaxBlockBytes,
            ComputeType.BFloat16 => RowLinear.Supported && elements * sizeof(ushort) <= MaxBlockBytes,
            _ => false,
        };
        using var scope = NewDisposeScope();
        return new TransformerRowStep(plan, modules, dense, finalNorm, embedding, positionTable, embeddingScale, preNorm, activation, managedProducts);
    }

    /// <summary>Whether the decoder layers multiply through managed panels (<see cref="RowLinear"/>) rather than the plan's packed layers.</summary>
    internal bool ManagedProducts => blocks.Any(b => b.Linears.OfType<RowLinear>().Any());

    /// <summary>Bytes of packed copies (the embedding is read in place).</summary>
    public long Bytes => blocks.Sum(b => b.Linears.OfType<RowLinear>().Sum(l => l.Bytes)) + (output?.Bytes ?? 0) + positions.Length * sizeof(float);

    /// <summary>Whether <paramref name="state"/> can take a row step: a fresh state of one sentence, or one the row step made.</summary>
    public static bool Accepts(TransformerState state, long rows) =>
        rows == 1 && (state.Row is not null || (state.Steps == 0 && state.SelfKeys.All(k => k is null)));

    /// <summary>
    /// Feeds <paramref name="token"/> (1, 1) at position <c>state.Steps</c>; returns the logits (1, 1, vocabulary) and the
    /// next state, whose self-attention cache lives in managed memory (<see cref="Materialize"/> turns it into tensors).
    /// </summary>
    public (Tensor Logits, TransformerState State) Step(Tensor token, TransformerState state)
    {
        long id = token.item<long>();
        if (id < 0 || id >= vocabulary) throw new ArgumentOutOfRangeException(nameof(token), id, $"token id outside the vocabulary of {vocabulary}");
        int position = (int)state.Steps;
        if (position >= maxPositions)
            throw new ArgumentException($"sequence of {position + 1} positions exceeds the positional table ({maxPositions}); raise max_positions");
        var row = RowDecoding.For(state, this);
        row.Reserve(position + 1);
        var attention = new float[blocks.Length * heads * row.SourceStride];
        float[] logits = row.Logits;
        fixed (float* h = row.Hidden, a = row.Normed, qkv = row.Qkv, context = row.Context, y = row.Output, inner = row.Inner,
            weights = attention, pos = positions, outputs = logits)
        {
            float* e = embeddingRows + id * hidden, p = pos + (long)position * hidden;
            for (int i = 0; i < hidden; i++) h[i] = e[i] * embeddingScale + p[i];
            for (int l = 0; l < blocks.Length; l++)
            {
                var b = blocks[l];
                // Self-attention: this position's key and value join the cache, its query attends over all of it.
                float* x = Normed(h, a, b.Norm1);
                b.SelfQkv.Forward(x, qkv, null);
                fixed (float* keys = row.Keys[l], values = row.Values[l])
                {
                    for (int head = 0; head < heads; head++)
                    {
                        long at = ((long)head * row.Capacity + position) * headSize;
                        new ReadOnlySpan<float>(qkv + hidden + head * headSize, headSize).CopyTo(new Span<float>(keys + at, headSize));
                        new ReadOnlySpan<float>(qkv + 2 * hidden + head * headSize, headSize).CopyTo(new Span<float>(values + at, headSize));
                    }
                    RowKernels.AttendOne(qkv, 0, keys, values, 1, heads, headSize, row.Capacity, [position + 1], context, null);
                }
                AddAndNorm(h, context, b.SelfOut, b.Norm1, y);
                // Cross-attention over the source's keys and values.
                x = Normed(h, a, b.Norm2);
                b.CrossQuery.Forward(x, qkv, null);
                fixed (float* keys = row.CrossKeys[l], values = row.CrossValues[l])
                    RowKernels.AttendOne(qkv, 0, keys, values, 1, heads, headSize, row.SourceStride, [row.SourceLength], context,
                        weights + (long)l * heads * row.SourceStride);
                AddAndNorm(h, context, b.CrossOut, b.Norm2, y);
                // Feed-forward.
                x = Normed(h, a, b.Norm3);
                b.Ffn1.Forward(x, inner, null);
                RowKernels.Activate(inner, ffnSize, activation);
                AddAndNorm(h, inner, b.Ffn2, b.Norm3, y);
            }
            finalNorm?.Apply(h, h);
            output?.Forward(h, outputs, null);
        }
        Tensor result;
        if (output is not null)
        {
            result = empty(1, 1, output.Out);
            logits.AsSpan(0, output.Out).CopyTo(RowKernels.Floats(result));
        }
        else
        {
            using var hidden1 = empty(1, hidden);
            row.Hidden.AsSpan().CopyTo(RowKernels.Floats(hidden1));
            using var flat = packedOutput.Forward(hidden1);
            result = flat.view(1, 1, packedOutput.OutFeatures);
        }
        row.Length = position + 1;
        return (result, state with { Steps = position + 1, Row = row, CrossAttention = new Weights(attention, blocks.Length, heads, row.SourceStride) });
    }

    // Pre-norm: the sub-layer reads LN(h); post-norm: h itself.
    private float* Normed(float* h, float* a, Norm norm)
    {
        if (!preNorm) return h;
        norm.Apply(h, a);
        return a;
    }

    // Pre-norm: h += f(x); post-norm: h = LN(h + f(x)). The product adds the residual as it stores.
    private void AddAndNorm(float* h, float* x, IRowProduct f, Norm norm, float* y)
    {
        f.Forward(x, y, h);
        if (preNorm) new ReadOnlySpan<float>(y, hidden).CopyTo(new Span<float>(h, hidden));
        else norm.Apply(y, h);
    }

    /// <summary>
    /// <paramref name="state"/> with its managed self-attention cache (if any) turned into the (1, heads, steps, head size)
    /// tensors the libtorch path grows; a state without one is returned as it is.
    /// </summary>
    public static TransformerState Materialize(TransformerState state)
    {
        if (state.Row is not { } row) return state;
        int steps = (int)state.Steps, layers = row.Keys.Length;
        var keys = new Tensor?[layers];
        var values = new Tensor?[layers];
        for (int l = 0; l < layers; l++)
        {
            keys[l] = row.Cache(row.Keys[l], steps);
            values[l] = row.Cache(row.Values[l], steps);
        }
        return state with { SelfKeys = keys, SelfValues = values, Row = null };
    }

    /// <summary>Frees the packed copies.</summary>
    public void Dispose()
    {
        foreach (var b in blocks) b.Dispose();
        output?.Dispose();
        embedding.Dispose();
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

    /// <summary>
    /// The managed part of one sentence's decoding state: each layer's self-attention keys and values (heads, capacity,
    /// head size), the cross-attention keys and values copied once from the state's tensors, and scratch rows. States
    /// share it as decoding advances; stepping again from an older state copies it first (see <see cref="For"/>).
    /// </summary>
    internal sealed class RowDecoding
    {
        public required float[][] Keys, Values, CrossKeys, CrossValues;
        public required int Capacity, SourceStride, SourceLength, HeadSize, Heads;
        public required float[] Hidden, Normed, Qkv, Context, Output, Inner, Logits;

        /// <summary>Positions written so far (by the newest state that shares this cache).</summary>
        public int Length { get; set; }

        /// <summary>The cache to step from <paramref name="state"/> with: its own, a copy (an older state stepped again), or a new one.</summary>
        public static RowDecoding For(TransformerState state, TransformerRowStep step)
        {
            if (state.Row is { } row)
                return row.Length == state.Steps ? row : row.Clone((int)state.Steps);
            int layers = step.blocks.Length, source = (int)state.CrossKeys[0].shape[2];
            long valid;
            using (var count = state.SourceMask.sum()) valid = count.item<long>();
            int capacity = 16, width = step.hidden, padded = Math.Max(Math.Max(step.blocks[0].SelfQkv.PaddedOut, step.blocks[0].Ffn1.PaddedOut), step.blocks[0].SelfOut.PaddedOut);
            return new RowDecoding
            {
                Keys = Enumerable.Range(0, layers).Select(_ => new float[step.heads * capacity * step.headSize]).ToArray(),
                Values = Enumerable.Range(0, layers).Select(_ => new float[step.heads * capacity * step.headSize]).ToArray(),
                CrossKeys = state.CrossKeys.Select(RowKernels.Copy).ToArray(),
                CrossValues = state.CrossValues.Select(RowKernels.Copy).ToArray(),
                Capacity = capacity, SourceStride = source, SourceLength = (int)valid, HeadSize = step.headSize, Heads = step.heads,
                Hidden = new float[width], Normed = new float[width], Qkv = new float[padded], Context = new float[width],
                Output = new float[padded], Inner = new float[padded],
                Logits = new float[step.output?.PaddedOut ?? 0],
            };
        }

        /// <summary>Room for <paramref name="positions"/> cached positions (doubling).</summary>
        public void Reserve(int positions)
        {
            if (positions <= Capacity) return;
            int capacity = Math.Max(positions, 2 * Capacity);
            Keys = Keys.Select(k => Regrow(k, capacity, Length)).ToArray();
            Values = Values.Select(v => Regrow(v, capacity, Length)).ToArray();
            Capacity = capacity;
        }

        private float[] Regrow(float[] cache, int capacity, int keep)
        {
            var grown = new float[Heads * capacity * HeadSize];
            for (int h = 0; h < Heads; h++)
                Array.Copy(cache, (long)h * Capacity * HeadSize, grown, (long)h * capacity * HeadSize, (long)keep * HeadSize);
            return grown;
        }

        private RowDecoding Clone(int keep) => new()
        {
            Keys = Keys.Select(k => (float[])k.Clone()).ToArray(),
            Values = Values.Select(v => (float[])v.Clone()).ToArray(),
            CrossKeys = CrossKeys, CrossValues = CrossValues,
            Capacity = Capacity, SourceStride = SourceStride, SourceLength = SourceLength, HeadSize = HeadSize, Heads = Heads,
            Hidden = new float[Hidden.Length], Normed = new float[Normed.Length], Qkv = new float[Qkv.Length], Context = new float[Context.Length],
            Output = new float[Output.Length], Inner = new float[Inner.Length], Logits = new float[Logits.Length],
            Length = keep,
        };

        /// <summary>The first <paramref name="steps"/> cached positions of <paramref name="cache"/> as a (1, heads, steps, head size) tensor.</summary>
        public Tensor Cache(float[] cache, int steps)
        {
            var t = empty(1, Heads, steps, HeadSize);
            var memory = RowKernels.Floats(t);
            for (int h = 0; h < Heads; h++)
                cache.AsSpan(h * Capacity * HeadSize, steps * HeadSize).CopyTo(memory[(h * steps * HeadSize)..]);
            return t;
        }
    }
}
