namespace Transduce.Models;

/// <summary>
/// Which of the decoding kernels may run (each where this machine and libtorch have it; <see cref="Auto"/> allows all
/// three). Switching one off changes speed, not the method: the same network is computed in the same number type, so
/// outputs agree up to rounding. A model decodes with the choice of the call (<see cref="Translation.TranslationOptions.Kernels"/>,
/// else <see cref="Translation.Translator.Kernels"/>); a different choice drops the packed weights made for the last one.
/// </summary>
public sealed record DecodingKernels
{
    /// <summary>Every kernel where available: what decoding runs unless told otherwise.</summary>
    public static DecodingKernels Auto { get; } = new();

    /// <summary>
    /// Eval-mode decoding through packed copies of the linear layers (fused projections, oneDNN or FBGEMM products, the
    /// managed one-sentence step). False runs the modules' own forward passes, as training does, in float32 only.
    /// </summary>
    public bool Packed { get; init; } = true;

    /// <summary>The Transformer's one-sentence step in managed SIMD code (<c>TransformerRowStep</c>); false steps through libtorch.</summary>
    public bool RowStep { get; init; } = true;

    /// <summary>oneDNN's inner product over reordered weights for float32 and bfloat16 products; false uses libtorch's MKL products.</summary>
    public bool OneDnn { get; init; } = true;

    /// <summary>The words <see cref="Parse"/> reads: <c>auto</c>, <c>modules</c>, <c>no-row-step</c>, <c>no-onednn</c>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["auto", "modules", "no-row-step", "no-onednn"];

    /// <summary>
    /// Reads a comma-separated list of <see cref="Names"/>: <c>auto</c> (everything), <c>modules</c> (no packed
    /// decoding), <c>no-row-step</c>, <c>no-onednn</c>, e.g. <c>no-row-step,no-onednn</c>. Anything else throws
    /// <see cref="ArgumentException"/> listing them.
    /// </summary>
    public static DecodingKernels Parse(string text)
    {
        var kernels = Auto;
        foreach (string word in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            kernels = word.ToLowerInvariant() switch
            {
                "auto" => kernels,
                "modules" => kernels with { Packed = false },
                "no-row-step" => kernels with { RowStep = false },
                "no-onednn" => kernels with { OneDnn = false },
                _ => throw new ArgumentException($"unknown kernels '{word}' (known: {string.Join(", ", Names)}, comma-separated)"),
            };
        }
        return kernels;
    }

    /// <summary>The choice as <see cref="Parse"/> reads it: <c>auto</c>, or the words that switch something off.</summary>
    public string Name
    {
        get
        {
            var off = new List<string>();
            if (!Packed) off.Add("modules");
            if (!RowStep) off.Add("no-row-step");
            if (!OneDnn) off.Add("no-onednn");
            return off.Count == 0 ? "auto" : string.Join(',', off);
        }
    }

    /// <summary>Sets this choice on every packed encoder and decoder of <paramref name="model"/>.</summary>
    internal void Apply(TorchSharp.torch.nn.Module model)
    {
        foreach (var m in model.modules().OfType<IPackedModule>()) m.Kernels = this;
    }
}

/// <summary>An encoder or decoder with packed eval-mode weights (<see cref="PlanCache"/>): it packs them for a kernel choice.</summary>
internal interface IPackedModule
{
    /// <summary>The kernels its packed path may use; a different choice drops the packed weights.</summary>
    DecodingKernels Kernels { get; set; }
}
