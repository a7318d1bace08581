using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Evaluation;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Text;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "Corpus: a tab-separated file, a folder with fra.txt, or a known corpus name (fra-eng, downloaded into the cache).", DefaultValueFactory = _ => "fra-eng" };
        var preset = new Option<string?>("--preset") { Description = $"A complete book setting: {string.Join(", ", TrainingPreset.All.Keys)}. Other flags override it." };
        preset.AcceptOnlyFromAmong([.. TrainingPreset.All.Keys]);
        var output = new Option<string>("--out") { Description = "Checkpoint directory to write.", Required = true };
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
        var clip = new Option<double?>("--clip") { Description = "Gradient-norm clip, 0 for none (default 1)." };
        var seed = new Option<int>("--seed") { Description = "Random seed (initialisation, dropout, batch order).", DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Cut sentences to this many tokens incl. <eos> (d2l's num_steps); default: no cut." };
        var maxPairs = new Option<int?>("--max-pairs") { Description = "Train on the first N pairs only." };
        var minFreq = new Option<int?>("--min-freq") { Description = "Minimum token frequency for the vocabularies (default 1)." };
        var normalize = new Option<string?>("--normalize") { Description = "Text normaliser: d2l (lower-case, space before punctuation) or none." };
        var timeLimit = new Option<double?>("--time-limit") { Description = "Stop after this many minutes (a checkpoint is written either way)." };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads (default: all cores)." };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "word (d2l: split on spaces) or bpe (joint subword vocabulary trained on the data; cased, natural output). Default: word." };
        tokenizer.AcceptOnlyFromAmong("word", "bpe");
        var bpeSize = new Option<int>("--bpe-vocab") { Description = "BPE vocabulary size (with --tokenizer bpe).", DefaultValueFactory = _ => 8000 };
        var bucketed = new Option<bool>("--bucketed") { Description = "Length-bucketed batches: similar lengths together, little padding (default for non-book runs is off)." };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Length-bucketed batches of at most N padded tokens (implies --bucketed)." };
        var skipInvalid = new Option<bool>("--skip-invalid") { Description = "Skip malformed corpus lines (and count them) instead of stopping." };

        var command = new Command("train", "Train a model and write a checkpoint directory.")
        {
            data, preset, output, arch, heads, ffn, activation, preNorm, tie, share, embed, hidden, layers, dropout, epochs, batch, lr, clip, seed, maxSteps, maxPairs,
            minFreq, normalize, tokenizer, bpeSize, timeLimit, threads, bucketed, maxTokens, skipInvalid,
        };
        command.SetAction(r =>
        {
            var p = r.GetValue(preset) is { } name ? TrainingPreset.All[name] : new TrainingPreset { Name = "custom", Description = "flags" };
            var t = p.Training;
            var options = t with
            {
                Epochs = r.GetValue(epochs) ?? t.Epochs,
                BatchSize = r.GetValue(batch) ?? t.BatchSize,
                LearningRate = r.GetValue(lr) ?? t.LearningRate,
                GradientClip = r.GetValue(clip) ?? t.GradientClip,
                Seed = r.GetValue(seed),
                TimeLimit = r.GetValue(timeLimit) is double minutes ? TimeSpan.FromMinutes(minutes) : t.TimeLimit,
                Bucketed = r.GetValue(bucketed) || r.GetValue(maxTokens) is not null || t.Bucketed,
                MaxTokens = r.GetValue(maxTokens) ?? t.MaxTokens,
            };
            var settings = new TrainSettings(
                Data: r.GetValue(data)!,
                Out: r.GetValue(output)!,
                Preset: p,
                Architecture: r.GetValue(arch) ?? p.Architecture,
                Embedding: r.GetValue(embed) ?? p.EmbeddingSize,
                Hidden: r.GetValue(hidden) ?? p.HiddenSize,
                Layers: r.GetValue(layers) ?? p.Layers,
                Heads: r.GetValue(heads) ?? p.Heads,
                Ffn: r.GetValue(ffn) ?? p.FfnSize,
                Activation: r.GetValue(activation) ?? "relu",
                PreNorm: r.GetValue(preNorm),
                Tie: r.GetValue(tie),
                Share: r.GetValue(share),
                Dropout: r.GetValue(dropout) ?? p.Dropout,
                MaxSteps: r.GetValue(maxSteps) ?? p.MaxSteps,
                TrainPairs: r.GetValue(maxPairs) ?? p.TrainPairs,
                MinFrequency: r.GetValue(minFreq) ?? p.MinFrequency,
                Normalizer: r.GetValue(normalize) ?? (r.GetValue(tokenizer) == "bpe" ? "none" : p.Normalizer),
                Tokenizer: r.GetValue(tokenizer) ?? "word",
                BpeVocab: r.GetValue(bpeSize),
                Threads: r.GetValue(threads),
                SkipInvalid: r.GetValue(skipInvalid),
                Options: options);
            return Run(settings);
        });
        return command;
    }

    private sealed record TrainSettings(
        string Data, string Out, TrainingPreset Preset, string Architecture, int Embedding, int Hidden, int Layers,
        int Heads, int Ffn, string Activation, bool PreNorm, bool Tie, bool Share, double Dropout,
        int? MaxSteps, int? TrainPairs, int MinFrequency, string Normalizer, string Tokenizer, int BpeVocab, int? Threads, bool SkipInvalid, TrainingOptions Options);

    private static int Run(TrainSettings s)
    {
        if (s.Threads is int n) set_num_threads(n);
        string corpusPath = CorpusLocator.Resolve(s.Data);
        int? readPairs = s.TrainPairs is int tp ? Math.Max(tp, s.Preset.VocabularyPairs ?? 0) : null;
        var read = ParallelCorpus.Read(corpusPath, new CorpusReadOptions { SkipInvalid = s.SkipInvalid, MaxPairs = readPairs });
        if (read.SkippedLines > 0)
            Console.Error.WriteLine($"skipped {read.SkippedLines} malformed line(s) of {corpusPath}; first: {read.SkipReasons.FirstOrDefault()}");
        var all = read.Pairs;
        var train = s.TrainPairs is int take ? all.Take(take).ToList() : all;
        var vocabPairs = s.Preset.VocabularyPairs is int vp && s.TrainPairs is not null ? all.Take(vp).ToList() : null;

        var textConfig = new TextConfig { Normalizer = s.Normalizer, Tokenizer = s.Tokenizer, MaxSteps = s.MaxSteps };
        BpeTokenizer? subwords = null;
        if (s.Tokenizer == "bpe")
        {
            var normalizer = TextNormalizers.FromName(s.Normalizer);
            var started = DateTime.UtcNow;
            subwords = BpeTokenizer.Train(train.SelectMany(p => new[] { normalizer.Normalize(p.Source), normalizer.Normalize(p.Target) }),
                new BpeTrainingOptions { VocabSize = s.BpeVocab });
            Console.WriteLine($"bpe: {subwords.Vocabulary.Count:N0} pieces (joint) in {(DateTime.UtcNow - started).TotalSeconds:F1}s");
        }
        var pipeline = new TextPipeline(textConfig, subwords);
        var prepared = subwords is null
            ? TranslationData.Prepare(train, pipeline, s.MinFrequency, vocabularyPairs: vocabPairs, jointVocabulary: s.Share)
            : TranslationData.Prepare(train, pipeline, sourceVocabulary: subwords.Vocabulary, targetVocabulary: subwords.Vocabulary);
        var src = prepared.SourceVocabulary;
        var tgt = prepared.TargetVocabulary;

        manual_seed(s.Options.Seed);
        var config = new ModelConfig
        {
            Architecture = s.Architecture, SourceVocabSize = src.Count, TargetVocabSize = tgt.Count,
            EmbeddingSize = s.Architecture == "transformer" ? s.Hidden : s.Embedding, HiddenSize = s.Hidden, Layers = s.Layers,
            Dropout = s.Dropout, PadId = tgt.PadId, Heads = s.Heads, FfnSize = s.Ffn, Activation = s.Activation,
            PreNorm = s.PreNorm, TieEmbeddings = s.Tie, ShareEmbeddings = s.Share,
        };
        using var model = ModelFactory.Create(config);
        long parameterCount = model.parameters().Sum(p => p.numel());
        AnsiConsole.MarkupLine(
            $"[bold]train[/] {Markup.Escape(corpusPath)}: {train.Count:N0} pairs, vocab {src.Count:N0}/{tgt.Count:N0}, " +
            $"{Markup.Escape(config.Architecture)} {parameterCount:N0} parameters, {get_num_threads()} threads, preset {Markup.Escape(s.Preset.Name)}");

        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var info = new Dictionary<string, string>
        {
            ["corpus"] = Path.GetFileName(corpusPath), ["pairs"] = train.Count.ToString(CultureInfo.InvariantCulture),
            ["preset"] = s.Preset.Name, ["seed"] = s.Options.Seed.ToString(CultureInfo.InvariantCulture),
        };
        Checkpoint MakeCheckpoint(TrainingResult? result, EpochResult? last) => new()
        {
            Model = model, ModelConfig = config, TextConfig = textConfig, SourceVocabulary = src, TargetVocabulary = tgt, Subwords = subwords,
            TrainingInfo = new Dictionary<string, string>(info)
            {
                ["epochs_done"] = (last?.Epoch ?? 0).ToString(CultureInfo.InvariantCulture),
                ["train_loss"] = (last?.Loss ?? double.NaN).ToString("F4", CultureInfo.InvariantCulture),
                ["train_seconds"] = (last?.Elapsed.TotalSeconds ?? 0).ToString("F1", CultureInfo.InvariantCulture),
                ["tokens_per_second"] = result is null ? "" : result.TokensPerSecond.ToString("F0", CultureInfo.InvariantCulture),
                ["padding_fraction"] = result is null ? "" : result.PaddingFraction.ToString("F3", CultureInfo.InvariantCulture),
            },
        };

        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        EpochResult? lastEpoch = null;
        // Loss curve: the mean loss of every ~1% of the run, at its fractional epoch.
        var curve = new List<(double X, double Loss)>();
        double window = 0;
        int windowSteps = 0;
        void Record(TrainingProgress p)
        {
            window += p.Loss;
            windowSteps++;
            if (windowSteps >= Math.Max(1, p.TotalSteps / 100) || p.Step == p.TotalSteps)
            {
                curve.Add((p.Step * s.Options.Epochs / (double)p.TotalSteps, window / windowSteps));
                window = 0;
                windowSteps = 0;
            }
        }
        void SaveCurve()
        {
            if (curve.Count > 0) Plots.SaveLossCurve(Path.Combine(s.Out, "loss.png"), curve);
        }
        var result = ProgressView.Run(s.Options, (onStep, onEpoch) => Trainer.Train(
            model, prepared.Pairs, ids, s.MaxSteps, s.Options, p => { Record(p); onStep(p); },
            epoch =>
            {
                lastEpoch = epoch;
                onEpoch(epoch);
                MakeCheckpoint(null, epoch).Save(s.Out);   // every epoch: an interrupted run keeps its last finished epoch
                SaveCurve();
            },
            cancel.Token));
        MakeCheckpoint(result, lastEpoch).Save(s.Out);
        SaveCurve();
        AnsiConsole.MarkupLine(
            $"done: {result.Steps:N0} steps in {result.Elapsed.TotalSeconds:F1}s, {result.TokensPerSecond:N0} target tokens/s, " +
            $"padding {result.PaddingFraction:P1}, " +
            $"final loss {lastEpoch?.Loss:F3}{(result.StoppedByTimeLimit ? " (time limit)" : "")}; checkpoint: {Markup.Escape(s.Out)}");

        if (s.Preset.Examples.Count > 0)
        {
            using var translator = new Translator(Checkpoint.Load(s.Out));
            var outputs = translator.Translate(s.Preset.Examples.Select(e => e.Source).ToList());
            for (int i = 0; i < outputs.Count; i++)
            {
                var (source, reference) = s.Preset.Examples[i];
                Console.WriteLine($"{source} => {outputs[i]}, bleu,{D2lBleu.Score(outputs[i], reference, 2):F3}");
            }
        }
        return 0;
    }
}
