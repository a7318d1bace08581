using Transduce.Architecture;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>State of <see cref="RecomputePrefixDecoder{TInner}"/>: the encoder's output and every target token so far.</summary>
/// <param name="Encoded">The encoder's output.</param>
/// <param name="SourceValidLengths">Source lengths.</param>
/// <param name="Prefix">Target tokens fed so far, (batch, steps); null before the first step.</param>
internal sealed record PrefixState(EncoderOutput Encoded, Tensor SourceValidLengths, Tensor? Prefix) : IDecoderState
{
    /// <inheritdoc />
    public IEnumerable<Tensor> Tensors =>
        new[] { Encoded.Outputs, SourceValidLengths }.Concat(Encoded.FinalState is { } f ? [f] : []).Concat(Prefix is { } p ? [p] : []);
}

/// <summary>
/// Decodes the way d2l's Transformer chapter does at prediction time: no state is carried between steps; every step
/// re-runs the wrapped decoder over the whole target prefix from a fresh <see cref="Decoder{TState}.InitState"/>.
/// It gives the same logits as incremental decoding at a cost that grows with the prefix — the baseline that
/// incremental decoding is measured against, and a check that it is exact.
/// </summary>
/// <typeparam name="TInner">The wrapped decoder's state.</typeparam>
internal sealed class RecomputePrefixDecoder<TInner> : Decoder<PrefixState> where TInner : IDecoderState
{
    private readonly Decoder<TInner> inner;

    /// <summary>Wraps <paramref name="inner"/> (not owned: disposing this decoder leaves it alone).</summary>
    public RecomputePrefixDecoder(Decoder<TInner> inner) : base(nameof(RecomputePrefixDecoder<TInner>)) => this.inner = inner;

    /// <inheritdoc />
    public override PrefixState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths) => new(encoderOutput, sourceValidLengths, null);

    /// <inheritdoc />
    public override PrefixState SelectRows(PrefixState state, Tensor batchIndices) => new(
        new EncoderOutput(state.Encoded.Outputs.index_select(0, batchIndices), state.Encoded.FinalState?.index_select(1, batchIndices)),
        state.SourceValidLengths.index_select(0, batchIndices),
        state.Prefix?.index_select(0, batchIndices));

    /// <inheritdoc />
    public override (Tensor Logits, PrefixState State) forward(Tensor target, PrefixState state)
    {
        var prefix = state.Prefix is null ? target.alias() : cat([state.Prefix, target], 1);
        using var scope = NewDisposeScope();
        var fresh = inner.InitState(state.Encoded, state.SourceValidLengths);
        var (logits, _) = inner.call(prefix, fresh);
        var last = logits.narrow(1, prefix.shape[1] - target.shape[1], target.shape[1]).MoveToOuterDisposeScope();
        return (last, state with { Prefix = prefix });
    }
}

/// <summary>Builds the recompute-the-prefix twin of a model (same encoder and weights, <see cref="RecomputePrefixDecoder{TInner}"/>).</summary>
internal static class RecomputePrefix
{
    /// <summary>A view of <paramref name="model"/> that decodes by recomputing the prefix at every step. It shares the model's modules: do not dispose it.</summary>
    public static EncoderDecoder Of(EncoderDecoder model) => model.Apply(new Wrap());

    private sealed class Wrap : IEncoderDecoderFunc<EncoderDecoder>
    {
        public EncoderDecoder Invoke<TState>(EncoderDecoder<TState> model) where TState : IDecoderState =>
            new EncoderDecoder<PrefixState>("recompute-prefix", model.Encoder, new RecomputePrefixDecoder<TState>(model.Decoder));
    }
}
