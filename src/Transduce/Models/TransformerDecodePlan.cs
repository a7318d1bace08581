using System.Runtime.InteropServices;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>
/// The eval-mode decoding path of <see cref="TransformerDecoder"/>: the same network as the modules compute, with its
/// linear layers packed once (<see cref="PackedLinear"/>: transposed float32, bfloat16 or int8) and fewer native calls per
/// step — the self-attention's query, key and value projections are one product, 1/√d is folded into the query weights,
/// a single new position reshapes heads with views only, and nothing checks <c>training</c> or builds a mask it does not
/// need. Built lazily on the first eval-mode call; rebuilt when the weights change (their version counters, see
/// <see cref="WeightVersions"/>) or when the model leaves eval mode.
/// </summary>
internal sealed class TransformerDecodePlan : IDisposable
{
    private sealed record Block(LayerNorm Norm1, LayerNorm Norm2, LayerNorm Norm3, PackedLinear SelfQkv, PackedLinear SelfOut,
        PackedLinear CrossQuery, PackedLinear CrossKeyValue, PackedLinear CrossOut, PackedLinear Ffn1, PackedLinear Ffn2) : IDisposable
    {
        public void Dispose()
        {
            foreach (var p in new[] { SelfQkv, SelfOut, CrossQuery, CrossKeyValue, CrossOut, Ffn1, Ffn2 }) p.Dispose();
        }
    }

    /// <summary>False when the environment sets <c>TRANSDUCE_PACKED_DECODING=0</c>: decoding then runs the modules (for A/B measurements).</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable("TRANSDUCE_PACKED_DECODING") != "0";

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
        var first = modules[0].SelfAttention;
        heads = first.Heads;
        headSize = first.HeadSize;
        hidden = heads * headSize;
        double queryScale = 1.0 / Math.Sqrt(headSize);
        blocks = modules.Select(m =>
        {
            var s = m.SelfAttention;
            var c = m.CrossAttention;
            return new Block(m.Norm1, m.Norm2, m.Norm3,
                PackedLinear.Pack(type, [s.Query, s.Key, s.Value], [queryScale, 1, 1]),
                PackedLinear.Pack(type, [s.Output]),
                PackedLinear.Pack(type, [c.Query], [queryScale]),
                // Cross-attention keys/values are computed once per sentence over the whole source: float32 keeps them exact.
                PackedLinear.Pack(ComputeType.Float32, [c.Key, c.Value]),
                PackedLinear.Pack(type, [c.Output]),
                PackedLinear.Pack(type, [m.Ffn.First]),
                PackedLinear.Pack(type, [m.Ffn.Second]));
        }).ToArray();
        output = PackedLinear.Pack(type, [(dense.weight!, dense.bias)]);
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
            keys[i] = perm[0].contiguous();
            values[i] = perm[1].contiguous();
        }
        return (keys, values);
    }

    /// <summary>
    /// One decoder call on <paramref name="x"/>, the embedded and position-encoded target (batch, steps, hidden);
    /// returns the logits and each block's grown self-attention keys and values.
    /// </summary>
    public (Tensor Logits, Tensor[] Keys, Tensor[] Values) Forward(Tensor x, TransformerState state, Tensor? causal, LayerNorm? finalNorm)
    {
        long batch = x.shape[0], steps = x.shape[1];
        var keys = new Tensor[blocks.Length];
        var values = new Tensor[blocks.Length];
        var h = x.reshape(batch * steps, hidden);
        using var sourceMasked = state.SourceMask.logical_not();          // (batch, 1, 1, source): true = padding
        using var causalMasked = causal?.logical_not();
        for (int i = 0; i < blocks.Length; i++)
        {
            var b = blocks[i];
            // Self-attention over the cache and the new positions.
            var normed = preNorm ? b.Norm1.call(h) : h;
            var qkv = b.SelfQkv.Forward(normed);
            var (q, k, v) = SplitQkv(qkv, batch, steps);
            if (state.SelfKeys[i] is { } pastKeys)
            {
                k = cat([pastKeys, k], 2);
                v = cat([state.SelfValues[i]!, v], 2);
            }
            keys[i] = k;
            values[i] = v;
            h = Residual(h, b.SelfOut.Forward(Attend(q, k, v, causalMasked, batch, steps)), b.Norm1);
            // Cross-attention over the encoder output.
            normed = preNorm ? b.Norm2.call(h) : h;
            var cq = SplitHeads(b.CrossQuery.Forward(normed), batch, steps);
            h = Residual(h, b.CrossOut.Forward(Attend(cq, state.CrossKeys[i], state.CrossValues[i], sourceMasked, batch, steps)), b.Norm2);
            // Feed-forward.
            normed = preNorm ? b.Norm3.call(h) : h;
            var inner = b.Ffn1.Forward(normed);
            inner = activation switch
            {
                "gelu" => inner.gelu_(),
                "gelu_tanh" => PositionWiseFfn.GeluTanh(inner),
                "swish" => inner.silu_(),
                _ => inner.relu_(),
            };
            h = Residual(h, b.Ffn2.Forward(inner), b.Norm3);
        }
        if (finalNorm is not null) h = finalNorm.call(h);
        var logits = output.Forward(h);
        return (logits.view(batch, steps, output.OutFeatures), keys, values);
    }

    private Tensor Residual(Tensor x, Tensor y, LayerNorm norm) => preNorm ? y.add_(x) : norm.call(y.add_(x));

    /// <summary>(batch·steps, 3·hidden) → query, key, value as (batch, heads, steps, head size) views.</summary>
    private (Tensor Q, Tensor K, Tensor V) SplitQkv(Tensor qkv, long batch, long steps)
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

    private Tensor SplitHeads(Tensor x, long batch, long steps) =>
        steps == 1 ? x.view(batch, heads, 1, headSize) : x.view(batch, steps, heads, headSize).transpose(1, 2);

    /// <summary>Softmax attention of pre-scaled queries; masked (true) keys get −∞. Returns (batch·steps, hidden).</summary>
    private Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? masked, long batch, long steps)
    {
        var scores = q.matmul(k.transpose(-2, -1));
        if (masked is not null) scores.masked_fill_(masked, float.NegativeInfinity);
        var context = scores.softmax(-1).matmul(v);                        // (batch, heads, steps, head size)
        return steps == 1 ? context.view(batch, hidden) : context.transpose(1, 2).reshape(batch * steps, hidden);
    }

    public void Dispose()
    {
        foreach (var b in blocks) b.Dispose();
        output.Dispose();
    }
}

/// <summary>
/// Reads libtorch's version counter of a tensor (<c>Tensor._version</c> in Python: every in-place change bumps it), which
/// TorchSharp does not bind, from libtorch's exported operator entry point. A packed copy of weights compares the sum of
/// the counters to know whether the weights changed since it was packed. Where the entry point is missing (another
/// libtorch), <see cref="Sum"/> returns null and callers repack whenever they cannot tell.
/// </summary>
internal static class WeightVersions
{
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at4_ops8_version4callERKNS_6TensorE")]
    private static extern long Version(IntPtr tensor);

    private static bool available = true;

    /// <summary>The sum of the version counters of <paramref name="tensors"/>, or null when they cannot be read.</summary>
    public static long? Sum(IEnumerable<Tensor> tensors)
    {
        if (!available) return null;
        try
        {
            long sum = 0;
            foreach (var t in tensors) sum += Version(t.Handle);
            return sum;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            available = false;
            return null;
        }
    }
}
