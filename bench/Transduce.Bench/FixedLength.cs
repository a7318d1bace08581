using Transduce.Architecture;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>State of <see cref="FixedLengthDecoder{TInner}"/>: the wrapped state and how many target positions were fed.</summary>
internal sealed record FixedLengthState<TInner>(TInner Inner, long Steps) : IDecoderState where TInner : IDecoderState
{
    public IEnumerable<Tensor> Tensors => Inner.Tensors;
}

/// <summary>
/// Makes every output exactly as long as its limit: <c>&lt;eos&gt;</c> gets logit −∞ until <c>minTokens</c> tokens have been
/// emitted, and the search's own limit (set to the same number) ends it there. A benchmark on random weights thus decodes
/// a known number of steps per sentence, the same in the PyTorch twin (bench/pytorch/infer_twin.py, <c>FixedLength</c>).
/// The searches are untouched: the wrapper is a decoder like any other.
/// </summary>
internal sealed class FixedLengthDecoder<TInner> : Decoder<FixedLengthState<TInner>> where TInner : IDecoderState
{
    private readonly Decoder<TInner> inner;
    private readonly long eos, minTokens;

    public FixedLengthDecoder(Decoder<TInner> inner, int eos, int minTokens) : base(nameof(FixedLengthDecoder<TInner>))
    {
        this.inner = inner;
        this.eos = eos;
        this.minTokens = minTokens;
    }

    public override FixedLengthState<TInner> InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths) =>
        new(inner.InitState(encoderOutput, sourceValidLengths), 0);

    public override FixedLengthState<TInner> SelectRows(FixedLengthState<TInner> state, Tensor batchIndices) =>
        state with { Inner = inner.SelectRows(state.Inner, batchIndices) };

    public override (Tensor Logits, FixedLengthState<TInner> State) forward(Tensor target, FixedLengthState<TInner> state)
    {
        var (logits, next) = inner.call(target, state.Inner);
        long steps = target.shape[1];
        // Position p of this call predicts output token state.Steps + p + 1 (1-based): ban <eos> for those up to minTokens.
        long banned = Math.Clamp(minTokens - state.Steps, 0, steps);
        if (banned > 0)
        {
            using var rows = logits.narrow(1, 0, banned);
            using var eosColumn = rows.select(-1, eos);
            eosColumn.fill_(float.NegativeInfinity);
        }
        return (logits, new FixedLengthState<TInner>(next, state.Steps + steps));
    }
}

/// <summary>Wraps a model's decoder in <see cref="FixedLengthDecoder{TInner}"/>.</summary>
internal static class FixedLength
{
    /// <summary>A view of <paramref name="model"/> (sharing its modules: do not dispose it) whose outputs are never shorter than <paramref name="minTokens"/>.</summary>
    public static EncoderDecoder Of(EncoderDecoder model, int eos, int minTokens) => model.Apply(new Wrap(eos, minTokens));

    private sealed class Wrap(int eos, int minTokens) : IEncoderDecoderFunc<EncoderDecoder>
    {
        public EncoderDecoder Invoke<TState>(EncoderDecoder<TState> model) where TState : IDecoderState =>
            new EncoderDecoder<FixedLengthState<TState>>("fixed-length", model.Encoder, new FixedLengthDecoder<TState>(model.Decoder, eos, minTokens));
    }
}
