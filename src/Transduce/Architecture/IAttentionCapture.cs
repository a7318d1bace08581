using static TorchSharp.torch;

namespace Transduce.Architecture;

/// <summary>
/// A decoder whose cross-attention weights can be observed. While <see cref="CaptureAttention"/> is on,
/// each forward call records them; a teacher-forced pass over a translation thus yields the weights the
/// search used to produce it.
/// </summary>
internal interface IAttentionCapture
{
    /// <summary>Turns recording on or off.</summary>
    bool CaptureAttention { get; set; }

    /// <summary>Per layer: weights of shape (batch, heads, target steps, source steps) recorded since the last clear.</summary>
    IReadOnlyList<Tensor> CapturedCrossAttention { get; }

    /// <summary>Disposes the recorded weights.</summary>
    void ClearCapturedAttention();
}
