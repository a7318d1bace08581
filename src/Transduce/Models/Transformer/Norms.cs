using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// RMS normalisation (Zhang &amp; Sennrich 2019; T5's <c>T5LayerNorm</c>): x / √(mean(x²) + ε) · γ — no mean subtracted,
/// no bias. Its one parameter is called <c>weight</c>, as a LayerNorm's scale is.
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public RmsNorm(long size, double eps) : base(nameof(RmsNorm))
    {
        Eps = eps;
        weight = new Parameter(ones(size, device: ModelConstruction.ParameterDevice));
        RegisterComponents();
    }

    /// <summary>γ, (size).</summary>
    public Tensor Weight => weight;

    /// <summary>ε.</summary>
    public double Eps { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var rms = x.square().mean([-1L], keepdim: true).add_(Eps).rsqrt_();
        return (x * rms).mul_(weight).MoveToOuterDisposeScope();
    }
}

/// <summary>The one place a spec's <see cref="NormKind"/> becomes a module, and a norm module its parameters.</summary>
internal static class Norms
{
    /// <summary>A norm of <paramref name="spec"/>'s kind and ε over its width.</summary>
    public static nn.Module<Tensor, Tensor> Create(TransformerSpec spec) => spec.Norm switch
    {
        NormKind.LayerNorm => ModelConstruction.LayerNorm(spec.Hidden, spec.NormEpsilon),
        NormKind.RmsNorm => new RmsNorm(spec.Hidden, spec.NormEpsilon),
        _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Norm, "unknown norm kind"),
    };

    /// <summary>A norm module's kind, γ, β (null for RMS) and ε, for the managed row step.</summary>
    public static (NormKind Kind, Tensor Gamma, Tensor? Beta, double Eps) Parameters(nn.Module<Tensor, Tensor> norm) => norm switch
    {
        LayerNorm ln => (NormKind.LayerNorm, ln.weight!, ln.bias, ln.eps),
        RmsNorm rms => (NormKind.RmsNorm, rms.Weight, null, rms.Eps),
        _ => throw new ArgumentException($"not a norm module: {norm.GetType().Name}", nameof(norm)),
    };
}
