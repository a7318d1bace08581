using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Gru;

/// <summary>
/// The eval-mode single-step path of <see cref="GruDecoder"/>: the same GRU cell as libtorch's
/// (r = σ(Wᵢᵣx + bᵢᵣ + Wₕᵣh + bₕᵣ), z likewise, n = tanh(Wᵢₙx + bᵢₙ + r ⊙ (Wₕₙh + bₕₙ)), h′ = (h − n) ⊙ z + n, in
/// libtorch's order of operations), with every product through <see cref="PackedLinear"/>. At one row libtorch's GRU
/// and <c>linear</c> run MKL's transposed matrix–vector kernel, which is slow on this project's AMD CPU; the 17.6k-word
/// output layer dominated the step. Rebuilt when the weights change, as <see cref="Transformer.TransformerDecodePlan"/>.
/// </summary>
internal sealed class GruDecodePlan : IPackedPlan
{
    private readonly (PackedLinear Input, PackedLinear Hidden)[] layers;
    private readonly PackedLinear output;
    private readonly long hidden;

    public GruDecodePlan(ComputeType type, IReadOnlyList<(Tensor Wih, Tensor Whh, Tensor? Bih, Tensor? Bhh)> weights,
        (Tensor Weight, Tensor? Bias) dense, long version)
    {
        Version = version;
        hidden = weights[0].Whh.shape[1];
        layers = weights.Select(w => (PackedLinear.Pack(type, [(w.Wih, w.Bih)]), PackedLinear.Pack(type, [(w.Whh, w.Bhh)]))).ToArray();
        output = PackedLinear.Pack(type, [dense]);
    }

    /// <summary>The sum of the weights' version counters when packed.</summary>
    public long Version { get; }

    /// <summary>One step for target (batch, 1): logits (batch, 1, vocabulary) and the new state.</summary>
    public (Tensor Logits, GruState State) Step(Embedding embedding, Tensor target, GruState state)
    {
        long batch = target.shape[0];
        using var scope = NewDisposeScope();
        var embedded = embedding.call(target).view(batch, -1);
        var x = cat([embedded, state.Context], 1);
        var next = new Tensor[layers.Length];
        for (int l = 0; l < layers.Length; l++)
        {
            var h = state.Hidden[l];
            x = next[l] = GruCell.Step(layers[l].Input.Forward(x), layers[l].Hidden.Forward(h), h);
        }
        var logits = output.Forward(x).view(batch, 1, output.OutFeatures);
        var hiddenState = stack(next, 0);
        return (logits.MoveToOuterDisposeScope(), state with { Hidden = hiddenState.MoveToOuterDisposeScope() });
    }

    public void Dispose()
    {
        foreach (var (i, h) in layers)
        {
            i.Dispose();
            h.Dispose();
        }
        output.Dispose();
    }
}
