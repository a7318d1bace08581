using System.Globalization;
using System.Text;
using System.Text.Json;
using Transduce.Translation;
using Transduce.IO;
using Transduce.Checkpoints;
using Transduce.Evaluation;
using Transduce.Inference;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>A <see cref="TrainingRun"/>'s saves and validations: checkpoints, <c>best/</c>, <c>history/</c>, averaging.</summary>
public sealed partial class TrainingRun
{
    // ---- saving ----

    private void Save(Checkpoint checkpoint, Prepared prepared, TrainingSnapshot snapshot) =>
        Save(checkpoint, prepared, snapshot.Position, snapshot.Optimizer);

    /// <summary>
    /// Writes the run directory at <paramref name="position"/>: the checkpoint, <c>train.json</c>, <c>trainer.json</c>, the
    /// optimiser's state (none before the first update: Adam starts empty) and the generator's, and whatever
    /// <paramref name="extras"/> adds, in one atomic replacement.
    /// </summary>
    private void Save(Checkpoint checkpoint, Prepared prepared, TrainingPosition position, TorchSharp.Modules.OptimizerHelper? optimizer,
        Action<string>? extras = null)
    {
        var last = position.Epochs.LastOrDefault();
        var inv = CultureInfo.InvariantCulture;
        var info = new Dictionary<string, string>
        {
            ["corpus"] = Path.GetFileName(prepared.CorpusName), ["pairs"] = prepared.Pairs.Count.ToString(inv),
            ["preset"] = Config.Preset ?? "custom", ["seed"] = Config.Training.Seed.ToString(inv),
            ["epochs_done"] = position.Epochs.Count.ToString(inv),
            ["updates"] = position.Step.ToString(inv),
            ["train_loss"] = (last?.Loss ?? double.NaN).ToString("F4", inv),
            ["train_seconds"] = position.ElapsedSeconds.ToString("F1", inv),
            ["tokens_per_second"] = (position.Tokens / Math.Max(1e-9, position.ElapsedSeconds)).ToString("F0", inv),
            ["padding_fraction"] = (position.Positions == 0 ? 0 : 1 - position.Tokens / (double)position.Positions).ToString("F3", inv),
        };
        if (Config.Init is { } init) info["init"] = init;
        if (Config.Data.SourceLanguage is { } sl) info["source_language"] = sl;
        if (Config.Data.TargetLanguage is { } tl) info["target_language"] = tl;
        var state = new TrainerFile(position, curve, validations, prepared.Corpus);
        var rngState = get_rng_state();
        try
        {
            checkpoint.TrainingInfo = info;
            checkpoint.Save(Directory, dir =>
            {
                AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), Config.ToJson());
                AtomicFile.WriteAllText(Path.Combine(dir, StateFile), JsonSerializer.Serialize(state, StateJson));
                if (optimizer is not null)
                    AtomicFile.Write(Path.Combine(dir, OptimizerFile), stream =>
                    {
                        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
                        optimizer.save_state_dict(writer);
                    });
                Safetensors.Save(Path.Combine(dir, RngFile), new Dictionary<string, Tensor> { ["rng"] = rngState });
                extras?.Invoke(dir);
                CheckpointWriting?.Invoke(this, dir);
            }, runLock);
        }
        finally
        {
            rngState.Dispose();
        }
        saved = state;
        int keep = Math.Max(Config.Training.KeepLast ?? 0, Config.Training.AverageLast ?? 0);
        if (keep > 0 && optimizer is not null)
        {
            string history = Path.Combine(Directory, HistoryDirectory);
            checkpoint.Save(Path.Combine(history, $"update-{position.Step:D8}"));
            foreach (var stale in System.IO.Directory.GetDirectories(history, "update-*").Order(StringComparer.Ordinal).SkipLast(keep))
                System.IO.Directory.Delete(stale, recursive: true);
        }
    }

    // ---- validation, best model, early stopping, averaging ----

    private double Metric(ValidationResult v) => Config.Validation.Metric == ValidationMetric.Loss ? v.Loss : v.Bleu;

    private bool Better(ValidationResult a, ValidationResult b) =>
        Config.Validation.Metric == ValidationMetric.Loss ? a.Loss < b.Loss : a.Bleu > b.Bleu;

    private ValidationResult? Best() => validations.Count == 0 ? null
        : validations.Aggregate((best, v) => Better(v, best) ? v : best);

    /// <summary>Measures <paramref name="checkpoint"/>'s model; keeps it in best/ if it beats every earlier candidate. True when it stops the run early.</summary>
    private bool ValidateAndKeep(Validator validator, Checkpoint checkpoint, int step, string weights, bool averaged, CancellationTokenSource? stopEarly)
    {
        var measured = validator.Run(checkpoint, step);
        var best = Best();
        var result = measured with { Weights = weights, Averaged = averaged, IsBest = best is null || Better(measured, best) };
        validations.Add(result);
        if (result.IsBest)
        {
            var inv = CultureInfo.InvariantCulture;
            var info = new Dictionary<string, string>(checkpoint.TrainingInfo)
            {
                ["best_update"] = step.ToString(inv),
                ["best_weights"] = weights,
                ["valid_loss"] = result.Loss.ToString("F4", inv),
                ["valid_bleu"] = result.Bleu.ToString("F2", inv),
            };
            var saveInfo = checkpoint.TrainingInfo;
            checkpoint.TrainingInfo = info;
            try
            {
                checkpoint.Save(Path.Combine(Directory, BestDirectory));
            }
            finally
            {
                checkpoint.TrainingInfo = saveInfo;
            }
        }
        Validated?.Invoke(this, result);
        if (stopEarly is null || Config.Validation.Patience is not int patience) return false;
        var ordinary = validations.Where(v => !v.Averaged).ToList();
        if (ordinary.Count <= patience) return false;
        var recent = ordinary.TakeLast(patience + 1).ToList();
        bool stale = recent.Skip(1).All(v => !Better(v, recent[0])) && !ordinary.Any(v => Better(v, recent[0]));
        if (!stale) return false;
        Say($"early stop: no improvement in {patience} validations");
        stopEarly.Cancel();
        return true;
    }

    private void ValidateAverage(Validator validator, int k, int finalStep)
    {
        string history = Path.Combine(Directory, HistoryDirectory);
        var saves = System.IO.Directory.Exists(history)
            ? System.IO.Directory.GetDirectories(history, "update-*").Order(StringComparer.Ordinal).TakeLast(k).ToList()
            : [];
        if (saves.Count < 2)
        {
            Say($"average of the last {k} saves: only {saves.Count} save(s) in {history}, nothing to average");
            return;
        }
        string first = Path.GetFileName(saves[0])["update-".Length..].TrimStart('0');
        using var average = Checkpoint.Average(saves);
        average.TrainingInfo = new Dictionary<string, string>(average.TrainingInfo);
        ValidateAndKeep(validator, average, finalStep,
            $"the average of the last {saves.Count} saves (updates {first}–{finalStep})", averaged: true, null);
    }

    private IReadOnlyList<ExampleTranslation> TranslateExamples(Checkpoint checkpoint)
    {
        using var translator = new Translator(checkpoint, ownsCheckpoint: false);
        var outputs = translator.Translate(Config.Examples.Select(e => e.Source).ToList());
        checkpoint.Model.train();
        return [.. Config.Examples.Select((e, i) => new ExampleTranslation(e.Source, outputs[i], D2lBleu.Score(outputs[i], e.Reference, 2)))];
    }
}
