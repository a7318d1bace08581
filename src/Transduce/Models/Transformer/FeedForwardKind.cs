using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// The position-wise feed-forward network's kind: its activation and whether it is gated. A plain network is
/// W₂·f(W₁x); a gated one (Shazeer 2020, "GLU variants"; T5 v1.1 and Flan-T5's <c>gated-gelu</c>, LLaMA's SwiGLU) is
/// W₂·(f(W₁x) ⊙ Vx), with a second input projection V (<c>ffn.up</c>). Every kind is defined once, in
/// <see cref="FeedForwardKinds"/>: its name, its activation, and the activation's two forms (tensors and managed rows).
/// </summary>
internal enum FeedForwardKind
{
    /// <summary>max(0, x): the paper's and the book's.</summary>
    Relu,

    /// <summary>GELU with the exact erf: x·Φ(x).</summary>
    Gelu,

    /// <summary>GELU with the tanh approximation (transformers' <c>gelu_new</c>).</summary>
    GeluTanh,

    /// <summary>x·sigmoid(x) (SiLU), as Marian models use.</summary>
    Swish,

    /// <summary>Gated, with ReLU (ReGLU).</summary>
    GatedRelu,

    /// <summary>Gated, with the exact GELU (GEGLU).</summary>
    GatedGelu,

    /// <summary>Gated, with the tanh GELU: T5 v1.1 and Flan-T5 (<c>feed_forward_proj: gated-gelu</c>, whose activation is <c>gelu_new</c>).</summary>
    GatedGeluTanh,

    /// <summary>Gated, with SiLU (SwiGLU).</summary>
    SwiGlu,
}

/// <summary>The elementwise functions a <see cref="FeedForwardKind"/> applies.</summary>
internal enum ActivationFunction
{
    /// <summary>max(0, x).</summary>
    Relu,

    /// <summary>x·Φ(x) with the exact erf.</summary>
    Gelu,

    /// <summary>½x(1 + tanh(√(2/π)(x + 0.044715x³))).</summary>
    GeluTanh,

    /// <summary>x·sigmoid(x).</summary>
    Silu,
}

/// <summary>
/// The one definition of every <see cref="FeedForwardKind"/>: the name configs use, the activation it applies and
/// whether it is gated, and each activation's tensor form (modules and batched plans) and managed form (the row step).
/// Adding a kind is a row of <see cref="Kinds"/> (and, for a new function, a case in each of the two forms below).
/// An unknown name is an error, never a default.
/// </summary>
internal static class FeedForwardKinds
{
    private static readonly (FeedForwardKind Kind, string Name, ActivationFunction Function, bool Gated)[] Kinds =
    [
        (FeedForwardKind.Relu, "relu", ActivationFunction.Relu, false),
        (FeedForwardKind.Gelu, "gelu", ActivationFunction.Gelu, false),
        (FeedForwardKind.GeluTanh, "gelu_tanh", ActivationFunction.GeluTanh, false),
        (FeedForwardKind.Swish, "swish", ActivationFunction.Silu, false),
        (FeedForwardKind.GatedRelu, "gated_relu", ActivationFunction.Relu, true),
        (FeedForwardKind.GatedGelu, "gated_gelu", ActivationFunction.Gelu, true),
        (FeedForwardKind.GatedGeluTanh, "gated_gelu_tanh", ActivationFunction.GeluTanh, true),
        (FeedForwardKind.SwiGlu, "swiglu", ActivationFunction.Silu, true),
    ];

    /// <summary>Every kind's name, in the order help texts list them.</summary>
    public static IReadOnlyList<string> Names { get; } = Kinds.Select(k => k.Name).ToArray();

    private static (FeedForwardKind Kind, string Name, ActivationFunction Function, bool Gated) Row(FeedForwardKind kind) =>
        Array.Find(Kinds, k => k.Kind == kind) is { Name: not null } row ? row : throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown feed-forward kind");

    /// <summary>The kind called <paramref name="name"/>; anything else throws <see cref="ArgumentException"/> naming <paramref name="field"/> and the known names.</summary>
    public static FeedForwardKind Parse(string? name, string field = "activation") =>
        Array.Find(Kinds, k => k.Name == name) is { Name: not null } row
            ? row.Kind
            : throw new ArgumentException($"model config: unknown '{field}' '{name}' (known: {string.Join(", ", Names)})");

