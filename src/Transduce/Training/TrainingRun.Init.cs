using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>A <see cref="TrainingRun"/> that fine-tunes: it starts from the model <see cref="RunConfig.Init"/> names.</summary>
public sealed partial class TrainingRun
{
    /// <summary>What the run's data section tells the model's pair encoding (its languages, a source prefix), with the model's language codes.</summary>
    private PairEncodingContext EncodingContext(Checkpoint checkpoint) =>
        new(Config.Data.SourceLanguage, Config.Data.TargetLanguage, Config.Data.SourcePrefix, checkpoint.Languages?.Source, checkpoint.Languages?.Target);

    /// <summary>
    /// Refuses, before anything is written, an <c>init</c> that cannot be a model (missing, a file, a folder without
    /// <c>config.json</c>) or that lies in the run directory, which the run replaces.
    /// </summary>
    private static void CheckInit(RunConfig config, string directory)
    {
        if (config.Init is not { } init) return;
        if (!System.IO.Directory.Exists(init))
            throw File.Exists(init)
                ? new InvalidDataException($"'init' (--init) {init}: is a file; give the folder of a Transduce checkpoint or of a model (OPUS-MT, ...)")
                : new DirectoryNotFoundException($"'init' (--init) {init}: no such directory");
        if (!File.Exists(Path.Combine(init, Checkpoint.ConfigFile)))
            throw new InvalidDataException(
                $"'init' (--init) {init}: not a model — it has no {Checkpoint.ConfigFile} (a Transduce checkpoint or run directory, or a model folder such as OPUS-MT's)");
        string run = Path.TrimEndingDirectorySeparator(directory) + Path.DirectorySeparatorChar;
        string from = Path.TrimEndingDirectorySeparator(init) + Path.DirectorySeparatorChar;
        if (from.StartsWith(run, StringComparison.Ordinal))
            throw new ArgumentException($"'init' (--init) {init}: is inside the run directory {directory}, which the run replaces; copy the model elsewhere first");
    }

    /// <summary>The first session of a fine-tuning run: the model <c>init</c> names, and the corpus encoded with its own tokenizers.</summary>
    private Prepared PrepareInit(string init)
    {
        var (all, corpusName) = ReadCorpus();
        var train = TrainingPairs(all, out var corpus);
        var validation = ReadValidation();
        var checkpoint = LoadInit(init);
        try
        {
            var encoded = FilterByLength(TranslationData.Encode(train, checkpoint.CreateTextPipeline(), checkpoint.PairEncoding, EncodingContext(checkpoint)).Pairs);
            return new Prepared(checkpoint, encoded, corpusName, corpus, validation, null);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>The model <c>init</c> names, checked against the run's data section, in training mode under the run's seed.</summary>
    private Checkpoint LoadInit(string init)
    {
        var checkpoint = Checkpoint.Load(init);
        try
        {
            checkpoint.PairEncoding.Check(EncodingContext(checkpoint));
            string origin = checkpoint.TrainingInfo.TryGetValue("converted_from", out var from) ? $"a {from} model" : "a Transduce checkpoint";
            Say($"init {init}: {origin} ({checkpoint.ModelConfig.Architecture}, {checkpoint.TextConfig.Tokenizer} tokenizer); its architecture, weights, " +
                "tokenizers, vocabularies and text settings are kept (the run configuration's model and text sections are not used); Adam starts afresh");
            // As a new run's initial weights, its dropout depends on the seed alone.
            manual_seed(Config.Training.Seed);
            checkpoint.Model.train();
            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The parameters this run keeps fixed: the parts <see cref="TrainingOptions.Freeze"/> names, and those the model's
    /// family never trains (<see cref="PairEncoding.FixedParameters"/>). A part that matches nothing is refused.
    /// </summary>
    private HashSet<string> FrozenParameters(Checkpoint checkpoint)
    {
        var names = checkpoint.Model.named_parameters().Select(n => n.name).ToList();
        var frozen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in Config.Training.Freeze.Distinct())
        {
            var matched = names.Where(n => Belongs(n, part)).ToList();
            if (matched.Count == 0)
                throw new ArgumentException($"'training.freeze': the {checkpoint.ModelConfig.Architecture} model has no {part.ToString().ToLowerInvariant()} parameters to freeze");
            frozen.UnionWith(matched);
            Say($"freeze {part.ToString().ToLowerInvariant()}: {string.Join(", ", matched)} (and what shares their weights)");
        }
        var fixedByFamily = checkpoint.PairEncoding.FixedParameters.Where(names.Contains).ToList();
        if (fixedByFamily.Count > 0)
        {
            frozen.UnionWith(fixedByFamily);
            Say($"kept fixed as the {checkpoint.PairEncoding.Name} family trains: {string.Join(", ", fixedByFamily)}");
        }
        return frozen;
    }

    /// <summary>Whether the parameter called <paramref name="name"/> is in <paramref name="part"/>.</summary>
    private static bool Belongs(string name, FrozenPart part)
    {
        var path = name.Split('.');
        return part switch
        {
            // Token embeddings, and learned position tables ('positions.weight'; a sinusoid table is no parameter).
            FrozenPart.Embeddings => path.Contains("embedding") || (path.Length >= 2 && path[^2] == "positions"),
            FrozenPart.Encoder => path[0] == "encoder",
            _ => throw new ArgumentOutOfRangeException(nameof(part), part, "unknown part"),
        };
    }
}
