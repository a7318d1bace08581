using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Architecture;

/// <summary>
/// What an <see cref="Encoder"/> hands to a decoder: per-position outputs and, for recurrent
/// encoders, the final hidden state.
/// </summary>
/// <param name="Outputs">Encoder outputs, shape (batch, source steps, hidden).</param>
/// <param name="FinalState">The final recurrent state (layers, batch, hidden), or null for encoders without one.</param>
internal sealed record EncoderOutput(Tensor Outputs, Tensor? FinalState);

/// <summary>
/// The encoder of d2l §10.6: maps a variable-length source sequence to <see cref="EncoderOutput"/>.
/// </summary>
internal abstract class Encoder : nn.Module<Tensor, Tensor, EncoderOutput>
{
    /// <summary>Creates an encoder registered under <paramref name="name"/>.</summary>
    protected Encoder(string name) : base(name) { }
}

/// <summary>
/// The decoder of d2l §10.6: a conditional language model over the target. <see cref="InitState"/>
/// turns the encoder's outputs into the decoder state; <c>forward(X, state)</c> consumes
/// target tokens (a whole teacher-forced sequence or one step) and returns logits and the new state.
/// </summary>
/// <typeparam name="TState">The model-specific decoder state. Searches treat it as opaque.</typeparam>
internal abstract class Decoder<TState> : nn.Module<Tensor, TState, (Tensor Logits, TState State)>
    where TState : IDecoderState
{
    /// <summary>Creates a decoder registered under <paramref name="name"/>.</summary>
    protected Decoder(string name) : base(name) { }

    /// <summary>Builds the initial decoder state from the encoder's output and the source valid lengths.</summary>
    public abstract TState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths);

    /// <summary>
    /// Reorders (or repeats) the batch rows of a state: row i of the result is row
    /// <paramref name="batchIndices"/>[i] of <paramref name="state"/>. Beam search uses it when hypotheses are re-ranked.
    /// </summary>
    public abstract TState SelectRows(TState state, Tensor batchIndices);
}

/// <summary>
/// Non-generic view of every encoder–decoder (d2l §10.6): <c>forward(source, sourceValidLengths, targetInput)</c>
/// returns the decoder's logits, shape (batch, target steps, target vocabulary); <see cref="BeginDecoding"/> decodes
/// one token at a time. Searches, trainers and the CLI see only this.
/// </summary>
public abstract class EncoderDecoder : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    /// <summary>Creates the module registered under <paramref name="name"/>.</summary>
    protected EncoderDecoder(string name) : base(name) { }

    /// <summary>True when the decoder attends over the source, so that decoding can return cross-attention weights.</summary>
    internal abstract bool HasCrossAttention { get; }

    /// <summary>
    /// Encodes a source batch and starts decoding it one token per row at a time (dispose the result to free its state).
    /// </summary>
    /// <param name="source">(batch, steps) source ids.</param>
    /// <param name="sourceValidLengths">(batch) source lengths; must outlive the decoding.</param>
    /// <param name="recomputePrefix">
    /// Carry nothing between steps and run the decoder over the whole target prefix at every step (d2l's way at prediction
    /// time): the same logits at a cost that grows with the prefix, the baseline incremental decoding is checked and
    /// measured against.
    /// </param>
    internal abstract IncrementalDecoding BeginDecoding(Tensor source, Tensor sourceValidLengths, bool recomputePrefix = false);
}

/// <summary>
/// Composes an <see cref="Encoder"/> and a <see cref="Decoder{TState}"/> (d2l §10.6); the forward pass
/// returns only the decoder output.
/// </summary>
/// <typeparam name="TState">The decoder's state type.</typeparam>
internal class EncoderDecoder<TState> : EncoderDecoder
    where TState : IDecoderState
{
    /// <summary>The encoder.</summary>
    public Encoder Encoder { get; }

    /// <summary>The decoder.</summary>
    public Decoder<TState> Decoder { get; }

    /// <summary>Composes <paramref name="encoder"/> and <paramref name="decoder"/>.</summary>
    public EncoderDecoder(string name, Encoder encoder, Decoder<TState> decoder) : base(name)
    {
        Encoder = encoder;
        Decoder = decoder;
        register_module("encoder", encoder);
        register_module("decoder", decoder);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor source, Tensor sourceValidLengths, Tensor targetInput)
    {
        var encoded = Encoder.call(source, sourceValidLengths);
        var state = Decoder.InitState(encoded, sourceValidLengths);
        return Decoder.call(targetInput, state).Logits;
    }

    /// <inheritdoc />
    internal override bool HasCrossAttention => typeof(ICrossAttentionState).IsAssignableFrom(typeof(TState));

    /// <inheritdoc />
    internal override IncrementalDecoding BeginDecoding(Tensor source, Tensor sourceValidLengths, bool recomputePrefix = false) =>
        recomputePrefix
            ? new PrefixRecomputingDecoding<TState>(Encoder, Decoder, source, sourceValidLengths)
            : new StateCarryingDecoding<TState>(Encoder, Decoder, source, sourceValidLengths);
}
