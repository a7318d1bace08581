using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Evaluation;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Text;
using Transduce.Training;
using ValidationResult = Transduce.Training.ValidationResult;
using static TorchSharp.torch;

namespace Transduce.Cli.Commands;

/// <summary>Everything a run needs besides the data itself; stored in the checkpoint so <c>--resume</c> needs nothing else.</summary>
internal sealed record TrainSettings(
    string Data, string? DataTarget, string Out, string Preset, string Architecture, int Embedding, int Hidden, int Layers,
    int Heads, int Ffn, string Activation, bool PreNorm, bool Tie, bool Share, double Dropout,
    int? MaxSteps, int? TrainPairs, int? VocabularyPairs, int MinFrequency, string Normalizer, string Tokenizer, int BpeVocab,
    int? Threads, bool SkipInvalid, TrainingOptions Options,
    string? Valid = null, int? ValidEvery = null, int? ValidMax = null, string KeepBest = "bleu", int? Patience = null, int? KeepLast = null,
    string? SourceLanguage = null, string? TargetLanguage = null, string? SpmModel = null, string? SpmTargetModel = null);

/// <summary>What <c>trainer.json</c> holds: the position in the run and the loss curve so far.</summary>
internal sealed record TrainerFile(TrainingPosition Position, List<double[]> Curve, List<ValidationResult>? Validations = null);

internal static class TrainCommand
{
    private const string SettingsFile = "train.json", TrainerStateFile = "trainer.json", OptimizerFile = "optimizer.bin",
        RngFile = "rng.safetensors", LossCurveFile = "loss.png";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static Command Create()
    {
        var command = new Command("train", "Train a model and write a checkpoint directory (resumable with --resume).");
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this checkpoint directory exactly where it stopped (or from the weights and position a DDP run wrote: a fresh optimiser)." };
        command.Add(resume);
        var settingsOf = AddRunOptions(command);
        command.SetAction(r => r.GetValue(resume) is { } resumeDir ? Resume(resumeDir, r.GetValue<int?>("--threads")) : Start(settingsOf(r)));
        return command;
    }

