using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>
/// Keeps step-by-step decoding memory flat: each step runs in its own dispose scope, only the new
/// state survives it, and the previous state's tensors that the new state no longer holds are freed.
/// </summary>
internal static class StepMemory
{
    /// <summary>Moves <paramref name="keep"/> out of <paramref name="stepScope"/> so they outlive it.</summary>
    public static void Keep(DisposeScope stepScope, IEnumerable<Tensor> keep)
    {
        foreach (var t in keep.Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>())
            if (stepScope.Contains(t)) stepScope.MoveToOuter(t);
    }

    /// <summary>Disposes the tensors of <paramref name="old"/> that are not in <paramref name="current"/>.</summary>
    public static void Release(IEnumerable<Tensor> old, IEnumerable<Tensor> current)
    {
        var live = new HashSet<object>(current, ReferenceEqualityComparer.Instance);
        foreach (var t in old.Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>())
            if (!live.Contains(t)) t.Dispose();
    }
}
