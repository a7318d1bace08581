using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Models;
using Transduce.Native;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>
/// A training run in a run directory: everything <c>transduce train</c> does. It prepares the data and the model from a
/// <see cref="RunConfig"/>, trains with progress events, validates (at the set interval and always on the final weights),
/// keeps the best model in <c>best/</c> and the last saves in <c>history/</c>, stops early, averages the last saves,
/// writes crash-safe checkpoints, and continues exactly where it stopped with <see cref="Resume"/>. The directory is
/// locked while the run is open: a second run on it is refused.
/// </summary>
/// <example>
/// <code>
/// using var run = new TrainingRun(RunConfig.FromPreset("d2l-gru"), "runs/gru");
/// run.Progress += (_, p) => Console.WriteLine($"update {p.Step}: loss {p.Loss:F3}");
/// TrainingSummary summary = run.Run();
/// </code>
/// </example>
public sealed partial class TrainingRun : IDisposable
{
    internal const string ConfigFile = "train.json", StateFile = "trainer.json", OptimizerFile = "optimizer.bin", RngFile = "rng.safetensors",
        BestDirectory = "best", HistoryDirectory = "history";

    private static readonly JsonSerializerOptions StateJson = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private readonly RunLock runLock;
    private readonly IReadOnlyList<SentencePair>? givenPairs, givenValidation;
    private readonly bool resuming;
    private readonly List<double[]> curve = [];
    private readonly List<ValidationResult> validations = [];
    private TrainerFile? saved;
    private bool started;

    /// <summary>
    /// Opens a new run in <paramref name="directory"/> (created if needed). Nothing is read or trained until
    /// <see cref="Run"/>. The pairs may be given in memory; otherwise they are read as <see cref="DataOptions"/> says.
    /// </summary>
    /// <param name="config">The run configuration; checked here (<see cref="ArgumentException"/> names the key).</param>
    /// <param name="directory">The run directory: new, empty, or (with <paramref name="overwrite"/>) an earlier run's.</param>
    /// <param name="trainingPairs">Training pairs, instead of reading <see cref="DataOptions.Train"/>.</param>
    /// <param name="validationPairs">Validation pairs, instead of reading <see cref="ValidationOptions.File"/>.</param>
    /// <param name="overwrite">Start afresh in a directory that holds an earlier run (its files, best model and history are replaced).</param>
    /// <exception cref="DllNotFoundException">The application has no libtorch package (the message names the one to add).</exception>
    public TrainingRun(RunConfig config, string directory, IReadOnlyList<SentencePair>? trainingPairs = null,
        IReadOnlyList<SentencePair>? validationPairs = null, bool overwrite = false)
    {
        config.Validate();
        TorchRuntime.EnsureLoaded();
        Directory = Path.GetFullPath(directory);
        Config = ResolveData(config, trainingPairs is not null);
        givenPairs = trainingPairs;
        givenValidation = validationPairs;
        CheckNeeds(Config, validationPairs is not null, trainingPairs is not null);
        CheckInit(Config, Directory);
        if (System.IO.Directory.Exists(Directory) && System.IO.Directory.EnumerateFileSystemEntries(Directory).Any(e => Path.GetFileName(e) != RunLock.FileName))
        {
            bool isRun = File.Exists(Path.Combine(Directory, ConfigFile));
            if (!isRun)
                throw new IOException($"{directory}: the directory exists and holds other files; a run needs a new or empty directory");
            if (!overwrite)
                throw new IOException($"{directory}: holds a training run already; continue it with --resume {directory}, or start afresh with --overwrite");
        }
        System.IO.Directory.CreateDirectory(Directory);
        runLock = RunLock.Acquire(Directory);
        if (overwrite)
        {
            Checkpoint.Recover(Directory);
            foreach (var entry in new DirectoryInfo(Directory).EnumerateFileSystemInfos().Where(e => e.Name != RunLock.FileName))
            {
                if (entry is DirectoryInfo d) d.Delete(recursive: true);
                else entry.Delete();
            }
        }
    }