    /// <summary>
    /// Adds every option that describes a run (data, text, model, training) to <paramref name="command"/> and returns
    /// how to read them into settings: <c>train</c> and <c>prepare</c> take the same run with the same flags.
    /// </summary>
    internal static Func<ParseResult, TrainSettings> AddRunOptions(Command command)
    {
        string name = command.Name;
        var data = new Option<string>("--data") { Description = "Corpus: a tab-separated file, a folder with fra.txt, a source-side text file (with --data-target), or a known corpus name (fra-eng, downloaded into the cache).", DefaultValueFactory = _ => "fra-eng" };
        var dataTarget = new Option<string?>("--data-target") { Description = "Target-side text file aligned line by line with the --data source file." };
        var preset = new Option<string?>("--preset") { Description = $"A complete setting: {string.Join(", ", TrainingPreset.All.Keys)}. Other flags override it." };
        preset.AcceptOnlyFromAmong([.. TrainingPreset.All.Keys]);
        var output = new Option<string?>("--out") { Description = name == "train" ? "Checkpoint directory to write (required unless --resume)." : "Directory to write (required)." };
        var arch = new Option<string?>("--model") { Description = "Architecture: gru, bahdanau or transformer." };
        arch.AcceptOnlyFromAmong([.. ModelFactory.Architectures]);
        var heads = new Option<int?>("--heads") { Description = "Transformer attention heads (default 4)." };
        var ffn = new Option<int?>("--ffn") { Description = "Transformer feed-forward width (default 64)." };
        var activation = new Option<string?>("--activation") { Description = "Transformer feed-forward activation: relu, gelu or swish (default relu)." };
        var preNorm = new Option<bool>("--pre-norm") { Description = "Transformer: layer norm before each sub-layer (default: post-norm, as the book)." };
        var tie = new Option<bool>("--tie-embeddings") { Description = "Transformer: output projection shares the target embedding." };
        var share = new Option<bool>("--share-embeddings") { Description = "Transformer: encoder and decoder share one embedding (builds one joint vocabulary)." };
        var embed = new Option<int?>("--embed") { Description = "Embedding size (default 256)." };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden size (default 256)." };
        var layers = new Option<int?>("--layers") { Description = "Layers (default 2)." };
        var dropout = new Option<double?>("--dropout") { Description = "Dropout (default 0.2)." };
        var epochs = new Option<int?>("--epochs") { Description = "Epochs (default 30)." };
        var batch = new Option<int?>("--batch-size") { Description = "Sentence pairs per batch (default 128)." };
        var lr = new Option<double?>("--lr") { Description = "Adam learning rate (default 0.005)." };
        var schedule = new Option<string?>("--schedule") { Description = "Learning-rate schedule: constant (default) or inverse-sqrt (linear warm-up, then 1/√step)." };
        schedule.AcceptOnlyFromAmong("constant", "inverse-sqrt");
        var warmup = new Option<int?>("--warmup") { Description = "Warm-up updates of the inverse-sqrt schedule (default 4000)." };
        var smoothing = new Option<double?>("--label-smoothing") { Description = "Label smoothing ε (default 0)." };
        var accumulate = new Option<int?>("--accumulate") { Description = "Mini-batches per optimiser update (gradient accumulation, default 1)." };
        var clip = new Option<double?>("--clip") { Description = "Gradient-norm clip, 0 for none (default 1)." };
        var seed = new Option<int>("--seed") { Description = "Random seed (initialisation, dropout, batch order).", DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Cut sentences to this many tokens incl. <eos> (d2l's num_steps); default: no cut." };
        var maxPairs = new Option<int?>("--max-pairs") { Description = "Train on the first N pairs only." };
        var minFreq = new Option<int?>("--min-freq") { Description = "Minimum token frequency for the vocabularies (default 1)." };
        var normalize = new Option<string?>("--normalize") { Description = "Text normaliser: d2l (lower-case, space before punctuation) or none." };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "word (d2l: split on spaces), bpe (joint subword vocabulary trained on the data; cased, natural output) or spm (the SentencePiece model of --spm-model). Default: word." };
        tokenizer.AcceptOnlyFromAmong("word", "bpe", "spm");
        var spmModel = new Option<string?>("--spm-model") { Description = "SentencePiece model (.model/.spm, e.g. from spm_train) for --tokenizer spm; the source side's too when --spm-target-model is given." };
        var spmTargetModel = new Option<string?>("--spm-target-model") { Description = "SentencePiece model of the target side (default: --spm-model)." };
        var bpeSize = new Option<int?>("--bpe-vocab") { Description = "BPE vocabulary size (with --tokenizer bpe; default 8000)." };
        var timeLimit = new Option<double?>("--time-limit") { Description = "Stop after this many minutes of training (a checkpoint is written either way)." };
        var saveEvery = new Option<int?>("--save-every") { Description = "Also write a resumable checkpoint every N updates (default: every epoch)." };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads (default: all cores)." };
        var bucketed = new Option<bool>("--bucketed") { Description = "Length-bucketed batches: similar lengths together, little padding." };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Length-bucketed batches of at most N padded tokens (implies --bucketed)." };
        var skipInvalid = new Option<bool>("--skip-invalid") { Description = "Skip malformed corpus lines (and count them) instead of stopping." };
        var valid = new Option<string?>("--valid") { Description = "Validation corpus (tab-separated): loss and greedy BLEU at every epoch end (or --valid-every)." };
        var validEvery = new Option<int?>("--valid-every") { Description = "Validate every N updates instead of at epoch ends." };
        var validMax = new Option<int?>("--valid-max") { Description = "Validate on the first N pairs only." };
        var keepBest = new Option<string>("--keep-best") { Description = "Keep the best model so far in OUT/best by this validation metric: bleu or loss.", DefaultValueFactory = _ => "bleu" };
        keepBest.AcceptOnlyFromAmong("bleu", "loss");
        var patience = new Option<int?>("--patience") { Description = "Stop early after N validations without improvement." };
        var sourceLanguage = new Option<string?>("--source-language") { Description = "Name of the source language, shown by serve (e.g. English)." };
        var targetLanguage = new Option<string?>("--target-language") { Description = "Name of the target language, shown by serve (e.g. French)." };
        var keepLast = new Option<int?>("--keep-last") { Description = "Also keep the models of the last K saves in OUT/history (for transduce average)." };

        foreach (var option in new Option[]
        {
            data, dataTarget, preset, output, arch, heads, ffn, activation, preNorm, tie, share, embed, hidden, layers, dropout,
            epochs, batch, lr, schedule, warmup, smoothing, accumulate, clip, seed, maxSteps, maxPairs, minFreq, normalize, tokenizer,
            bpeSize, spmModel, spmTargetModel, timeLimit, saveEvery, threads, bucketed, maxTokens, skipInvalid, valid, validEvery, validMax, keepBest, patience, keepLast,
            sourceLanguage, targetLanguage,
        }) command.Add(option);
        return r =>
        {
            string outDir = r.GetValue(output) ?? throw new ArgumentException(name == "train" ? "train: --out DIR is required (or --resume DIR)" : $"{name}: --out DIR is required");
            var p = r.GetValue(preset) is { } presetName ? TrainingPreset.All[presetName] : new TrainingPreset { Name = "custom", Description = "flags" };
            var t = p.Training;
            var options = t with
            {
                Epochs = r.GetValue(epochs) ?? t.Epochs,
                BatchSize = r.GetValue(batch) ?? t.BatchSize,
                LearningRate = r.GetValue(lr) ?? t.LearningRate,
                Schedule = r.GetValue(schedule) ?? t.Schedule,
                WarmupSteps = r.GetValue(warmup) ?? t.WarmupSteps,
                LabelSmoothing = r.GetValue(smoothing) ?? t.LabelSmoothing,
                AccumulateSteps = r.GetValue(accumulate) ?? t.AccumulateSteps,
                GradientClip = r.GetValue(clip) ?? t.GradientClip,
                Seed = r.GetValue(seed),
                TimeLimit = r.GetValue(timeLimit) is double minutes ? TimeSpan.FromMinutes(minutes) : t.TimeLimit,
                SaveEverySteps = r.GetValue(saveEvery) ?? t.SaveEverySteps,
                Bucketed = r.GetValue(bucketed) || r.GetValue(maxTokens) is not null || t.Bucketed,
                MaxTokens = r.GetValue(maxTokens) ?? t.MaxTokens,
            };
            string tokenizerName = r.GetValue(tokenizer) ?? p.Tokenizer;
            bool bpe = tokenizerName == "bpe", spm = tokenizerName == "spm";
            if (spm && r.GetValue(spmModel) is null) throw new ArgumentException($"{name}: --tokenizer spm needs --spm-model FILE");
            if (!spm && (r.GetValue(spmModel) ?? r.GetValue(spmTargetModel)) is not null) throw new ArgumentException($"{name}: --spm-model needs --tokenizer spm");
            // A folder holding the preset's split files (train.tsv, valid.tsv): train on the split, validate on the other.
            string dataPath = r.GetValue(data)!;
            string? validPath = r.GetValue(valid);
            if (Directory.Exists(dataPath))
            {
                if (validPath is null && p.ValidFile is { } vf && File.Exists(Path.Combine(dataPath, vf))) validPath = Path.Combine(dataPath, vf);
                if (p.TrainFile is { } tf && File.Exists(Path.Combine(dataPath, tf))) dataPath = Path.Combine(dataPath, tf);
            }
            var settings = new TrainSettings(
                Data: dataPath, DataTarget: r.GetValue(dataTarget), Out: outDir, Preset: p.Name,
                Architecture: r.GetValue(arch) ?? p.Architecture,
                Embedding: r.GetValue(embed) ?? p.EmbeddingSize, Hidden: r.GetValue(hidden) ?? p.HiddenSize, Layers: r.GetValue(layers) ?? p.Layers,
                Heads: r.GetValue(heads) ?? p.Heads, Ffn: r.GetValue(ffn) ?? p.FfnSize, Activation: r.GetValue(activation) ?? "relu",
                PreNorm: r.GetValue(preNorm) || p.PreNorm, Tie: r.GetValue(tie) || p.TieEmbeddings, Share: r.GetValue(share) || p.ShareEmbeddings,
                Dropout: r.GetValue(dropout) ?? p.Dropout,
                MaxSteps: r.GetValue(maxSteps) ?? p.MaxSteps, TrainPairs: r.GetValue(maxPairs) ?? p.TrainPairs,
                VocabularyPairs: r.GetValue(maxPairs) is null ? p.VocabularyPairs : null,
                MinFrequency: r.GetValue(minFreq) ?? p.MinFrequency,
                Normalizer: r.GetValue(normalize) ?? (bpe || spm ? "none" : p.Normalizer),
                Tokenizer: tokenizerName, BpeVocab: r.GetValue(bpeSize) ?? p.BpeVocabSize,
                Threads: r.GetValue(threads), SkipInvalid: r.GetValue(skipInvalid), Options: options,
                Valid: validPath, ValidEvery: r.GetValue(validEvery) ?? (validPath is null ? null : p.ValidEvery), ValidMax: r.GetValue(validMax),
                KeepBest: r.GetValue(keepBest)!, Patience: r.GetValue(patience), KeepLast: r.GetValue(keepLast),
                SourceLanguage: r.GetValue(sourceLanguage), TargetLanguage: r.GetValue(targetLanguage),
                SpmModel: r.GetValue(spmModel), SpmTargetModel: r.GetValue(spmTargetModel));
            if (settings.Patience is not null && settings.Valid is null) throw new ArgumentException($"{name}: --patience needs --valid FILE");
            return settings;
        };
    }

    private static IReadOnlyList<SentencePair> ReadCorpus(TrainSettings s, out string corpusName)
    {
        int? readPairs = s.TrainPairs is int tp ? Math.Max(tp, s.VocabularyPairs ?? 0) : null;
        var options = new CorpusReadOptions { SkipInvalid = s.SkipInvalid, MaxPairs = readPairs };
        CorpusReadResult read;
        if (s.DataTarget is { } targetFile)
        {
            read = ParallelCorpus.ReadAligned(s.Data, targetFile, options);
            corpusName = $"{Path.GetFileName(s.Data)} + {Path.GetFileName(targetFile)}";
        }
        else
        {
            string path = CorpusLocator.Resolve(s.Data);
            read = ParallelCorpus.Read(path, options);
            corpusName = path;
        }
        if (read.SkippedLines > 0)
            Console.Error.WriteLine($"skipped {read.SkippedLines} malformed line(s) of {corpusName}; first: {read.SkipReasons.FirstOrDefault()}");
        return read.Pairs;
    }

    private static int Start(TrainSettings s)
    {
        var (checkpoint, pairs, corpusName) = Begin(s);
        return Run(s, checkpoint, pairs, corpusName, null, [], []);
    }

    /// <summary>
    /// Everything a run has before its first update (<see cref="Preparation.Begin"/>): the corpus read, the text side learnt,
    /// the pairs encoded, the model initialised under the seed; <c>train</c> goes on to train it, <c>prepare</c> writes it down.
    /// </summary>
    internal static (Checkpoint Start, IReadOnlyList<EncodedPair> Pairs, string CorpusName) Begin(TrainSettings s)
    {
        if (s.Threads is int n) set_num_threads(n);
        var all = ReadCorpus(s, out string corpusName);
        var train = s.TrainPairs is int take ? all.Take(take).ToList() : all;
        var vocabPairs = s.VocabularyPairs is int vp && s.TrainPairs is not null ? all.Take(vp).ToList() : null;

        var textConfig = new TextConfig { Normalizer = s.Normalizer, Tokenizer = s.Tokenizer, MaxSteps = s.MaxSteps };
        var learning = new TextLearning
        {
            BpeVocabSize = s.BpeVocab, MinFrequency = s.MinFrequency, JointVocabulary = s.Share, VocabularyPairs = vocabPairs,
            SentencePiece = s.SpmModel is { } spm ? new SentencePiecePair(ReadModelFile(spm), ReadModelFile(s.SpmTargetModel ?? spm)) : null,
        };
        var model = new ModelConfig
        {
            Architecture = s.Architecture,
            EmbeddingSize = s.Architecture == "transformer" ? s.Hidden : s.Embedding, HiddenSize = s.Hidden, Layers = s.Layers,
            Dropout = s.Dropout, Heads = s.Heads, FfnSize = s.Ffn, Activation = s.Activation,
            PreNorm = s.PreNorm, TieEmbeddings = s.Tie, ShareEmbeddings = s.Share,
        };
        var started = DateTime.UtcNow;
        var (checkpoint, pairs) = Preparation.Begin(train, textConfig, model, s.Options.Seed, learning);
        if (checkpoint.Subwords is { } subwords)
            Console.WriteLine($"bpe: {subwords.Vocabulary.Count:N0} pieces (joint); text prepared in {(DateTime.UtcNow - started).TotalSeconds:F1}s");
        return (checkpoint, pairs, corpusName);
    }

    private static byte[] ReadModelFile(string path) =>
        File.Exists(path) ? File.ReadAllBytes(path) : throw new FileNotFoundException($"{path}: SentencePiece model not found", path);

    /// <summary>
    /// Writes what <c>train --resume</c> needs besides the checkpoint itself at the start of a run: the settings, the start
    /// position and the random generator's state after initialisation (no optimiser state: Adam starts empty).
    /// </summary>
    internal static void WriteStartState(string directory, TrainSettings s)
    {
        AtomicFile.WriteAllText(Path.Combine(directory, SettingsFile), JsonSerializer.Serialize(s, Json));
        AtomicFile.WriteAllText(Path.Combine(directory, TrainerStateFile), JsonSerializer.Serialize(new TrainerFile(TrainingPosition.Start, [], []), Json));
        using var rngState = get_rng_state();
        Safetensors.Save(Path.Combine(directory, RngFile), new Dictionary<string, Tensor> { ["rng"] = rngState });
    }

    private static int Resume(string directory, int? threads)
    {
        string settingsPath = Path.Combine(directory, SettingsFile);
        Checkpoint.Recover(directory);
        if (!File.Exists(settingsPath))
            throw new FileNotFoundException($"{settingsPath}: not found — '{directory}' is not a resumable training checkpoint");
        var s = ReadJson<TrainSettings>(settingsPath) with { Out = directory };
        if (threads is not null) s = s with { Threads = threads };
        if (s.Threads is int n) set_num_threads(n);
        var state = ReadJson<TrainerFile>(Path.Combine(directory, TrainerStateFile));
        var checkpoint = Checkpoint.Load(directory);
        checkpoint.Model.train();

        // A prepared folder, or a checkpoint trained on one (e.g. by the PyTorch DDP trainer), names its token shards:
        // the very ids it was trained on, with no corpus to read and tokenize again.
        string corpusName;
        IReadOnlyList<EncodedPair> pairs;
        if (Preparation.TryReadPairs(directory) is { } shards)
        {
            pairs = shards;
            corpusName = Path.Combine(directory, Preparation.ShardsFolder);
        }
        else
        {
            var all = ReadCorpus(s, out corpusName);
            var train = s.TrainPairs is int take ? all.Take(take).ToList() : all;
            pairs = TranslationData.Prepare(train, checkpoint.CreateTextPipeline(),
                sourceVocabulary: checkpoint.SourceVocabulary, targetVocabulary: checkpoint.TargetVocabulary).Pairs;
        }

        // A checkpoint written by another trainer (the DDP trainer) has weights and a position but neither our optimiser's
        // state nor our random generator's: Adam then starts empty and the generator from the run's seed.
        string rngPath = Path.Combine(directory, RngFile);
        if (File.Exists(rngPath))
        {
            var rng = Safetensors.Load(rngPath, out _);
            using var rngState = rng["rng"];
            set_rng_state(rngState);
        }
        else
        {
            manual_seed(s.Options.Seed + state.Position.Step);
        }
        string optimizerPath = Path.Combine(directory, OptimizerFile);
        bool hasOptimizer = File.Exists(optimizerPath);
        if (!hasOptimizer && state.Position.Step > 0)
            Console.WriteLine($"{optimizerPath}: not found — the optimiser's moments start afresh (weights and position are the checkpoint's)");
        var resume = new TrainingResume(state.Position, optimizer =>
        {
            if (!hasOptimizer) return;
            using var reader = new BinaryReader(File.OpenRead(optimizerPath));
            optimizer.load_state_dict(reader);
        });
        AnsiConsole.MarkupLine($"[bold]resume[/] {Markup.Escape(directory)} at epoch {state.Position.Epoch}, batch {state.Position.BatchesDone}, update {state.Position.Step}");
        return Run(s, checkpoint, pairs, corpusName, resume, state.Curve, state.Validations ?? []);
    }

    /// <summary>At most <paramref name="points"/> points, each the mean of a run of consecutive ones.</summary>
    private static List<(double X, double Loss)> Downsample(List<double[]> curve, int points)
    {
        int group = Math.Max(1, (curve.Count + points - 1) / points);
        return curve.Chunk(group).Select(g => (g.Average(c => c[0]), g.Average(c => c[1]))).ToList();
    }

    private static T ReadJson<T>(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid ({e.Message})", e);
        }
    }

