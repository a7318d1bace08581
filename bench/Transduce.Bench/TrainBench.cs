using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Models;
using Transduce.Text;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// <c>train</c>: trains a preset's Transformer for a fixed number of updates with the real <see cref="Trainer"/>, then the
/// PyTorch twin (bench/pytorch/train_twin.py) on exactly the same batches, same threads, in the same run; reports target
/// tokens/s for both, their ratio, and Transduce's model FLOPs utilisation against the matmul peak measured here.
/// </summary>
internal static class TrainBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The <c>train</c> command.</summary>
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "Training corpus (tab-separated).", DefaultValueFactory = _ => "../shared/data/fra-eng/train.tsv" };
        var preset = new Option<string>("--preset") { Description = "Training preset whose model, tokenizer and batching are measured.", DefaultValueFactory = _ => "transformer-base-cpu" };
        var steps = new Option<int>("--steps") { Description = "Measured updates.", DefaultValueFactory = _ => 40 };
        var warmup = new Option<int>("--warmup") { Description = "Updates run before timing starts (allocator and kernel warm-up).", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads for both sides and for the matmul peak.", DefaultValueFactory = _ => 2 };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Batch size in padded tokens (default: the preset's)." };
        var noTwin = new Option<bool>("--no-twin") { Description = "Measure Transduce only." };
        var keepFreed = new Option<bool>("--keep-freed-memory") { Description = "TrainingOptions.KeepFreedMemory (reuse freed native memory).", DefaultValueFactory = _ => true };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var command = new Command("train", "Training throughput of a preset's Transformer, side by side with the PyTorch twin, and its MFU.")
        {
            data, preset, steps, warmup, threads, maxTokens, noTwin, keepFreed, output,
        };
        command.SetAction(r => Run(r.GetValue(data)!, r.GetValue(preset)!, r.GetValue(steps), r.GetValue(warmup), r.GetValue(threads),
            r.GetValue(maxTokens), r.GetValue(noTwin), r.GetValue(keepFreed), r.GetValue(output)));
        return command;
    }

    private static int Run(string dataPath, string presetName, int steps, int warmup, int threads, int? maxTokens, bool noTwin, bool keepFreed, string? reportPath)
    {
        set_num_threads(threads);
        var preset = TrainingPreset.All.TryGetValue(presetName, out var p) ? p
            : throw new ArgumentException($"--preset: unknown '{presetName}' (known: {string.Join(", ", TrainingPreset.All.Keys)})");
        if (preset.Architecture != "transformer") throw new ArgumentException($"--preset {presetName}: only Transformer presets are counted (FLOPs)");
        var options = preset.Training with { MaxTokens = maxTokens ?? preset.Training.MaxTokens, Bucketed = true, TimeLimit = null, Epochs = 1, Seed = 1, KeepFreedMemory = keepFreed };

        // Data exactly as `transduce train --preset` prepares it.
        var pairs = ParallelCorpus.Read(dataPath).Pairs;
        var (prepared, _) = TranslationData.ForTraining(pairs,
            new TextConfig { Normalizer = preset.Normalizer, Tokenizer = preset.Tokenizer, MaxSteps = preset.MaxSteps },
            preset.BpeVocabSize, preset.MinFrequency, preset.ShareEmbeddings);
        var tgt = prepared.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var config = new ModelConfig
        {
            Architecture = "transformer", SourceVocabSize = prepared.SourceVocabulary.Count, TargetVocabSize = tgt.Count,
            EmbeddingSize = preset.HiddenSize, HiddenSize = preset.HiddenSize, Layers = preset.Layers, Heads = preset.Heads,
            FfnSize = preset.FfnSize, Dropout = preset.Dropout, PadId = tgt.PadId, PreNorm = preset.PreNorm,
            TieEmbeddings = preset.TieEmbeddings, ShareEmbeddings = preset.ShareEmbeddings,
        };
        int? maxSteps = Batching.MinLimit(preset.MaxSteps, config.MaxSequenceLength);

        // The first warmup + steps batches of epoch 1, as the Trainer draws them: the twin gets the same tensors.
        var sourceLengths = prepared.Pairs.Select(x => Batching.WithEos(x.Source, ids.Eos, maxSteps).Length).ToArray();
        var targetLengths = prepared.Pairs.Select(x => Batching.WithEos(x.Target, ids.Eos, maxSteps).Length).ToArray();
        var batches = Batching.BucketedEpoch(sourceLengths, targetLengths, options.BatchSize, options.MaxTokens, options.Seed, 1)
            .Take(warmup + steps).ToList();
        if (batches.Count < warmup + steps) throw new ArgumentException($"the corpus gives only {batches.Count} batches");
        string work = Directory.CreateTempSubdirectory("transduce-bench-train-").FullName;
        double measuredFlops = 0;
        long measuredTokens = 0, measuredPositions = 0;
        try
        {
            var tensors = new Dictionary<string, Tensor>();
            for (int b = 0; b < batches.Count; b++)
            {
                var batch = Batching.Build(batches[b].Select(i => prepared.Pairs[i]).ToList(), ids, maxSteps);
                tensors[$"{b}.source"] = batch.Source;
                tensors[$"{b}.source_lengths"] = batch.SourceValidLengths;
                tensors[$"{b}.target_input"] = batch.TargetInput;
                tensors[$"{b}.target_output"] = batch.TargetOutput;
                if (b >= warmup)
                {
                    measuredFlops += Flops.TransformerTrainStep(config, batch.Source.shape[0], batch.Source.shape[1], batch.TargetInput.shape[1]);
                    measuredTokens += batch.TargetTokens;
                    measuredPositions += batch.TargetPositions;
                }
            }
            string batchFile = Path.Combine(work, "batches.safetensors");
            Safetensors.Save(batchFile, tensors);
            foreach (var t in tensors.Values) t.Dispose();
            string configFile = Path.Combine(work, "config.json");
            File.WriteAllText(configFile, JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = config, ["label_smoothing"] = options.LabelSmoothing, ["lr"] = options.LearningRate,
                ["warmup_updates"] = options.WarmupSteps, ["clip"] = options.GradientClip,
            }, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));

            Console.Error.WriteLine($"measuring the fp32 matmul peak on {threads} threads…");
            var (peak, peakSize) = Hardware.MatmulPeak();

            // Transduce: the real Trainer over the same pairs, stopped after warmup + steps updates. Its batch order is
            // recomputed from the same lengths, seed and epoch, so it sees the batches written above.
            Console.Error.WriteLine($"Transduce: {warmup} + {steps} updates…");
            manual_seed(options.Seed);
            using var model = ModelFactory.Create(config);
            using var stop = new CancellationTokenSource();
            var marks = new List<(int Step, double Seconds)>();
            var clock = Stopwatch.StartNew();
            Trainer.Train(model, prepared.Pairs, ids, maxSteps, options, onStep: progress =>
            {
                marks.Add((progress.Step, clock.Elapsed.TotalSeconds));
                if (progress.Step >= warmup + steps) stop.Cancel();
            }, cancellation: stop.Token);
            double ours = marks.Single(m => m.Step == warmup + steps).Seconds - marks.Single(m => m.Step == warmup).Seconds;
            long rss = Hardware.PeakRss();

            double? twin = null;
            string twinVersion = "";
            double twinPeak = 0;
            if (!noTwin)
            {
                Console.Error.WriteLine($"PyTorch twin: {warmup} + {steps} updates on the same batches…");
                string json = PythonTwin.Run("train_twin.py", "--batches", batchFile, "--config", configFile,
                    "--warmup", warmup.ToString(Inv), "--steps", steps.ToString(Inv), "--threads", threads.ToString(Inv));
                using var doc = JsonDocument.Parse(json);
                twin = doc.RootElement.GetProperty("seconds").GetDouble();
                long twinTokens = doc.RootElement.GetProperty("tokens").GetInt64();
                if (twinTokens != measuredTokens)
                    throw new InvalidOperationException($"the twin trained on {twinTokens} target tokens, Transduce on {measuredTokens}: not the same batches");
                twinVersion = doc.RootElement.GetProperty("torch").GetString() ?? "";
                twinPeak = doc.RootElement.GetProperty("matmul_gflops").GetDouble();
            }

            string report = Report(presetName, config, Trainer.DistinctParameters(model).Sum(x => x.numel()), options, threads, warmup, steps,
                measuredTokens, measuredPositions, measuredFlops, ours, twin, twinVersion, twinPeak, peak, peakSize, rss);
            Console.WriteLine(report);
            if (reportPath is not null) File.WriteAllText(reportPath, report);
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static string Report(string preset, ModelConfig c, long parameters, TrainingOptions o, int threads, int warmup, int steps,
        long tokens, long positions, double flops, double ours, double? twin, string twinVersion, double twinPeak, double peak, int peakSize, long rss)
    {
        double oursRate = tokens / ours;
        // MFU against the higher of the two measured peaks (ours through libtorch's BLAS, the twin's through Debian's):
        // the ceiling the hardware showed either library, so a noisy or slower BLAS cannot flatter the figure.
        double ceiling = Math.Max(peak, twinPeak);
        var s = new StringBuilder();
        s.AppendLine(Inv, $"Training throughput, preset `{preset}`: Transformer {c.Layers}+{c.DecoderLayerCount} layers, {c.HiddenSize} wide, " +
                          $"FFN {c.FfnSize}, vocabulary {c.TargetVocabSize:N0}, {parameters:N0} parameters; batches of ≤ {o.MaxTokens:N0} padded tokens " +
                          $"(padding {1 - tokens / (double)positions:P1}); {steps} updates timed after {warmup} of warm-up; {threads} threads; " +
                          $"freed native memory {(o.KeepFreedMemory ? "kept for reuse" : "returned to the system")}.");
        s.AppendLine();
        s.AppendLine("| | target tokens/s | seconds | model GFLOP/s | MFU |");
        s.AppendLine("| --- | ---: | ---: | ---: | ---: |");
        s.AppendLine(Inv, $"| Transduce (TorchSharp 0.107, libtorch 2.10) | {oursRate:N0} | {ours:F1} | {flops / ours / 1e9:F1} | {flops / ours / 1e9 / ceiling:P1} |");
        if (twin is double t)
        {
            s.AppendLine(Inv, $"| PyTorch twin (torch {twinVersion}) | {tokens / t:N0} | {t:F1} | {flops / t / 1e9:F1} | {flops / t / 1e9 / ceiling:P1} |");
            s.AppendLine();
            s.AppendLine(Inv, $"Transduce / twin: **{t / ours:F2}×** target tokens/s.");
        }
        s.AppendLine();
        string twinPeakText = twin is null ? "" : string.Create(Inv, $", {twinPeak:F1} through the twin's torch");
        s.AppendLine(Inv, $"fp32 matmul peak on {threads} threads: {peak:F1} GFLOP/s through TorchSharp ({peakSize}×{peakSize}){twinPeakText}; " +
                          $"MFU is against **{ceiling:F1} GFLOP/s**, the higher. " +
                          $"Model FLOPs: {flops / 1e9:F1} GFLOP for the timed updates (3× the forward matmuls, padded shapes). Peak RSS: {rss / 1e9:F2} GB.");
        return s.ToString();
    }
}