    private TrainingRun(string directory, RunLock held, RunConfig config, TrainerFile state,
        IReadOnlyList<SentencePair>? trainingPairs, IReadOnlyList<SentencePair>? validationPairs)
    {
        Directory = directory;
        runLock = held;
        Config = config;
        saved = state;
        resuming = true;
        givenPairs = trainingPairs;
        givenValidation = validationPairs;
        curve.AddRange(state.Curve);
        validations.AddRange(state.Validations ?? []);
    }

    /// <summary>
    /// Opens the run saved in <paramref name="directory"/> to continue it where it stopped (after a crash, a kill or
    /// Ctrl+C); <see cref="Run"/> then reaches the same weights an uninterrupted run would have. A run whose pairs were
    /// given in memory needs them again; the corpus must be the one the run started with (checked by count and hash).
    /// </summary>
    /// <param name="directory">A run directory written by <see cref="Run"/>.</param>
    /// <param name="trainingPairs">The training pairs, when the run was given them in memory.</param>
    /// <param name="validationPairs">The validation pairs, when the run was given them in memory.</param>
    /// <param name="threads">libtorch threads for the rest of the run, instead of the configured ones.</param>
    /// <exception cref="DllNotFoundException">The application has no libtorch package (the message names the one to add).</exception>
    public static TrainingRun Resume(string directory, IReadOnlyList<SentencePair>? trainingPairs = null,
        IReadOnlyList<SentencePair>? validationPairs = null, int? threads = null)
    {
        TorchRuntime.EnsureLoaded();
        string full = Path.GetFullPath(directory);
        string settings = Path.Combine(full, ConfigFile);
        var notARun = new FileNotFoundException($"{Path.Combine(directory, ConfigFile)}: not found — '{directory}' is not a resumable training checkpoint", settings);
        if (!File.Exists(settings) && !HasLeftovers(full)) throw notARun;
        var held = System.IO.Directory.Exists(full) ? RunLock.Acquire(full) : null;
        try
        {
            // Only a writer repairs what an interrupted save left, and only under the lock.
            Checkpoint.Recover(full);
            Checkpoint.Recover(Path.Combine(full, BestDirectory));
            held ??= System.IO.Directory.Exists(full) ? RunLock.Acquire(full) : null;
            if (held is null || !File.Exists(settings)) throw notARun;
            var config = RunConfigFile.ReadRunFile(settings);
            if (threads is not null) config = config with { Training = config.Training with { Threads = threads } };
            var state = ReadState(Path.Combine(full, StateFile));
            return new TrainingRun(full, held, config, state, trainingPairs, validationPairs);
        }
        catch
        {
            held?.Dispose();
            throw;
        }
    }

    private static bool HasLeftovers(string full)
    {
        string? parent = Path.GetDirectoryName(full);
        return parent is not null && System.IO.Directory.Exists(parent)
            && System.IO.Directory.GetDirectories(parent, $".{Path.GetFileName(full)}.*-*").Length > 0;
    }

    /// <summary>The configuration of the run, with its data paths resolved (what <c>train.json</c> holds).</summary>
    public RunConfig Config { get; private set; }

    /// <summary>The run directory (full path). It is the last checkpoint; <c>best/</c> and <c>history/</c> are inside.</summary>
    public string Directory { get; }

    /// <summary>The training loss curve so far: the mean loss of every 10 updates, at its fractional epoch.</summary>
    public IReadOnlyList<(double Epoch, double Loss)> LossCurve => [.. curve.Select(c => (c[0], c[1]))];

    /// <summary>Every validation so far, including those of earlier sessions of a resumed run.</summary>
    public IReadOnlyList<ValidationResult> Validations => validations;

    /// <summary>After every optimiser update.</summary>
    public event EventHandler<TrainingProgress>? Progress;

    /// <summary>After every epoch (also the partial last one of a run cut short).</summary>
    public event EventHandler<EpochResult>? EpochCompleted;

    /// <summary>After every validation, with whether it is the best so far.</summary>
    public event EventHandler<ValidationResult>? Validated;

    /// <summary>What the run is doing: data read, model built, resumed, early stop.</summary>
    public event EventHandler<string>? Message;

    /// <summary>Things a user should know that do not stop the run (skipped corpus lines).</summary>
    public event EventHandler<string>? Warning;

    /// <summary>For the training bench: the prepared model and encoded pairs, before the first update.</summary>
    internal event Action<Checkpoint, IReadOnlyList<EncodedPair>>? DataPrepared;