    private static int Run(TrainSettings s, Checkpoint checkpoint, IReadOnlyList<EncodedPair> pairs, string corpusName,
        TrainingResume? resume, List<double[]> curve, List<ValidationResult> validations)
    {
        var model = checkpoint.Model;
        using var _ = model;
        var config = checkpoint.ModelConfig;
        var tgt = checkpoint.TargetVocabulary;
        long parameterCount = Trainer.DistinctParameters(model).Sum(p => p.numel());
        AnsiConsole.MarkupLine(
            $"[bold]train[/] {Markup.Escape(corpusName)}: {pairs.Count:N0} pairs, vocab {checkpoint.SourceVocabulary.Count:N0}/{tgt.Count:N0}, " +
            $"{Markup.Escape(config.Architecture)} {parameterCount:N0} parameters, {get_num_threads()} threads, preset {Markup.Escape(s.Preset)}");

        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        // Loss curve: the mean loss of every 10 updates, at its fractional epoch (plotted with at most 200 points).
        const int Window = 10;
        double window = 0;
        int windowSteps = 0;
        void Record(TrainingProgress p)
        {
            window += p.Loss;
            windowSteps++;
            if (windowSteps >= Window || p.Step == p.TotalSteps)
            {
                curve.Add([p.Step * s.Options.Epochs / (double)p.TotalSteps, window / windowSteps]);
                window = 0;
                windowSteps = 0;
            }
        }

        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };

