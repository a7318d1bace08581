using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.IO;
using Transduce.Architecture;
using Transduce.Models;
using Transduce.Native;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Checkpoints;

/// <summary>
/// A trained model on disk: one directory holding <c>config.json</c> (model and text configuration),
/// <c>model.safetensors</c> (weights) and the two vocabularies. Loading needs nothing else.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    /// <summary>The <c>format</c> tag of <c>config.json</c>.</summary>
    public const string FormatTag = "transduce-checkpoint";

    /// <summary>File names inside a checkpoint directory.</summary>
    public const string ConfigFile = "config.json", WeightsFile = "model.safetensors",
        SourceVocabularyFile = "source.vocab.json", TargetVocabularyFile = "target.vocab.json", SubwordsFile = "bpe.json",
        SourceSpmFile = "source.spm", TargetSpmFile = "target.spm";

    /// <summary>The model, in eval mode after loading.</summary>
    public required EncoderDecoder Model { get; init; }

    /// <summary>The model configuration.</summary>
    public required ModelConfig ModelConfig { get; init; }

    /// <summary>Text preprocessing used in training.</summary>
    public required TextConfig TextConfig { get; init; }

    /// <summary>Source vocabulary.</summary>
    internal Vocabulary SourceVocabulary { get; init; } = null!;

    /// <summary>Target vocabulary.</summary>
    internal Vocabulary TargetVocabulary { get; init; } = null!;

    /// <summary>The subword model when the text configuration uses the <c>bpe</c> tokenizer.</summary>
    internal BpeTokenizer? Subwords { get; init; }

    /// <summary>The SentencePiece models when the text configuration uses the <c>spm</c> or <c>t5</c> tokenizer.</summary>
    internal SentencePiecePair? SentencePiece { get; init; }

    /// <summary>Decoding defaults.</summary>
    internal Inference.GenerationSettings Generation { get; init; } = new();

    /// <summary>
    /// The tasks of a pretrained model (a T5 folder's <c>task_specific_params</c>) by name, each with its prefix and decoding
    /// settings; saved in <c>config.json</c> as <c>tasks</c> when there are any.
    /// </summary>
    internal IReadOnlyDictionary<string, Inference.TaskSettings> Tasks { get; init; } = new Dictionary<string, Inference.TaskSettings>();

    /// <summary>The languages of a multilingual model (NLLB, M2M100), or null.</summary>
    internal LanguageTable? Languages { get; init; }

    /// <summary>
    /// How training pairs are encoded for this model's family (<see cref="Text.PairEncoding.Default"/> unless a pretrained
    /// family sets its own); saved in <c>config.json</c> as <c>pair_encoding</c> when not the default.
    /// </summary>
    internal PairEncoding PairEncoding { get; init; } = PairEncoding.Default;

    /// <summary>
    /// The same checkpoint with <paramref name="type"/> as its default number type for decoding; it shares the model,
    /// so dispose only one of them.
    /// </summary>
    public Checkpoint WithComputeType(Models.ComputeType type) => WithGeneration(Generation with { ComputeType = type });

    /// <summary>The same checkpoint (sharing the model: dispose only one of them) with other decoding defaults.</summary>
    internal Checkpoint WithGeneration(Inference.GenerationSettings generation) => new()
    {
        Model = Model, ModelConfig = ModelConfig, TextConfig = TextConfig, SourceVocabulary = SourceVocabulary,
        TargetVocabulary = TargetVocabulary, Subwords = Subwords, SentencePiece = SentencePiece, Generation = generation,
        TrainingInfo = TrainingInfo, Languages = Languages, PairEncoding = PairEncoding, Tasks = Tasks,
    };

    /// <summary>The text pipeline (normaliser, tokenizers over the vocabularies) of this checkpoint.</summary>
    internal TextPipeline CreateTextPipeline() => TextPipeline.Create(TextConfig, SourceVocabulary, TargetVocabulary, Subwords, SentencePiece);

    /// <summary>Free-form facts about the training run (epochs, loss, data, time).</summary>
    public IReadOnlyDictionary<string, string> TrainingInfo { get; set; } = new Dictionary<string, string>();

    /// <summary>
    /// Writes the checkpoint to <paramref name="directory"/>. Everything is written into a sibling temporary
    /// directory, flushed to disk, and swapped into place in one step, so a crash never leaves a half-written checkpoint
    /// under that name and a reader never finds it missing. Sub-directories of an existing checkpoint (a run's
    /// <c>best/</c> and <c>history/</c>) stay where they are: they are carried into the new one, and put back if the
    /// save fails.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="writeExtras">Writes further files (training state, plots) into the new directory before it is swapped into place.</param>
    public void Save(string directory, Action<string>? writeExtras = null) => Save(directory, writeExtras, null);

    /// <summary>Test hook: called at the named points of a save ("written", "swapped", "moved:NAME") and may throw.</summary>
    internal static Action<string>? FaultInjection { get; set; }

    internal void Save(string directory, Action<string>? writeExtras, RunLock? runLock)
    {
        string target = Path.GetFullPath(directory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        string parent = Path.GetDirectoryName(target) ?? ".";
        Directory.CreateDirectory(parent);
        string tmp = Path.Combine(parent, $".{Path.GetFileName(target)}.tmp-{Guid.NewGuid():N}");
        string? aside = null;
        Directory.CreateDirectory(tmp);
        try
        {
            var config = new JsonObject
            {
                ["format"] = FormatTag,
                ["version"] = 1,
                ["model"] = JsonSerializer.SerializeToNode(ModelConfig, ModelConfig.Json),
                ["text"] = JsonSerializer.SerializeToNode(TextConfig, ModelConfig.Json),
                ["training"] = JsonSerializer.SerializeToNode(TrainingInfo.ToDictionary(), ModelConfig.Json),
                ["generation"] = JsonSerializer.SerializeToNode(Generation, GenerationJson),
            };
            if (PairEncoding != PairEncoding.Default) config["pair_encoding"] = PairEncoding.Name;
            if (Tasks.Count > 0) config["tasks"] = TasksToJson(Tasks);
            if (Languages is { } languages) config["languages"] = languages.ToJson();
            // A weight shared by several modules (tied or shared embeddings) is stored once, under its first name, as
            // transformers' save_pretrained does: the model's structure ties the other names again when it loads.
            var all = Model.state_dict();
            var weights = ModelConstruction.Aliases(Model).ToDictionary(names => names[0], names => all[names[0]]);
            Safetensors.Save(Path.Combine(tmp, WeightsFile), weights, new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "transduce" });
            SourceVocabulary.Save(Path.Combine(tmp, SourceVocabularyFile));
            TargetVocabulary.Save(Path.Combine(tmp, TargetVocabularyFile));
            Subwords?.Save(Path.Combine(tmp, SubwordsFile));
            if (SentencePiece is { } spm)
            {
                AtomicFile.Write(Path.Combine(tmp, SourceSpmFile), stream => stream.Write(spm.SourceBytes));
                AtomicFile.Write(Path.Combine(tmp, TargetSpmFile), stream => stream.Write(spm.TargetBytes));
            }
            writeExtras?.Invoke(tmp);
            // config.json last: a temporary directory that has it is complete.
            AtomicFile.WriteAllText(Path.Combine(tmp, ConfigFile), config.ToJsonString(ModelConfig.Json));
            runLock?.Prepare(tmp);
            FaultInjection?.Invoke("written");

            if (!Directory.Exists(target))
            {
                Directory.Move(tmp, target);
            }
            else if (DurableDirectory.TryExchange(tmp, target))
            {
                aside = tmp;   // the previous checkpoint, now under the temporary name
            }
            else
            {
                aside = Path.Combine(parent, $".{Path.GetFileName(target)}.old-{Guid.NewGuid():N}");
                Directory.Move(target, aside);
                Directory.Move(tmp, target);
            }
            runLock?.Commit();
            FaultInjection?.Invoke("swapped");
            if (aside is not null) CarrySubdirectories(aside, target, inject: true);
            DurableDirectory.Flush(target);
            DurableDirectory.Flush(parent);
        }
        catch
        {
            runLock?.Abort();
            throw;
        }
        finally
        {
            // Whatever is left aside loses its files but never the run's sub-directories: they go (back) into the checkpoint.
            if (!Directory.Exists(target) && aside is not null && Directory.Exists(aside)) Directory.Move(aside, target);
            foreach (string? leftover in new[] { tmp, aside })
            {
                if (leftover is null || !Directory.Exists(leftover) || leftover == target) continue;
                if (Directory.Exists(target)) CarrySubdirectories(leftover, target);
                if (Directory.GetDirectories(leftover).Length == 0) Directory.Delete(leftover, recursive: true);
            }
        }
    }

    /// <summary>Moves the sub-directories of <paramref name="from"/> that <paramref name="into"/> lacks into it (one rename each).</summary>
    private static void CarrySubdirectories(string from, string into, bool inject = false)
    {
        foreach (string sub in Directory.GetDirectories(from))
        {
            string name = Path.GetFileName(sub);
            string destination = Path.Combine(into, name);
            if (Directory.Exists(destination)) continue;
            Directory.Move(sub, destination);
            if (inject) FaultInjection?.Invoke($"moved:{name}");
        }
    }

    /// <summary>
    /// Loads a checkpoint directory, or a Hugging Face folder of a registered family (MarianMT / OPUS-MT, NLLB-200 / M2M100,
    /// T5 / Flan-T5), converted in memory (its <see cref="TrainingInfo"/> then says which, e.g. <c>converted_from: marian</c>). A missing, truncated or foreign file throws
    /// <see cref="InvalidDataException"/> (or <see cref="FileNotFoundException"/>) naming the file and the problem.
    /// </summary>
    /// <exception cref="DllNotFoundException">The application has no libtorch package (the message names the one to add).</exception>
    public static Checkpoint Load(string directory)
    {
        TorchRuntime.EnsureLoaded();
        if (ForeignFormats.TryConvert(directory) is { } converted) return converted;
        if (!Directory.Exists(directory))
        {
            // A reader never moves a writer's folders; it names the complete copy an interrupted save left.
            string? aside = CompleteLeftovers(directory).FirstOrDefault();
            throw new DirectoryNotFoundException(aside is null
                ? $"{directory}: checkpoint directory not found"
                : $"{directory}: checkpoint directory not found, but an interrupted save left a complete copy in {aside} " +
                  "(resuming the run puts it back, or rename it yourself)");
        }
        string configPath = Path.Combine(directory, ConfigFile);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"{configPath}: not found — is '{directory}' a Transduce checkpoint?", configPath);

        JsonObject root;
        try
        {
            root = JsonNode.Parse(Text.StrictUtf8.ReadText(configPath))?.AsObject()
                ?? throw new InvalidDataException($"{configPath}: empty");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{configPath}: not valid JSON ({ErrorText.OneLine(e.Message)})", e);
        }
        string? format = root["format"] is JsonValue fv && fv.TryGetValue<string>(out var f) ? f : null;
        if (format != FormatTag)
            throw new InvalidDataException($"{configPath}: not a Transduce checkpoint (format is '{format ?? "missing"}', expected '{FormatTag}')");
        int version = root["version"] is JsonValue vv && vv.TryGetValue<int>(out var v) ? v : -1;
        if (version != 1)
            throw new InvalidDataException($"{configPath}: unsupported checkpoint version {version} (this build reads version 1)");

        ModelConfig modelConfig;
        TextConfig textConfig;
        Dictionary<string, string> training;
        Inference.GenerationSettings generation;
        IReadOnlyDictionary<string, Inference.TaskSettings> tasks;
        PairEncoding pairEncoding;
        try
        {
            modelConfig = root["model"]?.Deserialize<ModelConfig>(ModelConfig.Json) ?? throw new InvalidDataException($"{configPath}: missing 'model'");
            textConfig = root["text"]?.Deserialize<TextConfig>(ModelConfig.Json) ?? throw new InvalidDataException($"{configPath}: missing 'text'");
            training = root["training"]?.Deserialize<Dictionary<string, string>>(ModelConfig.Json) ?? [];
            generation = ReadGeneration(root["generation"], configPath);
            tasks = TasksFromJson(root["tasks"], configPath);
            pairEncoding = root["pair_encoding"] is { } pe ? PairEncoding.FromName(pe.GetValue<string>()) : PairEncoding.Default;
            modelConfig.Validate();
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }

        BpeTokenizer? subwords = textConfig.Tokenizer == "bpe" ? BpeTokenizer.Load(Path.Combine(directory, SubwordsFile)) : null;
        SentencePiecePair? sentencePiece = textConfig.UsesSentencePiece
            ? new SentencePiecePair(ReadRequired(directory, SourceSpmFile), ReadRequired(directory, TargetSpmFile),
                Path.Combine(directory, SourceSpmFile), Path.Combine(directory, TargetSpmFile))
            : null;
        var src = Vocabulary.Load(Path.Combine(directory, SourceVocabularyFile));
        var tgt = Vocabulary.Load(Path.Combine(directory, TargetVocabularyFile));
        if (src.Count != modelConfig.SourceVocabSize || tgt.Count != modelConfig.TargetVocabSize)
            throw new InvalidDataException(
                $"{directory}: vocabulary sizes ({src.Count}, {tgt.Count}) differ from the model config ({modelConfig.SourceVocabSize}, {modelConfig.TargetVocabSize})");

        try
        {
            generation.Validate(tgt.Count);
            foreach (var (name, task) in tasks) task.Generation.Validate(tgt.Count, $"tasks.{name}.generation");
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }

        var languages = root["languages"] is JsonObject table ? LanguageTable.FromJson(table, src.Count, tgt.Count, configPath) : null;
        try
        {
            TextPipeline.Create(textConfig, src, tgt, subwords, sentencePiece);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }

        // Sizes come from an untrusted file: check them against what the weights file really stores before building.
        string weightsPath = Path.Combine(directory, WeightsFile);
        modelConfig.CheckFits(WeightFiles.Describe(weightsPath), configPath);

        EncoderDecoder model;
        try
        {
            using (ModelConstruction.WithoutWeights()) model = ModelRegistry.Create(modelConfig); // the file supplies every weight
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }
        try
        {
            LoadWeights(model, weightsPath);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return new Checkpoint
        {
            Model = model, ModelConfig = modelConfig, TextConfig = textConfig,
            SourceVocabulary = src, TargetVocabulary = tgt, TrainingInfo = training, Subwords = subwords,
            SentencePiece = sentencePiece, Generation = generation, PairEncoding = pairEncoding, Languages = languages, Tasks = tasks,
        };
    }

    /// <summary>The <c>tasks</c> table of <c>config.json</c>: name → <c>prefix</c> and <c>generation</c>.</summary>
    private static JsonObject TasksToJson(IReadOnlyDictionary<string, Inference.TaskSettings> tasks)
    {
        var table = new JsonObject();
        foreach (var (name, task) in tasks)
            table[name] = new JsonObject { ["prefix"] = task.Prefix, ["generation"] = JsonSerializer.SerializeToNode(task.Generation, GenerationJson) };
        return table;
    }

    /// <summary>Reads the <c>tasks</c> table (absent in older checkpoints: none), bounded as an import bounds it.</summary>
    private static IReadOnlyDictionary<string, Inference.TaskSettings> TasksFromJson(JsonNode? node, string configPath)
    {
        var tasks = new Dictionary<string, Inference.TaskSettings>(StringComparer.Ordinal);
        if (node is null) return tasks;
        if (node is not JsonObject table) throw new InvalidDataException($"{configPath}: 'tasks' must be an object");
        if (table.Count > Inference.TaskSettings.MaxTasks)
            throw new InvalidDataException($"{configPath}: 'tasks' has {table.Count} entries, more than the {Inference.TaskSettings.MaxTasks} supported");
        foreach (var (name, entry) in table)
        {
            if (Inference.TaskSettings.CheckName(name) is { } problem) throw new InvalidDataException($"{configPath}: 'tasks': {problem}");
            string prefix = entry?["prefix"] is JsonValue p && p.TryGetValue<string>(out var text) && text.Length <= Inference.TaskSettings.MaxPrefixLength
                ? text : throw new InvalidDataException($"{configPath}: 'tasks' '{name}': 'prefix' must be a string of at most {Inference.TaskSettings.MaxPrefixLength} characters");
            var generation = entry["generation"] is { } section
                ? ReadGeneration(section, configPath, $"tasks.{name}.generation")
                : throw new InvalidDataException($"{configPath}: 'tasks' '{name}': missing 'generation'");
            tasks[name] = new Inference.TaskSettings(prefix, generation);
        }
        return tasks;
    }

    /// <summary>
    /// Gives <paramref name="model"/>'s parameters and buffers the tensors of a safetensors file: those built without
    /// weights (<see cref="ModelConstruction.WithoutWeights"/>) become views of the mapped file, the others are copied into.
    /// Missing or unexpected tensors and shape mismatches are reported together, by name, before anything is read.
    /// </summary>
    internal static void LoadWeights(nn.Module model, string path)
    {
        using var file = SafetensorsReader.Open(path);
        var expected = model.state_dict();
        var problems = new List<string>();
        var stored = new Dictionary<string, string>(StringComparer.Ordinal); // each of the model's names → the name the file stores it under
        foreach (var names in ModelConstruction.Aliases(model))
        {
            // One weight under several names (tied embeddings) may be stored under any one of them, or under each.
            var present = names.Where(file.Entries.ContainsKey).ToList();
            if (present.Count == 0)
            {
                problems.Add($"missing tensor '{names[0]}'");
                continue;
            }
            foreach (var name in present)
            {
                var shape = file.Entries[name].Shape;
                if (!shape.SequenceEqual(expected[name].shape))
                    problems.Add($"tensor '{name}' has shape [{string.Join(", ", shape)}], the model needs [{string.Join(", ", expected[name].shape)}]");
            }
            foreach (var name in names) stored[name] = present[0];
        }
        foreach (var name in file.Entries.Keys.Where(k => !expected.ContainsKey(k)))
            problems.Add($"unexpected tensor '{name}'");
        if (problems.Count > 0)
            throw new InvalidDataException($"{path}: weights do not fit the model: {ErrorText.Problems(problems)}");
        var built = expected.Where(kv => kv.Value.device_type != TorchSharp.DeviceType.META).ToList();
        ModelConstruction.Materialize(model, (name, meta) =>
        {
            var t = file.Read(stored[name]);
            if (t.dtype == meta.dtype) return t;
            using (t) return t.to_type(meta.dtype);
        });
        using var _ = no_grad();
        foreach (var (name, t) in built)
        {
            using var source = file.Read(stored[name]);
            t.copy_(source);
        }
    }

    /// <summary>
    /// The <c>generation</c> section of <paramref name="configPath"/> (defaults when absent); a value of the wrong type is
    /// one line naming the file and the field. Its values are checked against the vocabulary once it is known
    /// (<see cref="Inference.GenerationSettings.Validate"/>).
    /// </summary>
    private static Inference.GenerationSettings ReadGeneration(JsonNode? section, string configPath, string name = "generation")
    {
        if (section is null) return new();
        if (section is not JsonObject) throw new InvalidDataException($"{configPath}: '{name}' must be an object (got {ErrorText.OneLine(section.ToJsonString())})");
        try
        {
            return section.Deserialize<Inference.GenerationSettings>(GenerationJson) ?? new();
        }
        catch (JsonException e)
        {
            string field = e.Path is { Length: > 1 } path ? name + path.TrimStart('$') : name;
            throw new InvalidDataException($"{configPath}: '{field}' has a value of the wrong type or an unknown name", e);
        }
    }

    private static readonly JsonSerializerOptions GenerationJson = new(ModelConfig.Json)
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private static byte[] ReadRequired(string directory, string file)
    {
        string path = Path.Combine(directory, file);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found (the checkpoint's text configuration needs it)", path);
        return File.ReadAllBytes(path);
    }

    /// <summary>
    /// Averages the weights of several checkpoints of one model (same configuration, vocabularies and tensor shapes),
    /// as fairseq's and Marian's checkpoint averaging do; the text configuration and vocabularies are the first's.
    /// </summary>
    public static Checkpoint Average(IReadOnlyList<string> directories)
    {
        if (directories.Count == 0) throw new ArgumentException("average: no checkpoints given");
        var first = Load(directories[0]);
        try
        {
            var sum = first.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float64));
            try
            {
                foreach (var directory in directories.Skip(1))
                {
                    using var other = Load(directory);
                    if (other.ModelConfig != first.ModelConfig)
                        throw new InvalidDataException($"{directory}: its model configuration differs from {directories[0]}'s; only checkpoints of one model can be averaged");
                    if (!other.TargetVocabulary.Tokens.SequenceEqual(first.TargetVocabulary.Tokens) || !other.SourceVocabulary.Tokens.SequenceEqual(first.SourceVocabulary.Tokens))
                        throw new InvalidDataException($"{directory}: its vocabularies differ from {directories[0]}'s");
                    foreach (var (name, t) in other.Model.state_dict())
                    {
                        using var d = t.to(ScalarType.Float64);
                        sum[name].add_(d);
                    }
                }
                using var _ = no_grad();
                foreach (var (name, t) in first.Model.state_dict())
                {
                    using var mean = sum[name].div(directories.Count);
                    t.copy_(mean);
                }
            }
            finally
            {
                foreach (var t in sum.Values) t.Dispose();
            }
            first.TrainingInfo = new Dictionary<string, string>(first.TrainingInfo)
            {
                ["averaged_from"] = string.Join(", ", directories.Select(d => Path.GetFileName(Path.GetFullPath(d).TrimEnd('/')))),
            };
            return first;
        }
        catch
        {
            first.Dispose();
            throw;
        }
    }

    /// <summary>The complete copies an interrupted save of <paramref name="directory"/> left beside it, newest first.</summary>
    private static IEnumerable<string> CompleteLeftovers(string directory)
    {
        string target = Path.GetFullPath(directory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        string parent = Path.GetDirectoryName(target) ?? ".";
        if (!Directory.Exists(parent)) return [];
        string name = Path.GetFileName(target);
        return Directory.GetDirectories(parent, $".{name}.tmp-*").Concat(Directory.GetDirectories(parent, $".{name}.old-*"))
            .Where(d => File.Exists(Path.Combine(d, ConfigFile)))
            .OrderByDescending(d => File.GetLastWriteTimeUtc(Path.Combine(d, ConfigFile)));
    }

    /// <summary>
    /// Repairs what an interrupted save of <paramref name="directory"/> left (writers only, under the run's lock): if the
    /// directory is missing, the newest complete copy is moved into place; the sub-directories of every leftover go into
    /// the checkpoint; then the leftovers are deleted.
    /// </summary>
    internal static void Recover(string directory)
    {
        string target = Path.GetFullPath(directory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        string parent = Path.GetDirectoryName(target) ?? ".";
        if (!Directory.Exists(parent)) return;
        if (!Directory.Exists(target) && CompleteLeftovers(target).FirstOrDefault() is { } newest) Directory.Move(newest, target);
        if (!Directory.Exists(target)) return;
        string name = Path.GetFileName(target);
        foreach (string leftover in Directory.GetDirectories(parent, $".{name}.tmp-*").Concat(Directory.GetDirectories(parent, $".{name}.old-*")))
        {
            CarrySubdirectories(leftover, target);
            Directory.Delete(leftover, recursive: true);
        }
        DurableDirectory.Flush(parent);
    }

    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}
