using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Transduce.Architecture;
using Transduce.Data;
using Transduce.Models;
using Transduce.Native;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Training;

/// <summary>
/// The training section of a <see cref="RunConfig"/>: optimisation, batching, when to stop and what to keep.
/// Defaults are d2l §10.7's.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Passes over the data.</summary>
    public int Epochs { get; init; } = 30;

    /// <summary>Sentence pairs per mini-batch (with <see cref="MaxTokens"/>: at most this many).</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Adam learning rate (the peak of the <c>inverse-sqrt</c> schedule).</summary>
    public double LearningRate { get; init; } = 0.005;

    /// <summary>Learning-rate schedule.</summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Constant;

    /// <summary>Warm-up updates of the <c>inverse-sqrt</c> schedule.</summary>
    public int WarmupSteps { get; init; } = 4000;

    /// <summary>Gradient-norm clipping threshold (0 disables clipping).</summary>
    public double GradientClip { get; init; } = 1.0;

    /// <summary>Label smoothing ε.</summary>
    public double LabelSmoothing { get; init; }

    /// <summary>Mini-batches whose gradients are summed before each optimiser update.</summary>
    public int AccumulateSteps { get; init; } = 1;

    /// <summary>Seed of the initialisation, dropout and batch order.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>
    /// Length-bucketed batches (similar lengths together, little padding; see <see cref="Batching.BucketedEpoch"/>)
    /// instead of d2l's plain shuffled batches. Implied by <see cref="MaxTokens"/>.
    /// </summary>
    public bool Bucketed { get; init; }

    /// <summary>Length-bucketed batches of at most this many padded tokens (on either side).</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Stop after this much training time (checked after every update; in files <c>90m</c>, <c>1.5h</c>, <c>45s</c> or <c>01:30:00</c>).</summary>
    [JsonConverter(typeof(DurationConverter))]
    public TimeSpan? TimeLimit { get; init; }

    /// <summary>Stop after this many optimiser updates.</summary>
    public int? MaxUpdates { get; init; }

    /// <summary>Also write a resumable checkpoint every N updates (it is written at every epoch end regardless).</summary>
    public int? SaveEverySteps { get; init; }

    /// <summary>Keep the models of the last K saves in the run's <c>history/</c> folder.</summary>
    public int? KeepLast { get; init; }

    /// <summary>
    /// At the end, average the weights of the last K saves (fairseq's and Marian's checkpoint averaging), validate the
    /// average like any other candidate and keep it in <c>best/</c> if it wins. Keeps at least K saves in <c>history/</c>.
    /// </summary>
    public int? AverageLast { get; init; }

    /// <summary>libtorch intra-op threads (process-wide); null leaves libtorch's choice (all cores).</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Keep native memory that libtorch frees for reuse (process-wide, see <see cref="Native.NativeMemory.KeepFreedMemory"/>):
    /// faster steps at the cost of holding the peak footprint. On by default.
    /// </summary>
    public bool KeepFreedMemory { get; init; } = true;

    /// <summary>
    /// Compute precision of the forward and backward passes: <see cref="TrainingPrecision.BFloat16"/> runs the matmuls in
    /// bfloat16 (libtorch's CPU autocast) while weights, gradients, optimiser state, layer norms, softmax and the loss stay
    /// float32; <see cref="TrainingPrecision.Auto"/> takes whichever of the two is faster on the machine, measured when a new
    /// run starts.
    /// </summary>
    public TrainingPrecision Precision { get; init; } = TrainingPrecision.Float32;

    /// <summary>
    /// Parts of the model that keep their weights (bit for bit) while the rest trains, as when fine-tuning a pretrained
    /// model on little data: <see cref="FrozenPart.Embeddings"/>, <see cref="FrozenPart.Encoder"/>. Empty (the default)
    /// trains everything.
    /// </summary>
    public IReadOnlyList<FrozenPart> Freeze { get; init; } = [];

    /// <summary>
    /// How the pieces of a training step are computed: every choice gives the same update within float tolerance
    /// (tests hold them to each other); the reference paths stay for measurements and as the tests' oracle.
    /// </summary>
    internal TrainingKernels Kernels { get; init; } = TrainingKernels.Default;
}

/// <summary>The faster implementations of a training step's pieces (issue 27), each a flag; none is the reference step.</summary>
[Flags]
internal enum TrainingKernels
{
    /// <summary>Autograd's cross-entropy and TorchSharp's Adam, one parameter tensor at a time.</summary>
    None = 0,

