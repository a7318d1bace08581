using static TorchSharp.torch;

namespace Transduce.Architecture;

/// <summary>
/// A decoder state. Searches never look inside it; they only need its tensors, to keep them alive
/// across a step while everything else the step allocated is disposed. A record of tensors is the usual shape:
/// <c>forward</c> returns a new state (<c>state with { Hidden = next }</c>) rather than changing the one it got.
/// </summary>
public interface IDecoderState
{
    /// <summary>
    /// Every tensor the state carries to the next step. Decoding frees whatever else a step allocated, so a tensor the
    /// state holds but leaves out of this list would be freed under it.
    /// </summary>
    IEnumerable<Tensor> Tensors { get; }
}

/// <summary>
/// The state of a decoder that attends over the source: besides what it carries, it tells where the forward call that
/// produced it looked. Decoding reads it to return each step's cross-attention with that step's logits, so an attention
/// map comes from the very decoding that produced the translation.
/// </summary>
public interface ICrossAttentionState : IDecoderState
{
    /// <summary>
    /// Per decoder layer, the cross-attention weights of the forward call that produced this state, shape
    /// (batch, heads, target steps of that call, source steps); empty for a state no forward call produced
    /// (<see cref="Decoder{TState}.InitState"/>, <see cref="Decoder{TState}.SelectRows"/>). Not part of <see cref="IDecoderState.Tensors"/>:
    /// the weights belong to the call, not to what is carried forward.
    /// </summary>
    IReadOnlyList<Tensor> CrossAttention { get; }
}