    /// <summary>
    /// While a checkpoint is written: the argument is the directory being written, before it replaces the run
    /// directory, so handlers can add files of their own (the CLI draws <c>loss.png</c> from <see cref="LossCurve"/>).
    /// </summary>
    public event EventHandler<string>? CheckpointWriting;

    /// <summary>
    /// A corpus whose files hold more bytes than this is streamed into the run directory's token shards (<c>data/</c>) and
    /// trained from them (as <c>prepare</c> then <c>train --resume</c>), not read into memory: 256 MiB (about two million
    /// pairs of short sentences). Both ways give the same weights; streaming costs a second pass and the shards on disk.
    /// </summary>
    internal long StreamAboveBytes { get; init; } = 256L << 20;

    /// <summary>Whether <see cref="Run"/> streams the corpus (<see cref="StreamAboveBytes"/>; several corpora always stream).</summary>
    private bool StreamsCorpus()
    {
        if (givenPairs is not null) return false;
        if (Config.Data.Corpora is not null) return true;
        static long Bytes(string? path) => path is not null && File.Exists(path) ? new FileInfo(path).Length : 0;
        return Bytes(Config.Data.Train) + Bytes(Config.Data.Target) > StreamAboveBytes;
    }

    /// <summary>
    /// Trains until the last epoch, the time limit, <see cref="TrainingOptions.MaxUpdates"/>, early stopping or
    /// <paramref name="cancellation"/>; then validates the final weights (and their average with the last saves, when
    /// asked) so that <c>best/</c> holds the best of all candidates. A checkpoint is written at every epoch end,
    /// every <see cref="TrainingOptions.SaveEverySteps"/> updates and when the run stops.
    /// </summary>
    /// <param name="cancellation">Stops the run after the current update; the run is saved and can be resumed.</param>
    public TrainingSummary Run(CancellationToken cancellation = default)
    {
        if (started) throw new InvalidOperationException("a TrainingRun runs once; open it again with TrainingRun.Resume to continue");
        started = true;
        if (Config.Training.Threads is int n) set_num_threads(n);
        // 'auto' is measured on the run's threads before anything is saved, so train.json (and a resume) holds the choice.
        var (precision, why) = TrainingPrecisions.Resolve(Config.Training.Precision);
        if (precision != Config.Training.Precision) Config = Config with { Training = Config.Training with { Precision = precision } };
        var t = Config.Training;
        // Several corpora, or one larger than StreamAboveBytes, are prepared into token shards and trained from them, as
        // after `prepare`: the corpus is never held in memory.
        using var prepared = resuming ? PrepareResume()
            : StreamsCorpus() ? PrepareStreamed(TokenShards.DefaultShardPairs, readValidation: true).Prepared
            : PrepareNew();
        var checkpoint = prepared.Checkpoint;
        var model = checkpoint.Model;
        var tgt = checkpoint.TargetVocabulary;
        var ids = checkpoint.PairEncoding.Ids(tgt);
        var frozen = FrozenParameters(checkpoint);
        Say($"train {prepared.CorpusName}: {prepared.Pairs.Count:N0} pairs, vocab {checkpoint.SourceVocabulary.Count:N0}/{tgt.Count:N0}, " +
            $"{checkpoint.ModelConfig.Architecture} {Trainer.DistinctParameters(model).Sum(p => p.numel()):N0} parameters, {get_num_threads()} threads, {t.Precision.Name()}" + (why.Length > 0 ? $" ({why})" : "") +
            (Config.Preset is { } p ? $", preset {p}" : ""));

        DataPrepared?.Invoke(checkpoint, prepared.Pairs);
        Validator? validator = prepared.Validation is { Count: > 0 } vp ? new Validator(vp, context: EncodingContext(checkpoint)) : null;
        using var stopEarly = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        bool earlyStopped = false;
        int lastStep = saved?.Position.Step ?? 0;
        // Validation by the clock (a fraction of the time limit), counted from the run's start: a resumed run keeps its schedule.
        var clock = validator is not null && Config.Validation.Every is null && Config.Validation.EveryFraction is double fraction && t.TimeLimit is { } limit
            ? new ValidationClock(limit, fraction, TimeSpan.FromSeconds(prepared.Resume?.Position.ElapsedSeconds ?? 0))
            : null;
        const int Window = 10;
        double window = 0;
        int windowSteps = 0;

        void OnStep(TrainingProgress progress)
        {
            lastStep = progress.Step;
            window += progress.Loss;
            if (++windowSteps >= Window || progress.Step == progress.TotalSteps)
            {
                curve.Add([progress.Step * t.Epochs / (double)progress.TotalSteps, window / windowSteps]);
                window = 0;
                windowSteps = 0;
            }
            Progress?.Invoke(this, progress);
            if (validator is not null && (Config.Validation.Every is int every ? progress.Step % every == 0 : clock?.Due(progress.Elapsed) == true))
                earlyStopped |= ValidateAndKeep(validator, checkpoint, progress.Step, $"update {progress.Step}", averaged: false, stopEarly);
        }

        void OnEpoch(EpochResult epoch)
        {
            EpochCompleted?.Invoke(this, epoch);
            if (validator is not null && Config.Validation.Every is null && clock is null && (validations.Count == 0 || validations[^1].Step != lastStep))
                earlyStopped |= ValidateAndKeep(validator, checkpoint, lastStep, $"update {lastStep}", averaged: false, stopEarly);
        }

        var result = Trainer.Train(model, prepared.Pairs, ids, Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength),
            t, OnStep, OnEpoch, stopEarly.Token, snapshot => Save(checkpoint, prepared, snapshot), prepared.Resume, frozen, Weights(prepared.Pairs));
        var stop = earlyStopped ? TrainingStop.EarlyStop : result.Stop;

