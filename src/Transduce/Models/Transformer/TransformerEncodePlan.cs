using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// The eval-mode path of <see cref="TransformerEncoder"/>: the blocks' computation over products packed once in a
/// <see cref="ComputeType"/> (<see cref="PackedLinear"/>; float32 through oneDNN from a few rows up), with the query, key
/// and value projections as one product and 1/√d folded into the query weights, as <see cref="TransformerDecodePlan"/>
/// does for the decoder. The encoder runs once per source batch over every source position, so its products are large:
/// through MKL they were 33 ms of a 32-sentence batch of the <c>transformer-base-cpu</c> size, 16 ms packed
/// (BENCHMARKS.md, issue 17). Layer norms, softmax and residuals stay float32.
/// </summary>
internal sealed class TransformerEncodePlan : IPackedPlan
{
    private sealed record Block(nn.Module<Tensor, Tensor> Norm1, nn.Module<Tensor, Tensor> Norm2, PackedLinear Qkv, PackedLinear Out, PackedLinear Ffn1, PackedLinear Ffn2) : IDisposable
    {
        public void Dispose()
        {
            foreach (var p in new[] { Qkv, Out, Ffn1, Ffn2 }) p.Dispose();
        }
    }

    private readonly Block[] blocks;
    private readonly bool preNorm;
    private readonly FeedForwardKind feedForward;
    private readonly int heads;
    private readonly long hidden, headSize;

    public TransformerEncodePlan(ComputeType type, IReadOnlyList<TransformerEncoderBlock> modules, TransformerSpec spec, long version)
    {
        Version = version;
        preNorm = spec.PreNorm;
        feedForward = spec.FeedForward;
        (heads, headSize, hidden, double queryScale) = PackedBlockOps.Geometry(spec);
        blocks = modules.Select(m => new Block(m.Norm1, m.Norm2,
            PackedLinear.Pack(type, [m.Attention.Query, m.Attention.Key, m.Attention.Value], [queryScale, 1, 1]),
            PackedLinear.Pack(type, [m.Attention.Output]),
            PackedLinear.Pack(type, m.Ffn.FirstParts),
            PackedLinear.Pack(type, [m.Ffn.Second]))).ToArray();
    }

    /// <inheritdoc />
    public long Version { get; }

    /// <summary>
    /// The blocks over <paramref name="x"/>, the embedded and position-encoded source (batch, steps, hidden), whose keys
    /// <paramref name="mask"/> (batch, 1, 1, steps) keeps (true) or hides; returns (batch, steps, hidden).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor mask)
    {
        long batch = x.shape[0], steps = x.shape[1];
        using var scope = NewDisposeScope();
        using var masked = mask.logical_not();
        var h = x.reshape(batch * steps, hidden);
        foreach (var b in blocks)
        {
            var normed = preNorm ? b.Norm1.call(h) : h;
            var (q, k, v) = PackedBlockOps.SplitQkv(b.Qkv.Forward(normed), batch, steps, heads, headSize);
            h = PackedBlockOps.Residual(h, b.Out.Forward(PackedBlockOps.Attend(q, k, v, masked, out _)), b.Norm1, preNorm);
            normed = preNorm ? b.Norm2.call(h) : h;
            var inner = feedForward.Hidden(b.Ffn1.Forward(normed));
            h = PackedBlockOps.Residual(h, b.Ffn2.Forward(inner), b.Norm2, preNorm);
        }
        return h.view(batch, steps, hidden).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var b in blocks) b.Dispose();
    }
}