    /// <summary>The name configs use for <paramref name="kind"/>.</summary>
    public static string Name(this FeedForwardKind kind) => Row(kind).Name;

    /// <summary>Whether <paramref name="kind"/> multiplies its activation by a second projection of the input.</summary>
    public static bool IsGated(this FeedForwardKind kind) => Row(kind).Gated;

    /// <summary>The elementwise function <paramref name="kind"/> applies.</summary>
    public static ActivationFunction Function(this FeedForwardKind kind) => Row(kind).Function;

    /// <summary>
    /// The activation over a tensor: in place (and returned) when <paramref name="inPlace"/>, where libtorch has an
    /// in-place form; otherwise a new tensor.
    /// </summary>
    public static Tensor Apply(this ActivationFunction function, Tensor x, bool inPlace) => function switch
    {
        ActivationFunction.Relu => inPlace ? x.relu_() : nn.functional.relu(x),
        ActivationFunction.Gelu => inPlace ? x.gelu_() : nn.functional.gelu(x),
        ActivationFunction.GeluTanh => GeluTanh(x),
        ActivationFunction.Silu => inPlace ? x.silu_() : nn.functional.silu(x),
        _ => throw new ArgumentOutOfRangeException(nameof(function), function, "unknown activation"),
    };

    /// <summary>
    /// Whether <paramref name="function"/> has a managed form (<see cref="Apply(ActivationFunction, float*, int)"/>):
    /// libtorch's exact erf GELU has no managed twin here, so a row step with it multiplies through libtorch instead.
    /// </summary>
    public static bool HasManagedForm(this ActivationFunction function) => function is not ActivationFunction.Gelu;

    /// <summary>The activation in place over <paramref name="n"/> managed values (functions with <see cref="HasManagedForm"/>).</summary>
    public static unsafe void Apply(this ActivationFunction function, float* x, int n)
    {
        switch (function)
        {
            case ActivationFunction.Relu:
                for (int i = 0; i < n; i++) x[i] = MathF.Max(x[i], 0f);
                break;
            case ActivationFunction.Silu:
                for (int i = 0; i < n; i++) x[i] /= 1f + MathF.Exp(-x[i]);
                break;
            case ActivationFunction.GeluTanh:
                const float c = 0.7978845608028654f; // √(2/π)
                for (int i = 0; i < n; i++)
                {
                    float v = x[i];
                    x[i] = 0.5f * v * (1f + MathF.Tanh(c * (v + 0.044715f * v * v * v)));
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(function), function, "no managed form");
        }
    }

    /// <summary>
    /// The feed-forward network's hidden values from the first product: <paramref name="inner"/> is f(W₁x), or for a gated
    /// kind the two products side by side, (rows, 2·ffn) = [W₁x | Vx], of which the result is f(W₁x) ⊙ Vx, (rows, ffn)
    /// (a view of <paramref name="inner"/>'s first half, computed in place).
    /// </summary>
    public static Tensor Hidden(this FeedForwardKind kind, Tensor inner)
    {
        var function = kind.Function();
        if (!kind.IsGated()) return function.Apply(inner, inPlace: true);
        long ffn = inner.shape[^1] / 2;
        var activated = inner.narrow(-1, 0, ffn);
        using var up = inner.narrow(-1, ffn, ffn);
        return function.Apply(activated, inPlace: true).mul_(up);
    }

    /// <summary>The managed form of <see cref="Hidden(FeedForwardKind, Tensor)"/> over one row of <paramref name="ffn"/> (gated: 2·ffn) values; the result is the first <paramref name="ffn"/>.</summary>
    public static unsafe void Hidden(this FeedForwardKind kind, float* inner, int ffn)
    {
        kind.Function().Apply(inner, ffn);
        if (!kind.IsGated()) return;
        float* up = inner + ffn;
        for (int i = 0; i < ffn; i++) inner[i] *= up[i];
    }

    /// <summary>GELU with the tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))), a new tensor.</summary>
    private static Tensor GeluTanh(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = (x + x.pow(3) * 0.044715) * Math.Sqrt(2 / Math.PI);
        return (x * 0.5 * (inner.tanh() + 1)).MoveToOuterDisposeScope();
    }
}
