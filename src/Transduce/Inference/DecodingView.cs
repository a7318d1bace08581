using Transduce.Architecture;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>
/// A model seen through another way of decoding: the same modules and teacher-forced forward pass, with
/// <see cref="EncoderDecoder.BeginDecoding"/> replaced (recompute the prefix, ban a token for some steps, …). It shares
/// the model's modules: dispose the model, not the view.
/// </summary>
internal sealed class DecodingView : EncoderDecoder
{
    private readonly EncoderDecoder model;
    private readonly Func<Tensor, Tensor, bool, IncrementalDecoding> begin;

    /// <param name="model">The model seen.</param>
    /// <param name="name">The view's module name.</param>
    /// <param name="begin">Starts a decoding of (source, source valid lengths, recompute prefix?).</param>
    public DecodingView(EncoderDecoder model, string name, Func<Tensor, Tensor, bool, IncrementalDecoding> begin) : base(name)
    {
        this.model = model;
        this.begin = begin;
        register_module("model", model);
    }

    public override Tensor forward(Tensor source, Tensor sourceValidLengths, Tensor targetInput) =>
        model.call(source, sourceValidLengths, targetInput);

    public override bool HasCrossAttention => model.HasCrossAttention;

    public override IncrementalDecoding BeginDecoding(Tensor source, Tensor sourceValidLengths, bool recomputePrefix = false) =>
        begin(source, sourceValidLengths, recomputePrefix);
}
