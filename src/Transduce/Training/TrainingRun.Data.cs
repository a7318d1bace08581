using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Text;
using static TorchSharp.torch;
using Transduce.IO;

namespace Transduce.Training;

/// <summary>A <see cref="TrainingRun"/>'s data and model: the corpus read and encoded, the model built or loaded.</summary>
public sealed partial class TrainingRun
{
    // ---- data and model ----

    /// <summary>The data, its encoding and the model of a session of the run.</summary>
    private sealed class Prepared(Checkpoint checkpoint, IReadOnlyList<EncodedPair> pairs, string corpusName, CorpusFingerprint corpus,
        IReadOnlyList<SentencePair>? validation, TrainingResume? resume) : IDisposable
    {
        public Checkpoint Checkpoint { get; } = checkpoint;
        public IReadOnlyList<EncodedPair> Pairs { get; } = pairs;
        public string CorpusName { get; } = corpusName;
        public CorpusFingerprint Corpus { get; } = corpus;
        public IReadOnlyList<SentencePair>? Validation { get; } = validation;
        public TrainingResume? Resume { get; } = resume;
        public void Dispose()
        {
            Checkpoint.Dispose();
            (Pairs as IDisposable)?.Dispose();
        }
    }

    /// <summary>Train on a folder's split and validate on its held-out file; a known corpus name stays a name (resolved at each read).</summary>
    private static RunConfig ResolveData(RunConfig config, bool pairsInMemory)
    {
        // The model to start from is loaded when the run starts; train.json names it by full path.
        if (config.Init is { } init && !string.IsNullOrWhiteSpace(init)) config = config with { Init = Path.GetFullPath(init) };
        // The SentencePiece models are read once, when the run starts; train.json names them by full path.
        if (config.Text.SpmModel is not null || config.Text.SpmTargetModel is not null)
            config = config with
            {
                Text = config.Text with
                {
                    SpmModel = config.Text.SpmModel is { } sm ? Path.GetFullPath(sm) : null,
                    SpmTargetModel = config.Text.SpmTargetModel is { } tm ? Path.GetFullPath(tm) : null,
                },
            };
        if (config.Data.Corpora is { } corpora)
            config = config with
            {
                Data = config.Data with
                {
                    Corpora = [.. corpora.Select(c => c?.Path is { } p && (File.Exists(p) || System.IO.Directory.Exists(p)) ? c with { Path = Path.GetFullPath(p) } : c!)],
                },
            };
        var data = config.Data;
        if (pairsInMemory || data.Train is not { } train || !System.IO.Directory.Exists(train)) return config;
        var validation = config.Validation;
        if (validation.File is null && data.ValidFile is { } vf && File.Exists(Path.Combine(train, vf)))
            validation = validation with { File = Path.Combine(train, vf) };
        if (data.TrainFile is { } tf && File.Exists(Path.Combine(train, tf))) data = data with { Train = Path.Combine(train, tf) };
        return config with { Data = data, Validation = validation };
    }

    private static void CheckNeeds(RunConfig config, bool validationInMemory, bool pairsInMemory = false)
    {
        if (pairsInMemory && config.Data.Corpora is not null)
            throw new ArgumentException("'data.corpora' names corpus files, but the training pairs were given in memory: give one or the other");
        foreach (string? model in new[] { config.Text.SpmModel, config.Text.SpmTargetModel })
            if (config.Text.Tokenizer == TokenizerKind.Spm && model is not null && !File.Exists(model))
                throw new FileNotFoundException($"{model}: SentencePiece model not found ('text.spm_model' / --spm-model)", model);
        bool validates = validationInMemory || config.Validation.File is not null;
        if (config.Validation.Patience is not null && !validates)
            throw new ArgumentException("'validation.patience' needs validation pairs (validation.file, or --valid FILE)");
        if (config.Training.AverageLast is not null && !validates)
            throw new ArgumentException("'training.average_last' needs validation pairs (validation.file, or --valid FILE) to compare the average with");
    }

    private (IReadOnlyList<SentencePair> All, string Name) ReadCorpus()
    {
        var data = Config.Data;
        if (givenPairs is not null) return (givenPairs, "pairs given in memory");
        string source = data.Train ?? throw new ArgumentException("'data.train': no training data (a corpus file, a folder, or a known corpus name such as fra-eng)");
        int? readPairs = data.MaxPairs is int tp ? Math.Max(tp, data.VocabularyPairs ?? 0) : null;
        var options = new CorpusReadOptions { SkipInvalid = data.SkipInvalid, MaxPairs = readPairs };
        CorpusReadResult read;
        string name;
        if (data.Target is { } targetFile)
        {
            read = ParallelCorpus.ReadAligned(source, targetFile, options);
            name = $"{Path.GetFileName(source)} + {Path.GetFileName(targetFile)}";
        }
        else
        {
            string path = LocateCorpus(source);
            read = ParallelCorpus.Read(path, options);
            name = path;
        }
        if (read.SkippedLines > 0)
            Warning?.Invoke(this, $"skipped {read.SkippedLines} malformed line(s) of {name}; first: {read.SkipReasons.FirstOrDefault()}");
        return (read.Pairs, name);
    }

