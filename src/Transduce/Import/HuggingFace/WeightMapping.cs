using Transduce.Checkpoints;
using Transduce.IO;
using Transduce.Models;
using static TorchSharp.torch;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// Copies a Hugging Face state dict into one of our models by a name map: for each of our tensors, the file's names that
/// can supply it, preferred first (several when weights are shared or tied: they must then hold equal values).
/// </summary>
internal static class WeightMapping
{
    /// <summary>
    /// Gives <paramref name="model"/> the tensors of <paramref name="weights"/> by <paramref name="names"/> (ours → the file's
    /// candidates; a (1, n) file tensor fills an (n) one). Parameters built without weights
    /// (<see cref="ModelConstruction.WithoutWeights"/>) become views of the mapped files; others are copied into. Missing and
    /// unexpected tensors and shape mismatches are found from the headers, and shared/tied tensors that differ from their
    /// values, all reported together, by the file's names, in one <see cref="InvalidDataException"/> naming the weights and
    /// <paramref name="family"/>, before the model takes any. A tensor of ours for which <paramref name="zeroWhenMissing"/>
    /// is true starts at zero when the file lacks it; a file tensor no name uses goes to <paramref name="extra"/> with its
    /// shape, which returns a problem, or null to accept it unread. Computed sinusoid tables (<c>*.positions.table</c>) are
    /// not loaded.
    /// </summary>
    public static void Copy(nn.Module model, IReadOnlyDictionary<string, IReadOnlyList<string>> names, HuggingFaceWeights weights, string family,
        Func<string, bool> zeroWhenMissing, Func<string, long[], string?> extra)
    {
        var shapes = weights.Describe().Shapes;
        using var file = weights.Open();
        var problems = new List<string>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        var plan = new Dictionary<string, string?>(StringComparer.Ordinal); // ours → the file's tensor, or null for zeros
        foreach (var (ours, target) in model.state_dict())
        {
            if (ours.EndsWith(".positions.table", StringComparison.Ordinal)) continue; // the sinusoid table is computed, not loaded
            if (!names.TryGetValue(ours, out var candidates))
            {
                problems.Add($"model tensor '{ours}' has no Hugging Face counterpart (internal error)");
                continue;
            }
            var present = candidates.Where(shapes.ContainsKey).ToList();
            used.UnionWith(present);
            if (present.Count == 0)
            {
                if (zeroWhenMissing(ours)) plan[ours] = null;
                else problems.Add($"missing tensor '{candidates[0]}'" + (candidates.Count > 1 ? $" (or any of '{string.Join("', '", candidates.Skip(1))}')" : ""));
                continue;
            }
            var shape = shapes[present[0]];
            bool row = target.shape.Length == 1 && shape is [1, _];
            if (!(row ? [shape[1]] : shape).SequenceEqual(target.shape))
            {
                long[] theirs = row ? [1, .. target.shape] : target.shape;
                problems.Add($"tensor '{present[0]}' has shape [{string.Join(", ", shape)}], the model needs [{string.Join(", ", theirs)}]");
                continue;
            }
            foreach (var other in present.Skip(1))
                if (!SameValues(file, other, present[0]))
                    problems.Add($"tensors '{present[0]}' and '{other}' must be one shared/tied weight (config) but differ");
            plan[ours] = present[0];
        }
        foreach (var name in shapes.Keys.Where(k => !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal))
            if (extra(name, shapes[name]) is { } problem) problems.Add(problem);
        if (problems.Count > 0)
            throw new InvalidDataException($"{weights.Path}: weights do not fit the {family} config: {ErrorText.Problems(problems)}");

        Tensor Supply(string ours, Tensor like)
        {
            if (plan[ours] is not { } theirs) return zeros(like.shape, like.dtype);
            using var t = file.Read(theirs);
            using var shaped = t.reshape(like.shape);
            return t.dtype == like.dtype ? shaped.alias() : shaped.to_type(like.dtype);
        }
        var built = model.state_dict().Where(kv => kv.Value.device_type != TorchSharp.DeviceType.META && plan.ContainsKey(kv.Key)).ToList();
        ModelConstruction.Materialize(model, Supply);
        using var _ = no_grad();
        foreach (var (ours, target) in built)
        {
            using var source = Supply(ours, target);
            target.copy_(source);
        }
    }

    /// <summary>The standard message for a file tensor nothing reads.</summary>
    public static string Unexpected(string name) => $"unexpected tensor '{name}'";

    private static bool SameValues(WeightReader file, string a, string b)
    {
        using var x = file.Read(a);
        using var y = file.Read(b);
        if (!x.shape.SequenceEqual(y.shape)) return false;
        using var same = x.eq(y);
        using var all = same.all();
        return all.item<bool>();
    }
}
