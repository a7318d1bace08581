using System.Diagnostics;

namespace Transduce.Models.Transformer;

/// <summary>The parts of a Transformer decoder step that <see cref="StepPhases"/> times.</summary>
internal enum StepPhase
{
    /// <summary>Token embedding, positions and the embedding norm (and, in libtorch steps, their dispatch).</summary>
    Embedding,

    /// <summary>Every layer norm of the blocks and the final norm.</summary>
    Norm,

    /// <summary>The self-attention's fused query/key/value product.</summary>
    SelfQkv,

    /// <summary>Writing the new key and value into the cache and attending over it.</summary>
    SelfAttention,

    /// <summary>The self-attention's output product plus the residual.</summary>
    SelfOut,

    /// <summary>The cross-attention's query product.</summary>
    CrossQuery,

    /// <summary>Attending over the source's cached keys and values.</summary>
    CrossAttention,

    /// <summary>The cross-attention's output product plus the residual.</summary>
    CrossOut,

    /// <summary>The feed-forward network's first product.</summary>
    Ffn1,

    /// <summary>The feed-forward network's activation (and gate).</summary>
    Activation,

    /// <summary>The feed-forward network's second product plus the residual.</summary>
    Ffn2,

    /// <summary>The output projection onto the vocabulary (and handing the logits back as a tensor).</summary>
    OutputProjection,
}

/// <summary>
/// Where a decoder step's wall time goes, by <see cref="StepPhase"/>, for the benchmarks' step profile
/// (<c>Transduce.Bench step --phases</c>): off unless a thread calls <see cref="Enable"/>, when each incremental decoder
/// step of that thread (the row step and the batched plan alike) adds the time between its marks to per-phase totals.
/// A mark costs one clock read; off, one thread-static read. Marks outside a step (the encoder's blocks run the same
/// <see cref="TransformerStep"/>) count nothing: a step starts at <see cref="Start"/> and ends at the output projection.
/// </summary>
internal static class StepPhases
{
    [ThreadStatic] private static long[]? totals;
    [ThreadStatic] private static long last;
    [ThreadStatic] private static bool inStep;

    /// <summary>Phases in <see cref="StepPhase"/> order.</summary>
    public static IReadOnlyList<StepPhase> All { get; } = Enum.GetValues<StepPhase>();

    /// <summary>Starts (or restarts from zero) timing this thread's decoder steps.</summary>
    public static void Enable() => totals = new long[All.Count];

    /// <summary>Stops timing this thread's steps.</summary>
    public static void Disable() => (totals, inStep) = (null, false);

    /// <summary>Seconds spent so far in each phase by this thread's steps (zeros when timing is off).</summary>
    public static double[] Seconds()
    {
        var t = totals;
        return t is null ? new double[All.Count] : t.Select(x => (double)x / Stopwatch.Frequency).ToArray();
    }

    /// <summary>A decoder step begins (before its embedding).</summary>
    public static void Start()
    {
        if (totals is null) return;
        inStep = true;
        last = Stopwatch.GetTimestamp();
    }

    /// <summary>The time since the last mark was spent in <paramref name="phase"/>; the output projection ends the step.</summary>
    public static void Mark(StepPhase phase)
    {
        var t = totals;
        if (t is null || !inStep) return;
        long now = Stopwatch.GetTimestamp();
        t[(int)phase] += now - last;
        last = now;
        if (phase == StepPhase.OutputProjection) inStep = false;
    }

    /// <summary>The phase of a sub-layer's inner function (after its first product) and of its output product.</summary>
    public static (StepPhase Product, StepPhase Inner, StepPhase Output) Of(SubLayer sub) => sub switch
    {
        SubLayer.Self => (StepPhase.SelfQkv, StepPhase.SelfAttention, StepPhase.SelfOut),
        SubLayer.Cross => (StepPhase.CrossQuery, StepPhase.CrossAttention, StepPhase.CrossOut),
        _ => (StepPhase.Ffn1, StepPhase.Activation, StepPhase.Ffn2),
    };
}
