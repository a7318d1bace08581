using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Architecture;

/// <summary>
/// What an <see cref="Encoder"/> hands to a decoder: per-position outputs and, for recurrent
/// encoders, the final hidden state. A decoder's <see cref="Decoder{TState}.InitState"/> reads it; what it keeps goes into
/// its state.
/// </summary>
/// <param name="Outputs">Encoder outputs, shape (batch, source steps, width).</param>
/// <param name="FinalState">
/// The final recurrent state (layers, batch, hidden), or null for encoders without one. Any tensor shape whose second
/// dimension is the batch works: decoding that recomputes the prefix selects its rows along dimension 1.
/// </param>
public sealed record EncoderOutput(Tensor Outputs, Tensor? FinalState);

/// <summary>
/// The encoder of d2l §10.6: maps a variable-length source sequence to <see cref="EncoderOutput"/>. Subclass it and
/// implement <c>forward(source, sourceValidLengths)</c>: <c>source</c> is (batch, steps) token ids padded with the
/// config's <see cref="Models.ModelConfig.PadId"/>, <c>sourceValidLengths</c> (batch) the length of each row.
/// Create submodules in the constructor and call <c>RegisterComponents()</c>, as for any TorchSharp module.
/// </summary>
public abstract class Encoder : nn.Module<Tensor, Tensor, EncoderOutput>
{
    /// <summary>Creates an encoder registered under <paramref name="name"/>.</summary>
    protected Encoder(string name) : base(name) { }
}

/// <summary>
/// The decoder of d2l §10.6: a conditional language model over the target. <see cref="InitState"/>
/// turns the encoder's outputs into the decoder state; <c>forward(X, state)</c> consumes
/// target tokens (a whole teacher-forced sequence or one step) and returns logits and the new state.
/// </summary>
/// <remarks>
/// Subclass it and implement <c>forward(target, state)</c>, <see cref="InitState"/> and <see cref="SelectRows"/>.
/// <c>target</c> is (batch, steps) token ids: the whole teacher-forced target in training (starting with <c>&lt;bos&gt;</c>),
/// one column per step when decoding; the logits are (batch, steps, target vocabulary). The same <c>forward</c> serves
/// both, so a model decodes incrementally as soon as its state carries what the next step needs (a recurrent hidden
/// state, cached keys and values).
/// </remarks>
/// <typeparam name="TState">The model-specific decoder state. Searches treat it as opaque.</typeparam>
public abstract class Decoder<TState> : nn.Module<Tensor, TState, (Tensor Logits, TState State)>
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
/// one token at a time. Searches, trainers and the CLI see only this. A model author composes an <see cref="Encoder"/>
/// and a <see cref="Decoder{TState}"/> with <see cref="EncoderDecoder{TState}"/> rather than deriving from this class.
/// </summary>
public abstract class EncoderDecoder : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    /// <summary>Creates the module registered under <paramref name="name"/>.</summary>
    protected EncoderDecoder(string name) : base(name) { }

    /// <summary>True when the decoder attends over the source, so that decoding can return cross-attention weights.</summary>
    public abstract bool HasCrossAttention { get; }

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
    public abstract IncrementalDecoding BeginDecoding(Tensor source, Tensor sourceValidLengths, bool recomputePrefix = false);
}

/// <summary>
/// Composes an <see cref="Encoder"/> and a <see cref="Decoder{TState}"/> (d2l §10.6); the forward pass
/// returns only the decoder output. Training calls the forward pass; greedy and beam search call
/// <see cref="BeginDecoding"/>, which carries the decoder's state from step to step. Use it as it is, or derive from it
/// to build the two parts from a config (and, say, initialise the weights) in a constructor of your own.
/// </summary>
/// <typeparam name="TState">The decoder's state type.</typeparam>
public class EncoderDecoder<TState> : EncoderDecoder
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
    public override bool HasCrossAttention => typeof(ICrossAttentionState).IsAssignableFrom(typeof(TState));

    /// <inheritdoc />
    public override IncrementalDecoding BeginDecoding(Tensor source, Tensor sourceValidLengths, bool recomputePrefix = false) =>
        recomputePrefix
            ? new PrefixRecomputingDecoding<TState>(Encoder, Decoder, source, sourceValidLengths)
            : new StateCarryingDecoding<TState>(Encoder, Decoder, source, sourceValidLengths);
}
