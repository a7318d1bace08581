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
        public nn.Module<Tensor, Tensor> Norm(SubLayer sub) => sub == SubLayer.Self ? Norm1 : Norm2;

        public PackedLinear Output(SubLayer sub) => sub == SubLayer.Self ? Out : Ffn2;

        public void Dispose()
        {
            foreach (var p in new[] { Qkv, Out, Ffn1, Ffn2 }) p.Dispose();
        }
    }

    private readonly Block[] blocks;
    private readonly TransformerSpec spec;
    private readonly FeedForwardKind feedForward;
    private readonly nn.Module<Tensor, Tensor>? finalNorm;
    private readonly int heads;
    private readonly long hidden, headSize;

    public TransformerEncodePlan(ComputeType type, IReadOnlyList<TransformerEncoderBlock> modules, nn.Module<Tensor, Tensor>? finalNorm,
        TransformerSpec spec, long version)
    {
        Version = version;
        this.spec = spec;
        this.finalNorm = finalNorm;
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
    /// The blocks and the final norm over <paramref name="x"/>, the embedded and position-encoded source (batch, steps,
    /// hidden), whose keys <paramref name="mask"/> (batch, 1, 1, steps) keeps (true) or hides; returns (batch, steps, hidden).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor mask, Tensor? positionBias = null)
    {
        long batch = x.shape[0], steps = x.shape[1];
        using var scope = NewDisposeScope();
        using var masked = mask.logical_not();
        var backend = new Batched { Plan = this, Batch = batch, Steps = steps, Masked = masked, PositionBias = positionBias };
        var h = TransformerStep.Encoder<Batched, Tensor>(ref backend, spec, x.reshape(batch * steps, hidden));
        return h.view(batch, steps, hidden).MoveToOuterDisposeScope();
    }

    /// <summary>The encoder block's operations on (rows, width) tensors through the packed layers (<see cref="IStepBackend{TValue}"/>).</summary>
    private struct Batched : IStepBackend<Tensor>
    {
        public TransformerEncodePlan Plan;
        public long Batch, Steps;
        public Tensor Masked;
        public Tensor? PositionBias;

        public readonly Tensor Norm(int layer, SubLayer sub, Tensor x) => Plan.blocks[layer].Norm(sub).call(x);

        public readonly Tensor Inner(int layer, SubLayer sub, Tensor x)
        {
            var b = Plan.blocks[layer];
            if (sub == SubLayer.FeedForward) return Plan.feedForward.Hidden(b.Ffn1.Forward(x));
            var (q, k, v) = PackedBlockOps.SplitQkv(b.Qkv.Forward(x), Batch, Steps, Plan.heads, Plan.headSize);
            return PackedBlockOps.Attend(q, k, v, Masked, out _, PositionBias);
        }

        public readonly Tensor Project(int layer, SubLayer sub, Tensor inner, Tensor residual) =>
            Plan.blocks[layer].Output(sub).Forward(inner).add_(residual);

        public readonly Tensor FinalNorm(Tensor x) => Plan.finalNorm!.call(x);
    }

    public void Dispose()
    {
        foreach (var b in blocks) b.Dispose();
    }
}
