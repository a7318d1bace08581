using static TorchSharp.torch;

namespace Transduce.Models.Gru;

/// <summary>
/// The eval-mode path of <see cref="GruEncoder"/>: libtorch's packed-sequence GRU computed over packed float32 products
/// (<see cref="PackedLinear"/>, oneDNN from a few rows up). Sentences are ordered longest first, as a packed sequence is,
/// so that at step t the sentences still running are the first rows: each layer's input projection is one product over
/// every position, and each step multiplies only the running rows' hidden state. Outputs past a sentence's end are zero
/// and its final state is the one at its last token, as <c>pad_packed_sequence</c> gives them. A 32-sentence batch of
/// 40 tokens: 15.6 ms through libtorch's GRU (MKL), 9.7 ms here; the encoder uses it from 4 sentences up (BENCHMARKS.md,
/// issue 17). Rebuilt when the weights change.
/// </summary>
internal sealed class GruEncodePlan : IPackedPlan
{
    private readonly (PackedLinear Input, PackedLinear Hidden)[] layers;
    private readonly long hidden;

    public GruEncodePlan(IReadOnlyList<(Tensor Wih, Tensor Whh, Tensor? Bih, Tensor? Bhh)> weights, long version)
    {
        Version = version;
        hidden = weights[0].Whh.shape[1];
        layers = weights.Select(w => (PackedLinear.Pack(ComputeType.Float32, [(w.Wih, w.Bih)]), PackedLinear.Pack(ComputeType.Float32, [(w.Whh, w.Bhh)]))).ToArray();
    }

    /// <inheritdoc />
    public long Version { get; }

    /// <summary>
    /// Encodes <paramref name="embedded"/> (batch, steps, embedding) whose rows hold <paramref name="lengths"/> tokens:
    /// returns the top layer's outputs (batch, steps, hidden) and every layer's final state (layers, batch, hidden).
    /// </summary>
    public (Tensor Outputs, Tensor FinalState) Forward(Tensor embedded, long[] lengths)
    {
        long batch = embedded.shape[0], steps = embedded.shape[1];
        using var scope = NewDisposeScope();
        // Longest first (a stable order, as pack_padded_sequence sorts), and the way back.
        var order = Enumerable.Range(0, (int)batch).OrderByDescending(i => lengths[i]).Select(i => (long)i).ToArray();
        var back = new long[batch];
        for (int i = 0; i < order.Length; i++) back[order[i]] = i;
        var sorted = order.Select(i => lengths[i]).ToArray();
        var x = embedded.index_select(0, tensor(order, device: embedded.device));
        var finals = new Tensor[layers.Length];
        for (int l = 0; l < layers.Length; l++)
        {
            var (input, hiddenProduct) = layers[l];
            var projected = input.Forward(x.reshape(batch * steps, x.shape[2])).view(batch, steps, 3 * hidden);
            var h = zeros(batch, hidden, device: x.device);
            var outputs = zeros(batch, steps, hidden, device: x.device);
            for (long t = 0; t < steps; t++)
            {
                long running = sorted.Count(n => n > t);
                if (running == 0) break;
                using var step = NewDisposeScope();
                var state = h.narrow(0, 0, running);
                var next = GruCell.Step(projected.narrow(0, 0, running).select(1, t), hiddenProduct.Forward(state), state);
                state.copy_(next);
                outputs.narrow(0, 0, running).select(1, t).copy_(next);
            }
            finals[l] = h;
            x = outputs;
        }
        using var backIndex = tensor(back, device: embedded.device);
        var result = x.index_select(0, backIndex);
        var final = stack(finals, 0).index_select(1, backIndex);
        return (result.MoveToOuterDisposeScope(), final.MoveToOuterDisposeScope());
    }

    public void Dispose()
    {
        foreach (var (i, h) in layers)
        {
            i.Dispose();
            h.Dispose();
        }
    }
}

/// <summary>libtorch's GRU cell, op for op, over precomputed input and hidden projections.</summary>
internal static class GruCell
{
    /// <summary>
    /// r = σ(gᵢᵣ + gₕᵣ), z = σ(gᵢ_z + gₕ_z), n = tanh(gᵢₙ + r ⊙ gₕₙ), h′ = (h − n) ⊙ z + n, for the input projection
    /// <paramref name="gi"/> and the hidden projection <paramref name="gh"/> (rows, 3 · hidden; gh is modified).
    /// </summary>
    public static Tensor Step(Tensor gi, Tensor gh, Tensor h)
    {
        var i = gi.chunk(3, 1);
        var g = gh.chunk(3, 1);
        var reset = i[0].add(g[0]).sigmoid_();
        var update = i[1].add(g[1]).sigmoid_();
        var candidate = i[2].add(g[2].mul_(reset)).tanh_();
        return h.sub(candidate).mul_(update).add_(candidate);
    }
}