    /// <summary>An existing file or folder as given, or a known corpus name fetched into the cache.</summary>
    private string LocateCorpus(string data)
    {
        if (File.Exists(data) || System.IO.Directory.Exists(data)) return data;
        if (DatasetHub.Find(data) is { } entry)
        {
            var hub = new DatasetHub(DatasetHub.DefaultCacheDirectory);
            Warning?.Invoke(this, $"corpus '{entry.Name}': using the cache in {DatasetHub.DefaultCacheDirectory} (downloads {entry.Url} if needed)");
            string folder = hub.EnsureAsync(entry).GetAwaiter().GetResult();
            return Path.Combine(folder, entry.MainFile);
        }
        throw new FileNotFoundException($"{data}: no such file or folder, and not a known corpus name (known: {string.Join(", ", DatasetHub.Known.Select(k => k.Name))})");
    }

    /// <summary>
    /// The training pairs of the corpus read: its first <c>data.max_pairs</c>, without what the text filters drop
    /// (<c>data.drop_identical</c>, <c>data.drop_duplicates</c>); <paramref name="corpus"/> identifies the pairs before
    /// filtering (the filters are part of the run's configuration).
    /// </summary>
    private IReadOnlyList<SentencePair> TrainingPairs(IReadOnlyList<SentencePair> all, out CorpusFingerprint corpus)
    {
        var taken = Config.Data.MaxPairs is int take ? all.Take(take).ToList() : all;
        corpus = CorpusFingerprint.Of(taken);
        var kept = CorpusFilters.ByText(taken, Config.Data.DropIdentical, Config.Data.DropDuplicates, out var counts);
        if (counts.Total > 0) Say($"filters: dropped {counts.Identical:N0} pairs with identical sides, {counts.Duplicates:N0} repeated pairs; {kept.Count:N0} of {taken.Count:N0} left");
        return kept;
    }

    /// <summary>The encoded training pairs without what the length filters drop (<c>data.max_length</c>, <c>data.max_length_ratio</c>).</summary>
    private IReadOnlyList<EncodedPair> FilterByLength(IReadOnlyList<EncodedPair> pairs)
    {
        var kept = CorpusFilters.ByLength(pairs, Config.Data.MaxLength, Config.Data.MaxLengthRatio, out var counts);
        if (counts.Total > 0)
            Say($"filters: dropped {counts.TooLong:N0} pairs with a side over {Config.Data.MaxLength} tokens, {counts.Ratio:N0} with a length ratio over {Config.Data.MaxLengthRatio}; {kept.Count:N0} of {pairs.Count:N0} left");
        if (kept.Count == 0) throw new ArgumentException($"the filters dropped every training pair ({counts.Total:N0}): loosen 'data.max_length' / 'data.max_length_ratio'");
        return kept;
    }

    private IReadOnlyList<SentencePair>? ReadValidation()
    {
        if (givenValidation is not null) return givenValidation;
        if (Config.Validation.File is not { } path) return null;
        var read = ParallelCorpus.Read(path, new CorpusReadOptions { MaxPairs = Config.Validation.MaxPairs, SkipInvalid = Config.Data.SkipInvalid });
        return read.Pairs;
    }

    private Prepared PrepareNew()
    {
        if (Config.Init is { } init) return PrepareInit(init);
        var (all, corpusName) = ReadCorpus();
        var data = Config.Data;
        var train = TrainingPairs(all, out var corpus);
        var vocabPairs = data.VocabularyPairs is int vp && data.MaxPairs is not null ? all.Take(vp).ToList() : null;
        var validation = ReadValidation();
        var text = Config.Text.ToTextConfig();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var sentencePiece = Config.Text.Tokenizer == TokenizerKind.Spm ? ReadSentencePiece(Config.Text) : null;
        var (encoded, subwords) = TranslationData.ForTraining(train, text, Config.Text.BpeVocabSize, Config.Text.MinFrequency,
            Config.Model.ShareEmbeddings, vocabPairs, sentencePiece, Config.Text.BpeSamplePairs, Config.Training.Seed);
        if (subwords is not null)
            Say($"bpe: {subwords.Vocabulary.Count:N0} pieces (joint); text prepared in {clock.Elapsed.TotalSeconds:F1}s");
        var checkpoint = NewModel(text, encoded.SourceVocabulary, encoded.TargetVocabulary, subwords, sentencePiece);
        return new Prepared(checkpoint, FilterByLength(encoded.Pairs), corpusName, corpus, validation, null);
    }

