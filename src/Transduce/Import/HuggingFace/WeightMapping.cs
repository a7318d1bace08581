using static TorchSharp.torch;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// Copies a Hugging Face state dict into one of our models by a name map: for each of our tensors, the file's names that
/// can supply it, preferred first (several when weights are shared or tied: they must then hold equal values).
/// </summary>
internal static class WeightMapping
{
    /// <summary>
    /// Copies <paramref name="weights"/> into <paramref name="model"/> by <paramref name="names"/> (ours → the file's candidates;
    /// a (1, n) file tensor fills an (n) one). Missing and unexpected tensors, shape mismatches and shared/tied tensors that
    /// differ are reported together, by the file's names, in one <see cref="InvalidDataException"/> naming the weights and
    /// <paramref name="family"/>. A tensor of ours for which <paramref name="zeroWhenMissing"/> is true starts at zero when the
    /// file lacks it; a file tensor no name uses goes to <paramref name="extra"/>, which returns a problem, or null to accept
    /// it unread. Computed sinusoid tables (<c>*.positions.table</c>) are not loaded.
    /// </summary>
    public static void Copy(nn.Module model, IReadOnlyDictionary<string, IReadOnlyList<string>> names, HuggingFaceWeights weights, string family,
        Func<string, bool> zeroWhenMissing, Func<string, Tensor, string?> extra)
    {
        var loaded = weights.Load();
        try
        {
            var problems = new List<string>();
            var used = new HashSet<string>(StringComparer.Ordinal);
            var plan = new List<(Tensor Target, Tensor? Source)>();
            foreach (var (ours, target) in model.state_dict())
            {
                if (ours.EndsWith(".positions.table", StringComparison.Ordinal)) continue; // the sinusoid table is computed, not loaded
                if (!names.TryGetValue(ours, out var candidates))
                {
                    problems.Add($"model tensor '{ours}' has no Hugging Face counterpart (internal error)");
                    continue;
                }
                var present = candidates.Where(loaded.ContainsKey).ToList();
                used.UnionWith(present);
                if (present.Count == 0)
                {
                    if (zeroWhenMissing(ours)) plan.Add((target, null));
                    else problems.Add($"missing tensor '{candidates[0]}'" + (candidates.Count > 1 ? $" (or any of '{string.Join("', '", candidates.Skip(1))}')" : ""));
                    continue;
                }
                var source = loaded[present[0]];
                bool row = target.shape.Length == 1 && source.shape is [1, _];
                long[] shape = row ? [source.shape[1]] : source.shape;
                if (!shape.SequenceEqual(target.shape))
                {
                    long[] theirs = row ? [1, .. target.shape] : target.shape;
                    problems.Add($"tensor '{present[0]}' has shape [{string.Join(", ", source.shape)}], the model needs [{string.Join(", ", theirs)}]");
                    continue;
                }
                foreach (var other in present.Skip(1))
                    if (!SameValues(loaded[other], source))
                        problems.Add($"tensors '{present[0]}' and '{other}' must be one shared/tied weight (config) but differ");
                plan.Add((target, source));
            }
            foreach (var name in loaded.Keys.Where(k => !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal))
                if (extra(name, loaded[name]) is { } problem) problems.Add(problem);
            if (problems.Count > 0)
                throw new InvalidDataException($"{weights.Path}: weights do not fit the {family} config: {string.Join("; ", problems)}");
            using var _ = no_grad();
            foreach (var (target, source) in plan)
            {
                if (source is null)
                {
                    target.zero_();
                    continue;
                }
                using var view = source.reshape(target.shape);
                target.copy_(view);
            }
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    /// <summary>The standard message for a file tensor nothing reads.</summary>
    public static string Unexpected(string name) => $"unexpected tensor '{name}'";

    private static bool SameValues(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var same = a.eq(b);
        using var all = same.all();
        return all.item<bool>();
    }
}