    /// <summary>The loss and its gradient in one chunked pass (<see cref="Seq2SeqLoss.Backward"/>).</summary>
    FusedLoss = 1,

    /// <summary>Parameters, gradients and Adam's moments in flat buffers, updated and clipped in a few whole-buffer operations (<see cref="FlatAdam"/>).</summary>
    FlatAdam = 2,

    /// <summary>Both faster pieces together.</summary>
    Fast = FusedLoss | FlatAdam,

    /// <summary>
    /// What training uses: the fused loss. Measured on an idle machine (BENCHMARKS.md, "A faster bf16 step"), once it no
    /// longer recorded its own arithmetic in the graph, it ran at 1.06× the reference in fp32 and bf16 with 0.7–0.9 GB less
    /// peak memory; flat Adam ran at 1.00× the reference, so it stays off.
    /// </summary>
    Default = FusedLoss,
}

/// <summary>A part of a model that <see cref="TrainingOptions.Freeze"/> keeps fixed.</summary>
public enum FrozenPart
{
    /// <summary>
    /// The token embeddings and learned position tables, and whatever shares their weights: a tied output projection,
    /// the other side's embedding when source and target share one.
    /// </summary>
    Embeddings,

    /// <summary>Every weight of the encoder, its embedding included (so a shared embedding, and a tied output projection, too).</summary>
    Encoder,
}

/// <summary>How the learning rate changes over a run.</summary>
public enum LearningRateSchedule
{
    /// <summary>The same rate throughout (d2l's plain Adam).</summary>
    Constant,

    /// <summary>Linear warm-up over <see cref="TrainingOptions.WarmupSteps"/>, then proportional to 1/√update (the Transformer paper's).</summary>
    InverseSqrt,
}

/// <summary>Reads durations as <c>90m</c>, <c>1.5h</c>, <c>45s</c> or <c>hh:mm:ss</c>; writes the shortest exact form.</summary>
internal sealed class DurationConverter : JsonConverter<TimeSpan?>
{
    public override bool HandleNull => true;

    public override TimeSpan? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.String)
            throw new JsonException("expected a duration such as 90m, 1.5h, 45s or 01:30:00");
        string text = reader.GetString()!.Trim();
        try
        {
            return Parse(text) ?? throw new JsonException($"'{text}' is not a duration (write 90m, 1.5h, 45s or 01:30:00)");
        }
        catch (ArgumentException e)
        {
            throw new JsonException(e.Message, e);
        }
    }

    /// <summary>The longest duration read: a year (beyond it a time limit is a typo, and <see cref="TimeSpan"/> overflows).</summary>
    internal static readonly TimeSpan Longest = TimeSpan.FromDays(365);

    internal const string LongestText = "365 days (8760h)";

    /// <summary>
    /// The duration <paramref name="text"/> writes, or null if it writes none; a duration longer than
    /// <see cref="Longest"/> is an <see cref="ArgumentException"/> (checked before a <see cref="TimeSpan"/> is made).
    /// </summary>
    internal static TimeSpan? Parse(string text)
    {
        text = text.Trim();
        if (text.Length > 1 && char.ToLowerInvariant(text[^1]) is 's' or 'm' or 'h'
            && double.TryParse(text[..^1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double n)
            && !double.IsNaN(n))
        {
            if (n < 0) throw new ArgumentException("must be positive");
            double seconds = n * char.ToLowerInvariant(text[^1]) switch { 's' => 1, 'm' => 60, _ => 3600 };
            if (seconds > Longest.TotalSeconds) throw new ArgumentException($"must be at most {LongestText}");
            return char.ToLowerInvariant(text[^1]) switch { 's' => TimeSpan.FromSeconds(n), 'm' => TimeSpan.FromMinutes(n), _ => TimeSpan.FromHours(n) };
        }
        if (!TimeSpan.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var t) || t < TimeSpan.Zero) return null;
        return t <= Longest ? t : throw new ArgumentException($"must be at most {LongestText}");
    }

    public override void Write(Utf8JsonWriter writer, TimeSpan? value, JsonSerializerOptions options)
    {
        if (value is not { } t) { writer.WriteNullValue(); return; }
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (t.Ticks % TimeSpan.TicksPerHour == 0) writer.WriteStringValue((t.Ticks / TimeSpan.TicksPerHour).ToString(inv) + "h");
        else if (t.Ticks % TimeSpan.TicksPerMinute == 0) writer.WriteStringValue((t.Ticks / TimeSpan.TicksPerMinute).ToString(inv) + "m");
        else if (t.Ticks % TimeSpan.TicksPerSecond == 0) writer.WriteStringValue((t.Ticks / TimeSpan.TicksPerSecond).ToString(inv) + "s");
        else writer.WriteStringValue(t.ToString("c", inv));
    }
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
internal sealed record TrainingPosition(int Epoch, int BatchesDone, int Step, long Tokens, long Positions, double ElapsedSeconds,
    double EpochLossSum, long EpochTokens, IReadOnlyList<EpochResult> Epochs)
{
    /// <summary>The start of a fresh run.</summary>
    public static TrainingPosition Start { get; } = new(1, 0, 0, 0, 0, 0, 0, 0, []);
}