        // Validation, best model, early stopping.
        Validator? validator = null;
        if (s.Valid is { } validPath)
        {
            var read = ParallelCorpus.Read(validPath, new CorpusReadOptions { MaxPairs = s.ValidMax, SkipInvalid = s.SkipInvalid });
            validator = new Validator(read.Pairs);
        }
        bool lowerIsBetter = s.KeepBest == "loss";
        double Metric(ValidationResult v) => lowerIsBetter ? v.Loss : v.Bleu;
        bool earlyStopped = false;
        void Validate(int step)
        {
            if (validator is null) return;
            var result = validator.Run(checkpoint, step);
            bool improved = validations.Count == 0 || (lowerIsBetter ? Metric(result) < validations.Min(Metric) : Metric(result) > validations.Max(Metric));
            validations.Add(result);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  validation at update {step}: loss {result.Loss:F4}  BLEU {result.Bleu:F2}{(improved ? "  (best so far)" : "")}"));
            if (improved)
            {
                checkpoint.TrainingInfo = new Dictionary<string, string>(checkpoint.TrainingInfo)
                {
                    ["best_update"] = step.ToString(CultureInfo.InvariantCulture),
                    ["valid_loss"] = result.Loss.ToString("F4", CultureInfo.InvariantCulture),
                    ["valid_bleu"] = result.Bleu.ToString("F2", CultureInfo.InvariantCulture),
                };
                checkpoint.Save(Path.Combine(s.Out, "best"));
            }
            if (s.Patience is int patience && validations.Count > patience)
            {
                var recent = validations.TakeLast(patience + 1).ToList();
                bool stale = lowerIsBetter ? recent.Skip(1).Min(Metric) >= Metric(recent[0]) && recent[0] == validations.MinBy(Metric)
                                           : recent.Skip(1).Max(Metric) <= Metric(recent[0]) && recent[0] == validations.MaxBy(Metric);
                if (stale)
                {
                    earlyStopped = true;
                    Console.WriteLine($"  early stop: no improvement in {patience} validations");
                    cancel.Cancel();
                }
            }
        }