        // The final weights are a candidate like any other: a run that stops between two validations validates them now.
        if (validator is not null && validations.Where(v => !v.Averaged).Select(v => v.Step).DefaultIfEmpty(-1).Max() < result.Steps)
            ValidateAndKeep(validator, checkpoint, result.Steps, $"the final weights (update {result.Steps})", averaged: false, null);
        if (validator is not null && t.AverageLast is int k && !validations.Any(v => v.Averaged && v.Step == result.Steps))
            ValidateAverage(validator, k, result.Steps);

        var examples = Config.Examples.Count == 0 ? [] : TranslateExamples(checkpoint);
        var best = Best();
        return new TrainingSummary(Directory, stop, result.Steps, result.Epochs.Count, result.Elapsed, result.TokensPerSecond,
            result.PaddingFraction, result.Epochs.LastOrDefault()?.Loss, best, best is null ? null : Path.Combine(Directory, BestDirectory),
            validations.ToList(), examples);
    }

    /// <summary>Runs <see cref="Run"/> on the thread pool.</summary>
    public Task<TrainingSummary> RunAsync(CancellationToken cancellation = default) => Task.Run(() => Run(cancellation), CancellationToken.None);

    /// <summary>Closes the run and releases the run directory's lock.</summary>
    public void Dispose() => runLock.Dispose();

    private void Say(string text) => Message?.Invoke(this, text);

    // ---- the run directory's state ----

    private static TrainerFile ReadState(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found — the run directory is incomplete", path);
        try
        {
            return JsonSerializer.Deserialize<TrainerFile>(Text.StrictUtf8.ReadText(path), StateJson) ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid ({e.Message})", e);
        }
    }

    /// <summary>
    /// Says which weights a checkpoint directory holds, for <c>translate</c> and <c>evaluate</c> to tell the user: a run
    /// directory's last weights (and where its best model is), or a best model's origin and score. Null for a checkpoint
    /// that carries no training facts (a converted Marian model).
    /// </summary>
    public static string? DescribeWeights(string directory)
    {
        string config = Path.Combine(directory, Checkpoint.ConfigFile);
        if (!File.Exists(config)) return null;
        var info = ReadTrainingInfo(config);
        if (info.TryGetValue("best_weights", out var weights) || info.TryGetValue("best_update", out weights))
            return $"{directory}: the best validated weights of their run, {(weights.All(char.IsAsciiDigit) ? $"update {weights}" : weights)} " +
                   $"(valid BLEU {info.GetValueOrDefault("valid_bleu", "?")}, loss {info.GetValueOrDefault("valid_loss", "?")})";
        if (!info.TryGetValue("updates", out var updates)) return null;
        string best = Path.Combine(directory, BestDirectory);
        string bestNote = File.Exists(Path.Combine(best, Checkpoint.ConfigFile)) && ReadTrainingInfo(Path.Combine(best, Checkpoint.ConfigFile)) is var b
            ? $"; the best validated model is {best} ({b.GetValueOrDefault("best_weights", "update " + b.GetValueOrDefault("best_update", "?"))}, valid BLEU {b.GetValueOrDefault("valid_bleu", "?")})"
            : "";
        return $"{directory}: the last weights of the run (update {updates}){bestNote}";
    }

    private static Dictionary<string, string> ReadTrainingInfo(string configPath)
    {
        try
        {
            var root = System.Text.Json.Nodes.JsonNode.Parse(Text.StrictUtf8.ReadText(configPath));
            return root?["training"]?.Deserialize<Dictionary<string, string>>() ?? [];
        }
        catch (Exception e) when (e is JsonException or IOException or InvalidOperationException)
        {
            return [];
        }
    }
}

