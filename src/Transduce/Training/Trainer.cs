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

    /// <summary>Learning-rate schedule: <c>constant</c> (d2l's plain Adam) or <c>inverse-sqrt</c> (linear warm-up, then ∝ 1/√step).</summary>
    public string Schedule { get; init; } = "constant";

    /// <summary>Warm-up steps of the <c>inverse-sqrt</c> schedule.</summary>
    public int WarmupSteps { get; init; } = 4000;

    /// <summary>Mini-batches whose gradients are summed before each optimiser update.</summary>
    public int AccumulateSteps { get; init; } = 1;

    /// <summary>Also save (through the trainer's save callback) every this many updates; null: only at epoch ends.</summary>
    public int? SaveEverySteps { get; init; }

    /// <summary>Stop after this much wall-clock time (checked after every step).</summary>
    public TimeSpan? TimeLimit { get; init; }

    /// <summary>
    /// Keep native memory that libtorch frees for reuse (process-wide, see <see cref="NativeMemory.KeepFreedMemory"/>):
    /// faster steps at the cost of holding the peak footprint. On by default.
    /// </summary>
    public bool KeepFreedMemory { get; init; } = true;
}

/// <summary>
/// Where a run stands: enough, with the optimiser's and the random generator's state, to continue it exactly.
/// </summary>
/// <param name="Epoch">1-based epoch in progress.</param>
/// <param name="BatchesDone">Mini-batches of that epoch already consumed.</param>
/// <param name="Step">Optimiser updates so far.</param>
/// <param name="Tokens">Target tokens so far.</param>
/// <param name="Positions">Target positions (with padding) so far.</param>
/// <param name="ElapsedSeconds">Training time so far.</param>
/// <param name="EpochLossSum">Token-weighted loss sum of the epoch in progress.</param>
/// <param name="EpochTokens">Target tokens of the epoch in progress.</param>
/// <param name="Epochs">Finished epochs.</param>
public sealed record TrainingPosition(int Epoch, int BatchesDone, int Step, long Tokens, long Positions, double ElapsedSeconds,
    double EpochLossSum, long EpochTokens, IReadOnlyList<EpochResult> Epochs)
{
    /// <summary>The start of a fresh run.</summary>
    public static TrainingPosition Start { get; } = new(1, 0, 0, 0, 0, 0, 0, 0, []);
}

/// <summary>What a save callback receives: the position and the live optimiser (to write its state).</summary>
/// <param name="Position">Where the run stands.</param>
/// <param name="Optimizer">The optimiser.</param>
public sealed record TrainingSnapshot(TrainingPosition Position, TorchSharp.Modules.OptimizerHelper Optimizer);

/// <summary>How to continue a run: its position and a way to restore the optimiser's state.</summary>
/// <param name="Position">Where the run stopped.</param>
/// <param name="RestoreOptimizer">Loads the saved optimiser state into the new optimiser.</param>
public sealed record TrainingResume(TrainingPosition Position, Action<TorchSharp.Modules.OptimizerHelper> RestoreOptimizer);

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
/// Teacher-forced training of any <see cref="EncoderDecoder"/> with masked cross-entropy, Adam, gradient
/// clipping (d2l §10.7), label smoothing, warm-up schedules and gradient accumulation. Each step runs in
/// its own dispose scope, so memory stays flat. Batches depend only on the seed and the epoch, so a run
/// saved through <c>onSave</c> and continued with a <see cref="TrainingResume"/> (plus the saved random
/// generator state) ends with the same weights as an uninterrupted one.
/// </summary>
public static class Trainer
{
    /// <summary>The learning rate of update <paramref name="step"/> (1-based) under <paramref name="options"/>.</summary>
    public static double LearningRate(TrainingOptions options, int step) => options.Schedule switch
    {
        "constant" => options.LearningRate,
        "inverse-sqrt" => options.LearningRate * Math.Min(step / (double)Math.Max(1, options.WarmupSteps), Math.Sqrt(Math.Max(1, options.WarmupSteps) / (double)Math.Max(1, step))),
        _ => throw new ArgumentException($"unknown learning-rate schedule '{options.Schedule}' (known: constant, inverse-sqrt)"),
    };

