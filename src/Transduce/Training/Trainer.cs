using System.Diagnostics;
using Transduce.Architecture;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>Settings of a training run. Defaults are d2l §10.7's.</summary>
public sealed record TrainingOptions
{
    /// <summary>Passes over the data.</summary>
    public int Epochs { get; init; } = 30;

    /// <summary>Sentence pairs per mini-batch.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Adam learning rate.</summary>
    public double LearningRate { get; init; } = 0.005;

    /// <summary>Gradient-norm clipping threshold (0 disables clipping).</summary>
    public double GradientClip { get; init; } = 1.0;

    /// <summary>Label smoothing ε.</summary>
    public double LabelSmoothing { get; init; }

    /// <summary>Seed of the batch order (the model's initialisation is seeded by the caller through <c>torch.manual_seed</c>).</summary>
    public int Seed { get; init; }

    /// <summary>
    /// Build length-bucketed batches (similar lengths together, see <see cref="Batching.BucketedEpoch"/>)
    /// instead of d2l's plain shuffled batches.
    /// </summary>
    public bool Bucketed { get; init; }

    /// <summary>With <see cref="Bucketed"/>: at most this many padded tokens per batch (on either side).</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Stop after this much wall-clock time (checked after every step).</summary>
    public TimeSpan? TimeLimit { get; init; }
}

/// <summary>Reported after every optimisation step.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Step">Global 1-based step.</param>
/// <param name="TotalSteps">Steps the run will take if not stopped early.</param>
/// <param name="Loss">This step's masked cross-entropy.</param>
/// <param name="TokensPerSecond">Target tokens per second since the start.</param>
/// <param name="Elapsed">Time since the start.</param>
public sealed record TrainingProgress(int Epoch, int Step, int TotalSteps, double Loss, double TokensPerSecond, TimeSpan Elapsed);

/// <summary>One epoch's average loss (weighted by target tokens).</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Loss">Token-weighted mean training loss.</param>
/// <param name="Elapsed">Time since the start at the epoch's end.</param>
public sealed record EpochResult(int Epoch, double Loss, TimeSpan Elapsed);

/// <summary>What a training run did.</summary>
/// <param name="Epochs">Per-epoch results, including a partial last epoch when stopped by the time limit.</param>
/// <param name="Steps">Optimisation steps taken.</param>
/// <param name="TargetTokens">Non-pad target tokens processed.</param>
/// <param name="Elapsed">Wall-clock time.</param>
/// <param name="StoppedByTimeLimit">True when <see cref="TrainingOptions.TimeLimit"/> ended the run.</param>
/// <param name="TargetPositions">Target positions computed, padding included.</param>
public sealed record TrainingResult(IReadOnlyList<EpochResult> Epochs, int Steps, long TargetTokens, TimeSpan Elapsed, bool StoppedByTimeLimit, long TargetPositions)
{
    /// <summary>Share of computed target positions that were padding.</summary>
    public double PaddingFraction => TargetPositions == 0 ? 0 : 1 - TargetTokens / (double)TargetPositions;

    /// <summary>Target tokens per second over the whole run.</summary>
    public double TokensPerSecond => TargetTokens / Math.Max(1e-9, Elapsed.TotalSeconds);
}

/// <summary>
/// Teacher-forced training of any <see cref="EncoderDecoder"/> with masked cross-entropy, Adam and
/// gradient clipping (d2l §10.7). Each step runs in its own dispose scope, so memory stays flat.
/// </summary>
public static class Trainer
{
    /// <summary>Trains <paramref name="model"/> in place.</summary>
    /// <param name="model">The model.</param>
    /// <param name="data">Training pairs.</param>
    /// <param name="ids">Special ids of the target vocabulary (the source must use the same pad id).</param>
    /// <param name="maxSteps">Truncation length (d2l's <c>num_steps</c>), or null.</param>
    /// <param name="options">Run settings.</param>
    /// <param name="onStep">Called after every step.</param>
    /// <param name="onEpoch">Called after every epoch (e.g. to write a checkpoint).</param>
    /// <param name="cancellation">Stops the run after the current step.</param>
    public static TrainingResult Train(
        EncoderDecoder model,
        IReadOnlyList<EncodedPair> data,
        SpecialIds ids,
        int? maxSteps,
        TrainingOptions options,
        Action<TrainingProgress>? onStep = null,
        Action<EpochResult>? onEpoch = null,
        CancellationToken cancellation = default)
    {
        if (data.Count == 0) throw new ArgumentException("no training pairs", nameof(data));
        using var optimizer = optim.Adam(model.parameters(), lr: options.LearningRate);
        var parameters = model.parameters().ToList();
        var sourceLengths = data.Select(p => Batching.WithEos(p.Source, ids.Eos, maxSteps).Length).ToArray();
        var targetLengths = data.Select(p => Batching.WithEos(p.Target, ids.Eos, maxSteps).Length).ToArray();
        List<int[]> EpochBatches(int epoch) => options.Bucketed
            ? Batching.BucketedEpoch(sourceLengths, targetLengths, options.BatchSize, options.MaxTokens, options.Seed, epoch)
            : Batching.Chunk(Batching.EpochOrder(data.Count, options.Seed, epoch), options.BatchSize).ToList();
        int batchesPerEpoch = EpochBatches(1).Count;
        int totalSteps = batchesPerEpoch * options.Epochs;
        var clock = Stopwatch.StartNew();
        var epochs = new List<EpochResult>();
        long tokens = 0, positions = 0;
        int step = 0;
        bool timeUp = false;
        model.train();
        try
        {
            for (int epoch = 1; epoch <= options.Epochs && !timeUp && !cancellation.IsCancellationRequested; epoch++)
            {
                double lossSum = 0;
                long epochTokens = 0;
                foreach (var rows in EpochBatches(epoch))
                {
                    double loss;
                    int batchTokens;
                    using (var scope = NewDisposeScope())
                    {
                        using var batch = Batching.Build(rows.Select(i => data[i]).ToList(), ids, maxSteps);
                        optimizer.zero_grad();
                        var logits = model.call(batch.Source, batch.SourceValidLengths, batch.TargetInput);
                        var l = Training.Seq2SeqLoss.MaskedCrossEntropy(logits, batch.TargetOutput, ids.Pad, options.LabelSmoothing);
                        l.backward();
                        if (options.GradientClip > 0) nn.utils.clip_grad_norm_(parameters, options.GradientClip);
                        optimizer.step();
                        loss = l.item<float>();
                        batchTokens = batch.TargetTokens;
                        positions += batch.TargetPositions;
                    }
                    step++;
                    tokens += batchTokens;
                    epochTokens += batchTokens;
                    lossSum += loss * batchTokens;
                    onStep?.Invoke(new TrainingProgress(epoch, step, totalSteps, loss, tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds), clock.Elapsed));
                    if (options.TimeLimit is { } limit && clock.Elapsed >= limit) { timeUp = true; break; }
                    if (cancellation.IsCancellationRequested) break;
                }
                var result = new EpochResult(epoch, lossSum / Math.Max(1, epochTokens), clock.Elapsed);
                epochs.Add(result);
                onEpoch?.Invoke(result);
                model.train();
            }
        }
        finally
        {
            model.eval();
        }
        return new TrainingResult(epochs, step, tokens, clock.Elapsed, timeUp, positions);
    }
}