        TrainingResult? finalResult = null;
        int lastStep = resume?.Position.Step ?? 0;
        void Save(TrainingSnapshot snapshot)
        {
            var position = snapshot.Position;
            var last = position.Epochs.LastOrDefault();
            var info = new Dictionary<string, string>
            {
                ["corpus"] = Path.GetFileName(corpusName), ["pairs"] = pairs.Count.ToString(CultureInfo.InvariantCulture),
                ["preset"] = s.Preset, ["seed"] = s.Options.Seed.ToString(CultureInfo.InvariantCulture),
                ["epochs_done"] = position.Epochs.Count.ToString(CultureInfo.InvariantCulture),
                ["updates"] = position.Step.ToString(CultureInfo.InvariantCulture),
                ["train_loss"] = (last?.Loss ?? double.NaN).ToString("F4", CultureInfo.InvariantCulture),
                ["train_seconds"] = position.ElapsedSeconds.ToString("F1", CultureInfo.InvariantCulture),
                ["tokens_per_second"] = (position.Tokens / Math.Max(1e-9, position.ElapsedSeconds)).ToString("F0", CultureInfo.InvariantCulture),
                ["padding_fraction"] = (position.Positions == 0 ? 0 : 1 - position.Tokens / (double)position.Positions).ToString("F3", CultureInfo.InvariantCulture),
            };
            if (s.SourceLanguage is { } sl) info["source_language"] = sl;
            if (s.TargetLanguage is { } tl) info["target_language"] = tl;
            var rngState = get_rng_state();
            try
            {
                checkpoint.TrainingInfo = info;
                checkpoint.Save(s.Out, dir =>
                {
                    AtomicFile.WriteAllText(Path.Combine(dir, SettingsFile), JsonSerializer.Serialize(s, Json));
                    AtomicFile.WriteAllText(Path.Combine(dir, TrainerStateFile), JsonSerializer.Serialize(new TrainerFile(position, curve, validations), Json));
                    AtomicFile.Write(Path.Combine(dir, OptimizerFile), stream =>
                    {
                        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
                        snapshot.Optimizer.save_state_dict(writer);
                    });
                    Safetensors.Save(Path.Combine(dir, RngFile), new Dictionary<string, Tensor> { ["rng"] = rngState });
                    if (curve.Count > 0) Plots.SaveLossCurve(Path.Combine(dir, LossCurveFile), Downsample(curve, 200));
                });
            }
            finally
            {
                rngState.Dispose();
            }
            if (s.KeepLast is int keep && keep > 0)
            {
                string history = Path.Combine(s.Out, "history");
                checkpoint.Save(Path.Combine(history, $"update-{position.Step:D8}"));
                foreach (var stale in Directory.GetDirectories(history, "update-*").Order(StringComparer.Ordinal).SkipLast(keep))
                    Directory.Delete(stale, recursive: true);
            }
        }