    /// <summary>
    /// The model's parameters, each storage once. TorchSharp lists a tied weight (the Transformer's output projection that
    /// is its target embedding) under both names as two parameter objects over one storage; given both, Adam would update
    /// it twice per step with two sets of moments and clipping would count its gradient twice. PyTorch's
    /// <c>parameters()</c> lists it once, and so does this.
    /// </summary>
    public static List<TorchSharp.Modules.Parameter> DistinctParameters(nn.Module model)
    {
        var seen = new HashSet<(IntPtr, long)>();
        var result = new List<TorchSharp.Modules.Parameter>();
        foreach (var p in model.parameters())
        {
            IntPtr storage;
            using (NewDisposeScope()) storage = StoragePointer(p);   // the storage view makes tensors of its own
            if (seen.Add((storage, p.storage_offset()))) result.Add(p);
        }
        return result;
    }

    private static IntPtr StoragePointer(Tensor t)
    {
        switch (t.dtype)
        {
            case ScalarType.Float32:
            {
                using var storage = t.storage<float>();
                return storage.data_ptr();
            }
            case ScalarType.Float64:
            {
                using var storage = t.storage<double>();
                return storage.data_ptr();
            }
            default:
                return t.Handle;
        }
    }

    /// <summary>Trains <paramref name="model"/> in place.</summary>
    /// <param name="model">The model.</param>
    /// <param name="data">Training pairs.</param>
    /// <param name="ids">Special ids of the target vocabulary (the source must use the same pad id).</param>
    /// <param name="maxSteps">Truncation length (d2l's <c>num_steps</c>), or null.</param>
    /// <param name="options">Run settings.</param>
    /// <param name="onStep">Called after every step.</param>
    /// <param name="onEpoch">Called after every epoch.</param>
    /// <param name="cancellation">Stops the run after the current step.</param>
    /// <param name="onSave">Called at every epoch end and every <see cref="TrainingOptions.SaveEverySteps"/> updates, to write a resumable checkpoint.</param>
    /// <param name="resume">Continue a saved run instead of starting afresh.</param>
    public static TrainingResult Train(
        EncoderDecoder model,
        IReadOnlyList<EncodedPair> data,
        SpecialIds ids,
        int? maxSteps,
        TrainingOptions options,
        Action<TrainingProgress>? onStep = null,
        Action<EpochResult>? onEpoch = null,
        CancellationToken cancellation = default,
        Action<TrainingSnapshot>? onSave = null,
        TrainingResume? resume = null)
    {
        if (data.Count == 0) throw new ArgumentException("no training pairs", nameof(data));
        if (options.AccumulateSteps < 1) throw new ArgumentException("accumulate steps must be at least 1");
        LearningRate(options, 1);
        if (options.KeepFreedMemory) NativeMemory.KeepFreedMemory();
        var parameters = DistinctParameters(model);
        using var optimizer = optim.Adam(parameters, lr: options.LearningRate);
        resume?.RestoreOptimizer(optimizer);
        var sourceLengths = data.Select(p => Batching.WithEos(p.Source, ids.Eos, maxSteps).Length).ToArray();
        var targetLengths = data.Select(p => Batching.WithEos(p.Target, ids.Eos, maxSteps).Length).ToArray();
        List<int[]> EpochBatches(int epoch) => options.Bucketed
            ? Batching.BucketedEpoch(sourceLengths, targetLengths, options.BatchSize, options.MaxTokens, options.Seed, epoch)
            : Batching.Chunk(Batching.EpochOrder(data.Count, options.Seed, epoch), options.BatchSize).ToList();
        int batchesPerEpoch = EpochBatches(1).Count;
        int totalSteps = batchesPerEpoch * options.Epochs / options.AccumulateSteps;

        var at = resume?.Position ?? TrainingPosition.Start;
        var epochs = new List<EpochResult>(at.Epochs);
        long tokens = at.Tokens, positions = at.Positions;
        int step = at.Step;
        double lossSum = at.EpochLossSum;
        long epochTokens = at.EpochTokens;
        var startElapsed = TimeSpan.FromSeconds(at.ElapsedSeconds);
        var clock = Stopwatch.StartNew();
        TimeSpan Elapsed() => startElapsed + clock.Elapsed;
        bool timeUp = false;
        model.train();
        try
        {
            for (int epoch = at.Epoch; epoch <= options.Epochs && !timeUp && !cancellation.IsCancellationRequested; epoch++)
            {
                var batches = EpochBatches(epoch);
                int first = epoch == at.Epoch ? at.BatchesDone : 0;
                if (epoch != at.Epoch) { lossSum = 0; epochTokens = 0; }
                int pending = 0, done = first;
                double pendingLoss = 0;
                for (int b = first; b < batches.Count; b++)
                {
                    done = b + 1;
                    int batchTokens;
                    double loss;
                    using (var scope = NewDisposeScope())
                    {
                        using var batch = Batching.Build(batches[b].Select(i => data[i]).ToList(), ids, maxSteps);
                        if (pending == 0) optimizer.zero_grad();
                        var logits = model.call(batch.Source, batch.SourceValidLengths, batch.TargetInput);
                        var l = Seq2SeqLoss.MaskedCrossEntropy(logits, batch.TargetOutput, ids.Pad, options.LabelSmoothing);
                        (options.AccumulateSteps == 1 ? l : l / options.AccumulateSteps).backward();
                        loss = l.item<float>();
                        batchTokens = batch.TargetTokens;
                        positions += batch.TargetPositions;
                    }
                    tokens += batchTokens;
                    epochTokens += batchTokens;
                    lossSum += loss * batchTokens;
                    pendingLoss += loss;
                    if (++pending < options.AccumulateSteps && b + 1 < batches.Count) continue;

                    step++;
                    foreach (var group in optimizer.ParamGroups) group.LearningRate = LearningRate(options, step);
                    using (var scope = NewDisposeScope())
                    {
                        if (options.GradientClip > 0) nn.utils.clip_grad_norm_(parameters, options.GradientClip);
                        optimizer.step();
                    }
                    var elapsed = Elapsed();
                    onStep?.Invoke(new TrainingProgress(epoch, step, totalSteps, pendingLoss / pending, tokens / Math.Max(1e-9, elapsed.TotalSeconds), elapsed));
                    pending = 0;
                    pendingLoss = 0;
                    bool last = b + 1 == batches.Count;
                    if (!last && options.SaveEverySteps is int every && step % every == 0)
                        onSave?.Invoke(new TrainingSnapshot(new TrainingPosition(epoch, b + 1, step, tokens, positions, elapsed.TotalSeconds, lossSum, epochTokens, epochs.ToList()), optimizer));
                    if (options.TimeLimit is { } limit && elapsed >= limit) { timeUp = true; break; }
                    if (cancellation.IsCancellationRequested) break;
                }
                var result = new EpochResult(epoch, lossSum / Math.Max(1, epochTokens), Elapsed());
                epochs.Add(result);
                onEpoch?.Invoke(result);
                bool finished = done == batches.Count;
                // At an epoch's end the position is the start of the next one; a run cut short saves where it stopped.
                var position = finished
                    ? new TrainingPosition(epoch + 1, 0, step, tokens, positions, Elapsed().TotalSeconds, 0, 0, epochs.ToList())
                    : new TrainingPosition(epoch, done, step, tokens, positions, Elapsed().TotalSeconds, lossSum, epochTokens, epochs.SkipLast(1).ToList());
                onSave?.Invoke(new TrainingSnapshot(position, optimizer));
                model.train();
            }
        }
        finally
        {
            model.eval();
        }
        return new TrainingResult(epochs, step, tokens, Elapsed(), timeUp, positions);
    }
}