/// <summary>What a save callback receives: the position and the live optimiser (to write its state).</summary>
/// <param name="Position">Where the run stands.</param>
/// <param name="Optimizer">The optimiser.</param>
internal sealed record TrainingSnapshot(TrainingPosition Position, TorchSharp.Modules.OptimizerHelper Optimizer);

/// <summary>How to continue a run: its position and a way to restore the optimiser's state.</summary>
/// <param name="Position">Where the run stopped.</param>
/// <param name="RestoreOptimizer">Loads the saved optimiser state into the new optimiser.</param>
internal sealed record TrainingResume(TrainingPosition Position, Action<TorchSharp.Modules.OptimizerHelper> RestoreOptimizer);

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
/// <param name="Stop">What ended the run.</param>
/// <param name="TargetPositions">Target positions computed, padding included.</param>
internal sealed record TrainingResult(IReadOnlyList<EpochResult> Epochs, int Steps, long TargetTokens, TimeSpan Elapsed, TrainingStop Stop, long TargetPositions)
{
    /// <summary>Share of computed target positions that were padding.</summary>
    public double PaddingFraction => TargetPositions == 0 ? 0 : 1 - TargetTokens / (double)TargetPositions;

    /// <summary>Target tokens per second over the whole run.</summary>
    public double TokensPerSecond => TargetTokens / Math.Max(1e-9, Elapsed.TotalSeconds);
}

/// <summary>What ended a training run.</summary>
public enum TrainingStop
{
    /// <summary>The last epoch finished.</summary>
    Completed,

    /// <summary><see cref="TrainingOptions.TimeLimit"/> was reached.</summary>
    TimeLimit,

    /// <summary><see cref="TrainingOptions.MaxUpdates"/> were made.</summary>
    MaxUpdates,

    /// <summary>Validation stopped improving for <see cref="ValidationOptions.Patience"/> validations.</summary>
    EarlyStop,

    /// <summary>The caller cancelled (Ctrl+C in the CLI).</summary>
    Cancelled,
}

/// <summary>
/// Teacher-forced training of any <see cref="EncoderDecoder"/> with masked cross-entropy, Adam, gradient
/// clipping (d2l §10.7), label smoothing, warm-up schedules, gradient accumulation and bf16 mixed precision
/// (<see cref="TrainingOptions.Precision"/>). Each step runs in
/// its own dispose scope, so memory stays flat. Batches depend only on the seed and the epoch, so a run
/// saved through <c>onSave</c> and continued with a <see cref="TrainingResume"/> (plus the saved random
/// generator state) ends with the same weights as an uninterrupted one.
/// </summary>
internal static class Trainer
{
    /// <summary>The learning rate of update <paramref name="step"/> (1-based) under <paramref name="options"/>.</summary>
    public static double LearningRate(TrainingOptions options, int step) => options.Schedule switch
    {
        LearningRateSchedule.Constant => options.LearningRate,
        LearningRateSchedule.InverseSqrt => options.LearningRate * Math.Min(step / (double)Math.Max(1, options.WarmupSteps), Math.Sqrt(Math.Max(1, options.WarmupSteps) / (double)Math.Max(1, step))),
        _ => throw new ArgumentException($"unknown learning-rate schedule '{options.Schedule}'"),
    };