/// <summary>What a training run did, and which model is best.</summary>
/// <param name="Directory">The run directory (the last weights).</param>
/// <param name="Stop">What ended the run.</param>
/// <param name="Updates">Optimiser updates in all.</param>
/// <param name="Epochs">Epochs begun in all (the last may be partial).</param>
/// <param name="Elapsed">Training time in all.</param>
/// <param name="TokensPerSecond">Target tokens per second of training.</param>
/// <param name="PaddingFraction">Share of computed target positions that were padding.</param>
/// <param name="FinalLoss">Training loss of the last epoch.</param>
/// <param name="Best">The best validation (null without validation); its weights are in <paramref name="BestDirectory"/>.</param>
/// <param name="BestDirectory">Where the best model is (<c>best/</c>), or null without validation.</param>
/// <param name="Validations">Every validation of the run.</param>
/// <param name="Examples">The configuration's example sentences, translated by the final weights.</param>
public sealed record TrainingSummary(string Directory, TrainingStop Stop, int Updates, int Epochs, TimeSpan Elapsed, double TokensPerSecond,
    double PaddingFraction, double? FinalLoss, ValidationResult? Best, string? BestDirectory, IReadOnlyList<ValidationResult> Validations,
    IReadOnlyList<ExampleTranslation> Examples);

/// <summary>An example sentence after training.</summary>
/// <param name="Source">The sentence.</param>
/// <param name="Translation">The model's translation.</param>
/// <param name="Bleu">The book's sentence BLEU (k = 2) against the reference.</param>
public sealed record ExampleTranslation(string Source, string Translation, double Bleu);

/// <summary>The training pairs a run started on: how many, and a hash of their text.</summary>
internal sealed record CorpusFingerprint(int Pairs, string Sha256)
{
    public static CorpusFingerprint Of(IEnumerable<SentencePair> pairs)
    {
        using var builder = new Builder();
        foreach (var p in pairs) builder.Add(p);
        return builder.Build();
    }

    /// <summary>The fingerprint of pairs given one at a time (a corpus streamed through once).</summary>
    internal sealed class Builder : IDisposable
    {
        private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private byte[] buffer = new byte[256];
        private int pairs;

        public void Add(SentencePair p)
        {
            Append(p.Source);
            hash.AppendData("\t"u8);
            Append(p.Target);
            hash.AppendData("\n"u8);
            pairs++;
        }

        private void Append(string text)
        {
            int most = Encoding.UTF8.GetMaxByteCount(text.Length);
            if (buffer.Length < most) buffer = new byte[Math.Max(most, buffer.Length * 2)];
            hash.AppendData(buffer, 0, Encoding.UTF8.GetBytes(text, buffer));
        }

        public CorpusFingerprint Build() => new(pairs, Convert.ToHexStringLower(hash.GetHashAndReset()));

        public void Dispose() => hash.Dispose();
    }
}

/// <summary>What <c>trainer.json</c> holds: the position in the run, the loss curve, the validations and the corpus.</summary>
internal sealed record TrainerFile(TrainingPosition Position, List<double[]> Curve, List<ValidationResult>? Validations = null, CorpusFingerprint? Corpus = null);