    /// <summary>A new model for the text side learnt, its weights drawn under the run's seed.</summary>
    private Checkpoint NewModel(TextConfig text, Vocabulary src, Vocabulary tgt, BpeTokenizer? subwords, SentencePiecePair? sentencePiece)
    {
        // The seed is set right before the weights are drawn, so a run's initialisation depends on nothing else.
        manual_seed(Config.Training.Seed);
        var modelConfig = Config.Model.ToModelConfig(src.Count, tgt.Count, tgt.PadId);
        return new Checkpoint
        {
            Model = Models.ModelRegistry.Create(modelConfig), ModelConfig = modelConfig, TextConfig = text,
            SourceVocabulary = src, TargetVocabulary = tgt, Subwords = subwords, SentencePiece = sentencePiece,
        };
    }

    /// <summary>The SentencePiece models the text section names (source, and target unless it is the same file).</summary>
    private static SentencePiecePair ReadSentencePiece(TextOptions text)
    {
        static byte[] Read(string path) => File.Exists(path)
            ? File.ReadAllBytes(path)
            : throw new FileNotFoundException($"{path}: SentencePiece model not found ('text.spm_model' / --spm-model)", path);
        string source = text.SpmModel ?? throw new ArgumentException("'text.tokenizer' spm needs 'text.spm_model'");
        return new SentencePiecePair(Read(source), Read(text.SpmTargetModel ?? source), source, text.SpmTargetModel ?? source);
    }

    private Prepared PrepareResume()
    {
        var state = saved!;
        var checkpoint = Checkpoint.Load(Directory);
        IReadOnlyList<EncodedPair>? pairs = null;
        try
        {
            checkpoint.Model.train();
            string corpusName;
            CorpusFingerprint corpus;
            // A prepared run (transduce prepare), or one trained on it by another trainer (the PyTorch DDP trainer), has
            // its token ids as shards: the very ids it was prepared with, with no corpus to read and tokenize again.
            if (Preparation.TryOpenPairs(Directory, checkpoint) is { } shards)
            {
                pairs = shards;
                corpusName = Path.Combine(Directory, Preparation.ShardsFolder);
                corpus = state.Corpus ?? new CorpusFingerprint(shards.Count, "");
            }
            else
            {
                IReadOnlyList<SentencePair> all;
                (all, corpusName) = ReadCorpus();
                var train = TrainingPairs(all, out corpus);
                if (state.Corpus is { } before && before != corpus)
                    throw new InvalidDataException(
                        $"{Directory}: the corpus is not the one this run started with: {corpusName} gives {corpus.Pairs:N0} pairs (sha256 {corpus.Sha256[..12]}), " +
                        $"the run was trained on {before.Pairs:N0} pairs (sha256 {before.Sha256[..12]}); resume needs the same data");
                pairs = FilterByLength(TranslationData.Encode(train, checkpoint.CreateTextPipeline(), checkpoint.PairEncoding, EncodingContext(checkpoint)).Pairs);
            }
            var validation = ReadValidation();
            // A checkpoint written by another trainer has weights and a position, but neither our optimiser's state nor
            // our generator's: Adam then starts with empty moments, and the generator from the run's seed.
            string rngPath = Path.Combine(Directory, RngFile);
            if (File.Exists(rngPath))
            {
                var rng = Safetensors.Load(rngPath, out _);
                using var rngState = rng["rng"];
                set_rng_state(rngState);
            }
            else
            {
                manual_seed(Config.Training.Seed + state.Position.Step);
            }
            string optimizerPath = Path.Combine(Directory, OptimizerFile);
            bool hasOptimizer = File.Exists(optimizerPath);
            if (!hasOptimizer && state.Position.Step > 0)
                Say($"{optimizerPath}: not found — the optimiser's moments start afresh (weights and position are the checkpoint's)");
            var resume = new TrainingResume(state.Position, optimizer =>
            {
                if (!hasOptimizer) return;
                using var reader = new BinaryReader(File.OpenRead(optimizerPath));
                optimizer.load_state_dict(reader);
            });
            Say($"resume {Directory} at epoch {state.Position.Epoch}, batch {state.Position.BatchesDone}, update {state.Position.Step}");
            return new Prepared(checkpoint, pairs, corpusName, corpus, validation, resume);
        }
        catch
        {
            checkpoint.Dispose();
            (pairs as IDisposable)?.Dispose();
            throw;
        }
    }
}