    /// <summary>
    /// The model's parameters, each storage once. TorchSharp lists a tied weight (the Transformer's output projection that
    /// is its target embedding) under both names as two parameter objects over one storage; given both, Adam would update
    /// it twice per step with two sets of moments and clipping would count its gradient twice. PyTorch's
    /// <c>parameters()</c> lists it once, and so does this.
    /// </summary>
    internal static List<TorchSharp.Modules.Parameter> DistinctParameters(nn.Module model)
    {
        var seen = new HashSet<(IntPtr, long)>();
        var result = new List<TorchSharp.Modules.Parameter>();
        foreach (var p in model.parameters())
            if (seen.Add(StorageKey(p))) result.Add(p);
        return result;
    }

    /// <summary>Where a parameter's values live: its storage and offset (tied parameters share one).</summary>
    private static (IntPtr, long) StorageKey(Tensor p)
    {
        IntPtr storage;
        using (NewDisposeScope()) storage = StoragePointer(p);   // the storage view makes tensors of its own
        return (storage, p.storage_offset());
    }

    /// <summary>
    /// Freezes the parameters named in <paramref name="frozen"/> and every parameter that shares their values (a tied output
    /// projection, a shared embedding): they stop requiring gradients. Returns the distinct parameters left to train and the
    /// ones frozen here (to be thawed after training).
    /// </summary>
    internal static (List<TorchSharp.Modules.Parameter> Trainable, List<TorchSharp.Modules.Parameter> Frozen) Freeze(nn.Module model, IReadOnlyCollection<string> frozen)
    {
        var named = model.named_parameters().ToList();
        var keys = named.Where(n => frozen.Contains(n.name)).Select(n => StorageKey(n.parameter)).ToHashSet();
        var changed = new List<TorchSharp.Modules.Parameter>();
        foreach (var (_, p) in named)
            if (p.requires_grad && keys.Contains(StorageKey(p)))
            {
                p.requires_grad = false;
                changed.Add(p);
            }
        var trainable = DistinctParameters(model).Where(p => !keys.Contains(StorageKey(p))).ToList();
        return (trainable, changed);
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

    /// <summary>
    /// Frees, after every update, the small native objects an update leaves to the finalizer. TorchSharp makes a
    /// finalizable native <c>Scalar</c> for every number passed to a tensor operation (the Adam step alone makes several
    /// per parameter, ~1,250 per update of the base preset), and an update allocates too little managed memory for the
    /// GC to run by itself for many updates. Until then those small blocks sit between the large freed blocks of the
    /// C heap and keep them from merging, so each longer batch takes new memory: peak RSS doubled over 200 updates
    /// (BENCHMARKS.md). The generation-0 collection paused about 1.2 ms per update of that preset, against a second.
    /// </summary>
    private static void CollectStepGarbage()
    {
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        GC.WaitForPendingFinalizers();
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
    /// <param name="frozen">Parameters (by name) that keep their values: not given to the optimiser, no gradients (<see cref="Freeze"/>).</param>
    /// <param name="weights">Corpora with weights, sampled each epoch (<see cref="CorpusWeights.Sample"/>); null: each pair once.</param>
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
        TrainingResume? resume = null,
        IReadOnlyCollection<string>? frozen = null,
        CorpusWeights? weights = null)
    {
        if (weights is not null && weights.Pairs.Sum(p => (long)p) != data.Count)
            throw new ArgumentException($"the corpora's weights cover {weights.Pairs.Sum(p => (long)p)} pairs, the data has {data.Count}", nameof(weights));
        if (data.Count == 0) throw new ArgumentException("no training pairs", nameof(data));
        if (options.AccumulateSteps < 1) throw new ArgumentException("accumulate steps must be at least 1");
        LearningRate(options, 1);
        if (options.Precision == TrainingPrecision.Auto) throw new ArgumentException("precision auto is chosen when a run starts (TrainingRun); the trainer takes float32 or bfloat16");
        if (options.KeepFreedMemory) Native.NativeMemory.KeepFreedMemory();
        var (parameters, thaw) = Freeze(model, frozen ?? []);
        if (parameters.Count == 0)
        {
            foreach (var p in thaw) p.requires_grad = true;
            throw new ArgumentException("'training.freeze' leaves no parameter to train");
        }
        using var optimizer = optim.Adam(parameters, lr: options.LearningRate);
        resume?.RestoreOptimizer(optimizer);
        using var flat = options.Kernels.HasFlag(TrainingKernels.FlatAdam) ? FlatAdam.TryCreate(optimizer, parameters) : null;
        var (sourceLengths, targetLengths) = Batching.FramedLengths(data, ids, maxSteps);
        // Pairs read from mapped shards are shuffled in chunks, so that an epoch reads the files a window at a time.
        int[] EpochOrder(int epoch) => data is ShardPairs
            ? Batching.ChunkedEpochOrder(data.Count, options.Seed, epoch, weights: weights)
            : Batching.EpochOrder(data.Count, options.Seed, epoch, weights: weights);
        List<int[]> EpochBatches(int epoch) => options.Bucketed || options.MaxTokens is not null
            ? Batching.BucketedEpoch(sourceLengths, targetLengths, options.BatchSize, options.MaxTokens, options.Seed, epoch, EpochOrder(epoch))
            : Batching.Chunk(EpochOrder(epoch), options.BatchSize).ToList();
        // The first epoch's batches are drawn once, for the count and (when the run starts there) for training.
        List<int[]>? firstEpoch = EpochBatches(1);
        int batchesPerEpoch = firstEpoch.Count;
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
        var stop = options.MaxUpdates is int cap && step >= cap ? TrainingStop.MaxUpdates : TrainingStop.Completed;
        bool allDone = false;
        model.train();
        try
        {
            for (int epoch = at.Epoch; epoch <= options.Epochs && stop == TrainingStop.Completed && !cancellation.IsCancellationRequested; epoch++)
            {
                var batches = epoch == 1 && firstEpoch is not null ? firstEpoch : EpochBatches(epoch);
                firstEpoch = null;
                // Pairs in mapped shards are many: the garbage of drawing an epoch's order goes before the epoch trains.
                if (data is ShardPairs) GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
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
                        if (pending == 0)
                        {
                            if (flat is not null) flat.ZeroGrad();
                            else optimizer.zero_grad();
                        }
                        Tensor logits;
                        // The forward pass in the run's precision; the loss (float32) and the backward pass after it.
                        using (Autocast.Enter(options.Precision == TrainingPrecision.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32))
                            logits = model.call(batch.Source, batch.SourceValidLengths, batch.TargetInput);
                        loss = Seq2SeqLoss.Backward(logits, batch.TargetOutput, ids.Pad, options.LabelSmoothing, options.AccumulateSteps,
                            fused: options.Kernels.HasFlag(TrainingKernels.FusedLoss));
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
                        if (flat is not null)
                        {
                            if (options.GradientClip > 0) flat.ClipGradNorm(options.GradientClip);
                            flat.Step();
                        }
                        else
                        {
                            if (options.GradientClip > 0) nn.utils.clip_grad_norm_(parameters, options.GradientClip);
                            optimizer.step();
                        }
                    }
                    CollectStepGarbage();
                    var elapsed = Elapsed();
                    onStep?.Invoke(new TrainingProgress(epoch, step, totalSteps, pendingLoss / pending, tokens / Math.Max(1e-9, elapsed.TotalSeconds), elapsed));
                    pending = 0;
                    pendingLoss = 0;
                    bool last = b + 1 == batches.Count;
                    if (!last && options.SaveEverySteps is int every && step % every == 0)
                        onSave?.Invoke(new TrainingSnapshot(new TrainingPosition(epoch, b + 1, step, tokens, positions, elapsed.TotalSeconds, lossSum, epochTokens, epochs.ToList()), optimizer));
                    if (options.TimeLimit is { } limit && elapsed >= limit) { stop = TrainingStop.TimeLimit; break; }
                    if (options.MaxUpdates is int maxUpdates && step >= maxUpdates) { stop = TrainingStop.MaxUpdates; break; }
                    if (cancellation.IsCancellationRequested) break;
                }
                var result = new EpochResult(epoch, lossSum / Math.Max(1, epochTokens), Elapsed());
                epochs.Add(result);
                onEpoch?.Invoke(result);
                bool finished = done == batches.Count;
                allDone = finished && epoch == options.Epochs;
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
            foreach (var p in thaw) p.requires_grad = true;
        }
        if (stop == TrainingStop.Completed && !allDone && cancellation.IsCancellationRequested) stop = TrainingStop.Cancelled;
        return new TrainingResult(epochs, step, tokens, Elapsed(), stop, positions);
    }
}
