namespace Transduce.Checkpoints;

/// <summary>
/// Model folders in other toolkits' formats that <see cref="Checkpoint.Load"/> converts in memory (Hugging Face MarianMT
/// today; each pretrained family is one more). A format lives in <c>Import/</c>, above this folder, and registers itself
/// here when the assembly loads: checkpoints know that foreign formats exist, not which.
/// </summary>
internal static class ForeignFormats
{
    private static readonly List<(string Name, Func<string, bool> Recognises, Func<string, Checkpoint> Convert)> Formats = [];

    /// <summary>Adds a format: <paramref name="recognises"/> tells its folders apart cheaply; <paramref name="convert"/> loads one.</summary>
    public static void Register(string name, Func<string, bool> recognises, Func<string, Checkpoint> convert)
    {
        lock (Formats)
        {
            if (Formats.Any(f => f.Name == name)) throw new ArgumentException($"a checkpoint format called '{name}' is registered already");
            Formats.Add((name, recognises, convert));
        }
    }

    /// <summary>The checkpoint converted from <paramref name="directory"/> if a registered format recognises it, else null.</summary>
    public static Checkpoint? TryConvert(string directory)
    {
        (string Name, Func<string, bool> Recognises, Func<string, Checkpoint> Convert)[] formats;
        lock (Formats) formats = [.. Formats];
        foreach (var format in formats)
            if (format.Recognises(directory)) return format.Convert(directory);
        return null;
    }

    /// <summary>
    /// The checkpoint converted from <paramref name="directory"/>, a folder some registered format recognises (what
    /// <c>convert --from hf</c> reads); a missing folder throws <see cref="DirectoryNotFoundException"/>, a folder no format
    /// recognises (a Transduce checkpoint among them) <see cref="InvalidDataException"/> naming the known formats.
    /// </summary>
    public static Checkpoint Convert(string directory)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: no such directory");
        if (TryConvert(directory) is { } converted) return converted;
        string[] names;
        lock (Formats) names = [.. Formats.Select(f => f.Name)];
        throw new InvalidDataException(File.Exists(Path.Combine(directory, Checkpoint.ConfigFile))
            ? $"{Path.Combine(directory, Checkpoint.ConfigFile)}: not a model folder of a known format ({string.Join(", ", names)}; 'model_type' in config.json); a Transduce checkpoint needs no conversion"
            : $"{directory}: no {Checkpoint.ConfigFile}, not a Hugging Face model folder ({string.Join(", ", names)})");
    }

    /// <summary>
    /// Refuses a configuration that needs more weights than <paramref name="weights"/> stores, before a model is built
    /// from it: a config edited to huge sizes must not make us allocate them. Throws <see cref="InvalidDataException"/>
    /// naming <paramref name="configPath"/> and the keys of the largest term (<see cref="Models.ModelConfig.MinimumParameterTerms"/>);
    /// likewise a configuration whose computed tables (<see cref="Models.ModelConfig.ComputedValues"/>) outgrow the weights.
    /// </summary>
    public static void CheckFits(this Models.ModelConfig config, WeightsIndex weights, string configPath)
    {
        var (computedKeys, computed) = config.ComputedValues;
        long allowed = Math.Max(Models.ModelConfig.ComputedValuesFloor, weights.StoredElements);
        if (computed > allowed)
            throw new InvalidDataException(
                $"{configPath}: {computedKeys} would hold {computed:N0} values, more than the {allowed:N0} allowed " +
                $"({Path.GetFileName(weights.Path)} stores {weights.StoredElements:N0} weights; a computed table may be as large as the weights, " +
                $"or {Models.ModelConfig.ComputedValuesFloor:N0} values): the positions are not what these weights were made for");
        var terms = config.MinimumParameterTerms().ToList();
        long needed = terms.Sum(t => t.Count);
        if (needed <= weights.StoredElements) return;
        var largest = terms.MaxBy(t => t.Count);
        throw new InvalidDataException(
            $"{configPath}: describes a model of at least {needed:N0} weights ({largest.Keys} alone is {largest.Count:N0}), " +
            $"but {Path.GetFileName(weights.Path)} stores {weights.StoredElements:N0}: the config does not belong to these weights");
    }
}
