using static TorchSharp.torch;

namespace Transduce.Architecture;

/// <summary>
/// A decoder state. Searches never look inside it; they only need its tensors, to keep them alive
/// across a step while everything else the step allocated is disposed.
/// </summary>
internal interface IDecoderState
{
    /// <summary>Every tensor the state holds.</summary>
    IEnumerable<Tensor> Tensors { get; }
}