        finalResult = ProgressView.Run(s.Options, (onStep, onEpoch) => Trainer.Train(
            model, pairs, ids, Batching.MinLimit(checkpoint.TextConfig.MaxSteps, config.MaxSequenceLength), s.Options,
            p =>
            {
                lastStep = p.Step;
                Record(p);
                onStep(p);
                if (s.ValidEvery is int every && p.Step % every == 0) Validate(p.Step);
            },
            e =>
            {
                onEpoch(e);
                if (s.ValidEvery is null) Validate(lastStep);
            },
            cancel.Token, Save, resume));
        var lastEpoch = finalResult.Epochs.LastOrDefault();
        AnsiConsole.MarkupLine(
            $"done: {finalResult.Steps:N0} updates in {finalResult.Elapsed.TotalSeconds:F1}s, {finalResult.TokensPerSecond:N0} target tokens/s, " +
            $"padding {finalResult.PaddingFraction:P1}, final loss {lastEpoch?.Loss:F3}" +
            $"{(finalResult.StoppedByTimeLimit ? " (time limit)" : earlyStopped ? " (early stop)" : "")}; checkpoint: {Markup.Escape(s.Out)}" +
            (validations.Count > 0 ? $", best model ({s.KeepBest}): {Markup.Escape(Path.Combine(s.Out, "best"))}" : ""));

        if (TrainingPreset.All.TryGetValue(s.Preset, out var preset) && preset.Examples.Count > 0)
        {
            using var translator = new Translator(Checkpoint.Load(s.Out));
            var outputs = translator.Translate(preset.Examples.Select(e => e.Source).ToList());
            for (int i = 0; i < outputs.Count; i++)
            {
                var (source, reference) = preset.Examples[i];
                Console.WriteLine($"{source} => {outputs[i]}, bleu,{D2lBleu.Score(outputs[i], reference, 2):F3}");
            }
        }
        return 0;
    }
}
