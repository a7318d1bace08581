namespace Transduce.Models.Transformer;

/// <summary>The sub-layers of a Transformer block, in the order a decoder block runs them (an encoder block has no <see cref="Cross"/>).</summary>
internal enum SubLayer
{
    /// <summary>Self-attention (causal in the decoder, over the cache and the new positions).</summary>
    Self,

    /// <summary>Attention over the encoder's output.</summary>
    Cross,

    /// <summary>The position-wise feed-forward network.</summary>
    FeedForward,
}

/// <summary>
/// What a backend computes for <see cref="TransformerStep"/>, on its own kind of value <typeparamref name="TValue"/>
/// (a libtorch tensor of rows, a managed row): every operation of a block except their order, which the step owns.
/// Implemented by the batched plans over packed libtorch products (<see cref="TransformerDecodePlan"/>,
/// <see cref="TransformerEncodePlan"/>, any batch and compute type) and by the managed row step
/// (<see cref="TransformerRowStep"/>, one sentence). A backend is a struct, so that each instantiation of the step is
/// compiled for it with no interface dispatch.
/// </summary>
internal interface IStepBackend<TValue>
{
    /// <summary>The sub-layer's norm of <paramref name="x"/> (layer <paramref name="layer"/>).</summary>
    TValue Norm(int layer, SubLayer sub, TValue x);

    /// <summary>
    /// The sub-layer's function before its output product: attention's context (self: the new positions' keys and values
    /// join the cache first), or the feed-forward network's hidden values f(W₁x) (⊙ Vx when gated).
    /// </summary>
    TValue Inner(int layer, SubLayer sub, TValue x);

    /// <summary>The sub-layer's output product of <paramref name="inner"/>, plus <paramref name="residual"/>.</summary>
    TValue Project(int layer, SubLayer sub, TValue inner, TValue residual);

    /// <summary>The norm after the last block.</summary>
    TValue FinalNorm(TValue x);
}

/// <summary>
/// The Transformer's layer order, written once for every fast path: each sub-layer as a residual connection around its
/// function, pre-norm (x + f(N(x))) or post-norm (N(x + f(x))) as the spec says, blocks in order, then the final norm.
/// The backends (<see cref="IStepBackend{TValue}"/>) decide how each operation runs; the training modules
/// (<see cref="TransformerEncoderBlock"/>, <see cref="TransformerDecoderBlock"/>) are the independent definition the
/// tests hold both backends to.
/// </summary>
internal static class TransformerStep
{
    private static readonly SubLayer[] DecoderBlock = [SubLayer.Self, SubLayer.Cross, SubLayer.FeedForward];
    private static readonly SubLayer[] EncoderBlock = [SubLayer.Self, SubLayer.FeedForward];

    /// <summary>The decoder's blocks and final norm over embedded positions <paramref name="x"/>; returns the decoder's output (before the output projection).</summary>
    public static TValue Decoder<TBackend, TValue>(ref TBackend backend, TransformerSpec spec, TValue x) where TBackend : struct, IStepBackend<TValue> =>
        Blocks<TBackend, TValue>(ref backend, spec, x, spec.DecoderLayers, DecoderBlock, spec.FinalDecoderNorm);

    /// <summary>The encoder's blocks and final norm over embedded positions <paramref name="x"/>.</summary>
    public static TValue Encoder<TBackend, TValue>(ref TBackend backend, TransformerSpec spec, TValue x) where TBackend : struct, IStepBackend<TValue> =>
        Blocks<TBackend, TValue>(ref backend, spec, x, spec.EncoderLayers, EncoderBlock, spec.FinalEncoderNorm);

    private static TValue Blocks<TBackend, TValue>(ref TBackend backend, TransformerSpec spec, TValue h, int layers, SubLayer[] block, bool finalNorm)
        where TBackend : struct, IStepBackend<TValue>
    {
        for (int layer = 0; layer < layers; layer++)
            foreach (var sub in block)
            {
                // Pre-norm: the sub-layer reads N(h) and adds to h; post-norm: it reads h and the sum is normalised.
                // The marks time a decoder step's phases when the benchmarks ask (StepPhases; nothing otherwise).
                var phases = StepPhases.Of(sub);
                var x = spec.PreNorm ? Marked(backend.Norm(layer, sub, h), StepPhase.Norm) : h;
                var inner = Marked(backend.Inner(layer, sub, x), phases.Inner);
                var sum = Marked(backend.Project(layer, sub, inner, h), phases.Output);
                h = spec.PreNorm ? sum : Marked(backend.Norm(layer, sub, sum), StepPhase.Norm);
            }
        return finalNorm ? Marked(backend.FinalNorm(h), StepPhase.Norm) : h;
    }

    private static TValue Marked<TValue>(TValue value, StepPhase phase)
    {
        StepPhases.Mark(phase);
        return value;
    }
}
