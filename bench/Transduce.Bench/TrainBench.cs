using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Evaluation;
using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;
using Transduce.Training;
using Transduce.Native;
using static TorchSharp.torch;
using Transduce.IO;

namespace Transduce.Bench;

/// <summary>
/// <c>train</c>: trains a preset's Transformer for a fixed number of updates as a real <see cref="TrainingRun"/> in fp32
/// and in bf16 mixed precision, then the PyTorch twin (bench/pytorch/train_twin.py) both ways on exactly the same
/// batches, same threads, in the same run; reports target tokens/s for all four, the bf16 ÷ fp32 and Transduce ÷ twin
/// ratios, and the model FLOPs utilisation against the fp32 and the bf16 matmul peaks measured here.
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
        var threads = new Option<int>("--threads") { Description = "Intra-op threads for both sides and for the matmul peaks.", DefaultValueFactory = _ => 2 };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Batch size in padded tokens (default: the preset's)." };
        var precisions = new Option<string>("--precision") { Description = "Precisions to measure, comma-separated: fp32, bf16.", DefaultValueFactory = _ => "fp32,bf16" };
        var repeats = new Option<int>("--repeats") { Description = "Measure every side and precision this many times (alternating the order), and report ranges.", DefaultValueFactory = _ => 1 };
        var noTwin = new Option<bool>("--no-twin") { Description = "Measure Transduce only." };
        var keepFreed = new Option<bool>("--keep-freed-memory") { Description = "TrainingOptions.KeepFreedMemory (reuse freed native memory).", DefaultValueFactory = _ => true };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var kernels = new Option<string>("--kernels")
        {
            Description = "Training-step implementations to measure against each other, comma-separated (alternated within every repeat): " +
                          "default (what training uses: the fused loss), reference (autograd's loss, TorchSharp's Adam per tensor), fused-loss, flat-adam, fast (both).",
            DefaultValueFactory = _ => "default",
        };
        var curve = new Option<string?>("--curve") { Description = "Write the training loss of every Transduce precision (first repeat, every update from the first, means of 10) overlaid in this PNG." };
        var command = new Command("train", "Training throughput of a preset's Transformer in fp32 and bf16, side by side with the PyTorch twin, and its MFU.")
        {
            data, preset, steps, warmup, threads, maxTokens, precisions, repeats, noTwin, keepFreed, output, curve, kernels,
        };
        command.SetAction(r => Run(new Settings(r.GetValue(data)!, r.GetValue(preset)!, r.GetValue(steps), r.GetValue(warmup), r.GetValue(threads),
            r.GetValue(maxTokens), r.GetValue(precisions)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParsePrecision).Distinct().ToList(),
            Math.Max(1, r.GetValue(repeats)), r.GetValue(noTwin), r.GetValue(keepFreed), r.GetValue(output), r.GetValue(curve),
            r.GetValue(kernels)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct().Select(ParseKernels).ToList())));
        return command;
    }

    private static TrainingPrecision ParsePrecision(string name) => TrainingPrecisions.Parse(name) is var t && t != TrainingPrecision.Auto ? t
        : throw new ArgumentException("--precision: training runs in fp32 or bf16");

    private static readonly Dictionary<string, TrainingKernels> KernelNames = new()
    {
        ["default"] = TrainingKernels.Default, ["reference"] = TrainingKernels.None,
        ["fused-loss"] = TrainingKernels.FusedLoss, ["flat-adam"] = TrainingKernels.FlatAdam, ["fast"] = TrainingKernels.Fast,
    };

    private static (string Name, TrainingKernels Kernels) ParseKernels(string name) => KernelNames.TryGetValue(name, out var k) ? (name, k)
        : throw new ArgumentException($"--kernels: '{name}' is none of {string.Join(", ", KernelNames.Keys)}");

    /// <summary>fp32 or bf16, as the issue and the twin's --precision spell them.</summary>
    private static string Short(this TrainingPrecision type) => type == TrainingPrecision.BFloat16 ? "bf16" : "fp32";

    private sealed record Settings(string Data, string Preset, int Steps, int Warmup, int Threads, int? MaxTokens, IReadOnlyList<TrainingPrecision> Precisions,
        int Repeats, bool NoTwin, bool KeepFreed, string? ReportPath, string? CurvePath, IReadOnlyList<(string Name, TrainingKernels Kernels)> Kernels)
    {
        /// <summary>The variant the ratios and the loss comparison use: the first listed.</summary>
        public string Main => Kernels[0].Name;
    }

    /// <summary>One timed training run: which side, which precision, which repeat, its seconds and the last update's loss.</summary>
    private sealed record Measurement(string Side, TrainingPrecision Precision, int Repeat, double Seconds, double Loss, long PeakRss, string Kernels = "default");

    private static int Run(Settings s)
    {
        set_num_threads(s.Threads);
        var preset = RunConfig.FromPreset(s.Preset);
        if (preset.Model.Architecture != TransformerConfig.Name) throw new ArgumentException($"--preset {s.Preset}: only Transformer presets are counted (FLOPs)");
        if (s.Kernels.Count == 0) throw new ArgumentException("--kernels: name at least one");
        if (s.Precisions.Count == 0) throw new ArgumentException("--precision: name at least one of fp32, bf16");
        int warmup = s.Warmup, steps = s.Steps;
        // The preset as `transduce train --preset` runs it, on one file, stopped after warmup + steps updates (over as
        // many epochs as that takes), no validation, no saves but the last.
        var config = preset with
        {
            Training = preset.Training with
            {
                MaxTokens = s.MaxTokens ?? preset.Training.MaxTokens, Bucketed = true, TimeLimit = null, Epochs = 1000, Seed = 1,
                KeepFreedMemory = s.KeepFreed, MaxUpdates = warmup + steps, Threads = s.Threads, SaveEverySteps = null, KeepLast = null, AverageLast = null,
            },
            Validation = new ValidationOptions(),
            Data = preset.Data with { Train = s.Data, TrainFile = null, ValidFile = null },
        };
        var options = config.Training;
        string work = Directory.CreateTempSubdirectory("transduce-bench-train-").FullName;
        try
        {
            Console.Error.WriteLine($"measuring the fp32 and bf16 matmul peaks on {s.Threads} threads…");
            var peak32 = Hardware.MatmulPeak();
            var peak16 = Hardware.MatmulPeak(type: ScalarType.BFloat16);

            string batchFile = Path.Combine(work, "batches.safetensors"), configFile = Path.Combine(work, "config.json");
            TransformerConfig? modelConfig = null;
            long parameters = 0;
            double measuredFlops = 0;
            long measuredTokens = 0, measuredPositions = 0;

            // Once the first run has prepared its data and model: the first warmup + steps batches, as the Trainer draws
            // them epoch after epoch, go to a file, so the twin trains on exactly the same tensors. Every run prepares
            // the same data (the tokenizer's training is deterministic) and draws the same batches from the same seed.
            void WriteBatches(Checkpoint checkpoint, IReadOnlyList<EncodedPair> pairs)
            {
                var c = modelConfig = (TransformerConfig)checkpoint.ModelConfig;
                parameters = Trainer.DistinctParameters(checkpoint.Model).Sum(x => x.numel());
                var tgt = checkpoint.TargetVocabulary;
                var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
                int? maxSteps = Batching.MinLimit(checkpoint.TextConfig.MaxSteps, c.MaxSequenceLength);
                var sourceLengths = pairs.Select(x => Batching.WithEos(x.Source, ids.Eos, maxSteps).Length).ToArray();
                var targetLengths = pairs.Select(x => Batching.WithEos(x.Target, ids.Eos, maxSteps).Length).ToArray();
                var batches = new List<int[]>();
                for (int epoch = 1; batches.Count < warmup + steps; epoch++)
                    batches.AddRange(Batching.BucketedEpoch(sourceLengths, targetLengths, options.BatchSize, options.MaxTokens, options.Seed, epoch));
                var tensors = new Dictionary<string, Tensor>();
                for (int b = 0; b < warmup + steps; b++)
                {
                    var batch = Batching.Build(batches[b].Select(i => pairs[i]).ToList(), ids, maxSteps);
                    tensors[$"{b}.source"] = batch.Source;
                    tensors[$"{b}.source_lengths"] = batch.SourceValidLengths;
                    tensors[$"{b}.target_input"] = batch.TargetInput;
                    tensors[$"{b}.target_output"] = batch.TargetOutput;
                    if (b < warmup) continue;
                    measuredFlops += Flops.TransformerTrainStep(c, batch.Source.shape[0], batch.Source.shape[1], batch.TargetInput.shape[1]);
                    measuredTokens += batch.TargetTokens;
                    measuredPositions += batch.TargetPositions;
                }
                Safetensors.Save(batchFile, tensors);
                foreach (var t in tensors.Values) t.Dispose();
                File.WriteAllText(configFile, JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["model"] = c, ["label_smoothing"] = options.LabelSmoothing, ["lr"] = options.LearningRate,
                    ["warmup_updates"] = options.WarmupSteps, ["clip"] = options.GradientClip,
                }, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            }

            // Transduce: a real TrainingRun per measurement. Each repeat runs every precision, in alternating order, so
            // that a slow phase of a shared machine does not favour one.
            var runs = new List<Measurement>();
            var losses = new Dictionary<TrainingPrecision, List<(int Step, double Loss)>>();
            int runNumber = 0;
            for (int repeat = 1; repeat <= s.Repeats; repeat++)
                foreach (var precision in repeat % 2 == 1 ? s.Precisions : s.Precisions.Reverse())
                foreach (var (kernelsName, kernels) in repeat % 2 == 1 ? s.Kernels : s.Kernels.Reverse())
                {
                    Transduce.Native.NativeMemory.ReleaseFreedMemory();
                    Hardware.ResetPeakRss();
                    using var run = new TrainingRun(config with { Training = options with { Precision = precision, Kernels = kernels } }, Path.Combine(work, $"run{++runNumber}"));
                    if (runNumber == 1) run.DataPrepared += WriteBatches;
                    run.DataPrepared += (_, _) => Console.Error.WriteLine($"Transduce {precision.Short()}, kernels {kernelsName} (repeat {repeat}/{s.Repeats}): {warmup} + {steps} updates…");
                    var marks = new List<(int Step, double Seconds, double Loss)>();
                    var clock = Stopwatch.StartNew();
                    run.Progress += (_, progress) => marks.Add((progress.Step, clock.Elapsed.TotalSeconds, progress.Loss));
                    run.Run();
                    var end = marks.Single(m => m.Step == warmup + steps);
                    if (repeat == 1 && kernelsName == s.Main) losses[precision] = marks.Select(m => (m.Step, m.Loss)).ToList();
                    runs.Add(new Measurement("Transduce", precision, repeat, end.Seconds - (warmup == 0 ? 0 : marks.Single(m => m.Step == warmup).Seconds), end.Loss,
                        Hardware.PeakRss(), kernelsName));
                }

            string twinVersion = "";
            double twinPeak32 = 0, twinPeak16 = 0;
            if (!s.NoTwin)
                for (int repeat = 1; repeat <= s.Repeats; repeat++)
                    foreach (var precision in repeat % 2 == 1 ? s.Precisions : s.Precisions.Reverse())
                    {
                        Console.Error.WriteLine($"PyTorch twin {precision.Short()} (repeat {repeat}/{s.Repeats}): {warmup} + {steps} updates on the same batches…");
                        bool measurePeak = twinVersion.Length == 0;
                        var arguments = new List<string>
                        {
                            "--batches", batchFile, "--config", configFile, "--warmup", warmup.ToString(Inv), "--steps", steps.ToString(Inv),
                            "--threads", s.Threads.ToString(Inv), "--precision", precision.Short(),
                        };
                        if (!measurePeak) arguments.Add("--no-peak");
                        string json = PythonTwin.Run("train_twin.py", [.. arguments]);
                        using var doc = JsonDocument.Parse(json);
                        var root = doc.RootElement;
                        long twinTokens = root.GetProperty("tokens").GetInt64();
                        if (twinTokens != measuredTokens)
                            throw new InvalidOperationException($"the twin trained on {twinTokens} target tokens, Transduce on {measuredTokens}: not the same batches");
                        twinVersion = root.GetProperty("torch").GetString() ?? "";
                        if (measurePeak)
                        {
                            twinPeak32 = root.GetProperty("matmul_gflops").GetDouble();
                            twinPeak16 = root.GetProperty("matmul_gflops_bf16").GetDouble();
                        }
                        runs.Add(new Measurement("PyTorch twin", precision, repeat, root.GetProperty("seconds").GetDouble(), root.GetProperty("loss").GetDouble(), 0, s.Main));
                    }

            var config0 = modelConfig!;
            var peaks = new Peaks(peak32.GFlops, peak32.Size, peak16.GFlops, peak16.Size, twinPeak32, twinPeak16);
            string report = Report(s, config0, parameters, options, measuredTokens, measuredPositions, measuredFlops, runs, twinVersion, peaks)
                + LossComparison(s, losses);
            if (s.CurvePath is { } curvePath)
                Plots.SaveLossCurves(curvePath, losses.Select(l => (l.Key.Short(), (IReadOnlyList<(double, double)>)l.Value.Chunk(10)
                        .Select(g => (g.Average(x => (double)x.Step), g.Average(x => x.Loss))).ToList())).ToList(),
                    "update", $"{s.Preset}: training loss on the same batches (means of 10 updates)");
            Console.WriteLine(report);
            if (s.ReportPath is not null) File.WriteAllText(s.ReportPath, report);
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Matmul peaks (GFLOP/s) measured in the run: ours in fp32 and bf16 (with the size that gave them), the twin's.</summary>
    private sealed record Peaks(double Ours32, int Size32, double Ours16, int Size16, double Twin32, double Twin16)
    {
        /// <summary>The higher of the two sides' fp32 peaks: the ceiling the hardware showed either library.</summary>
        public double Fp32 => Math.Max(Ours32, Twin32);

        /// <summary>The higher of the two sides' bf16 peaks.</summary>
        public double Bf16 => Math.Max(Ours16, Twin16);
    }

    private static string Range(IEnumerable<double> values, string format)
    {
        var v = values.Order().ToList();
        if (v.Count == 1) return v[0].ToString(format, Inv);
        double median = v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
        return string.Create(Inv, $"{median.ToString(format, Inv)} ({v[0].ToString(format, Inv)}–{v[^1].ToString(format, Inv)})");
    }

    /// <summary>How far the bf16 loss strays from the fp32 loss on the same batches (first repeat, every update).</summary>
    private static string LossComparison(Settings s, Dictionary<TrainingPrecision, List<(int Step, double Loss)>> losses)
    {
        if (!losses.TryGetValue(TrainingPrecision.Float32, out var fp32) || !losses.TryGetValue(TrainingPrecision.BFloat16, out var bf16)) return "";
        int n = Math.Min(fp32.Count, bf16.Count), tail = Math.Min(50, n);
        var diffs = Enumerable.Range(0, n).Select(i => bf16[i].Loss - fp32[i].Loss).ToList();
        return string.Create(Inv, $"\nLoss on the same {n} batches (every update from the first): bf16 − fp32 mean {diffs.Average():+0.0000;-0.0000}, " +
                                  $"mean absolute {diffs.Average(Math.Abs):F4}; last {tail} updates: fp32 {fp32.Skip(n - tail).Take(tail).Average(x => x.Loss):F4}, " +
                                  $"bf16 {bf16.Skip(n - tail).Take(tail).Average(x => x.Loss):F4}.{(s.CurvePath is { } c ? $" Curves: `{c}`." : "")}\n");
    }

    private static string Report(Settings s, TransformerConfig c, long parameters, TrainingOptions o, long tokens, long positions, double flops,
        List<Measurement> runs, string twinVersion, Peaks peaks)
    {
        var sides = runs.Select(r => r.Side).Distinct().ToList();
        var text = new StringBuilder();
        text.AppendLine(Inv, $"Training throughput, preset `{s.Preset}`: Transformer {c.Layers}+{c.DecoderLayerCount} layers, {c.HiddenSize} wide, " +
                             $"FFN {c.FfnSize}, vocabulary {c.TargetVocabSize:N0}, {parameters:N0} parameters; batches of ≤ {o.MaxTokens:N0} padded tokens " +
                             $"(padding {1 - tokens / (double)positions:P1}); {s.Steps} updates timed after {s.Warmup} of warm-up, the same batches for every row; " +
                             $"{s.Threads} threads; freed native memory {(o.KeepFreedMemory ? "kept for reuse" : "returned to the system")}; " +
                             $"{s.Repeats} repeat(s): figures are medians (range).");
        text.AppendLine();
        text.AppendLine("| | precision | target tokens/s | seconds | model GFLOP/s | MFU vs fp32 peak | MFU vs bf16 peak | loss at the last update | peak RSS |");
        text.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (string side in sides)
            foreach (var precision in s.Precisions)
            foreach (var (kernelsName, _) in side == "Transduce" ? s.Kernels : s.Kernels.Take(1))
            {
                var rows = runs.Where(r => r.Side == side && r.Precision == precision && r.Kernels == kernelsName).ToList();
                if (rows.Count == 0) continue;
                string name = side == "Transduce" ? "Transduce (TorchSharp 0.107, libtorch 2.10)" : $"PyTorch twin (torch {twinVersion})";
                if (side == "Transduce" && s.Kernels.Count > 1) name += $", kernels `{kernelsName}`";
                string rss = rows[0].PeakRss > 0 ? string.Create(Inv, $"{rows.Max(r => r.PeakRss) / 1e9:F2} GB") : "—";
                text.AppendLine(Inv, $"| {name} | {precision.Short()} | {Range(rows.Select(r => tokens / r.Seconds), "N0")} | {Range(rows.Select(r => r.Seconds), "F1")} | " +
                                     $"{Range(rows.Select(r => flops / r.Seconds / 1e9), "F1")} | {Range(rows.Select(r => flops / r.Seconds / 1e9 / peaks.Fp32), "P1")} | " +
                                     $"{Range(rows.Select(r => flops / r.Seconds / 1e9 / peaks.Bf16), "P1")} | {Range(rows.Select(r => r.Loss), "F4")} | {rss} |");
            }
        text.AppendLine();

        // Ratios within each repeat (the two runs of a ratio were measured minutes apart at most).
        double? Ratio(string side, TrainingPrecision a, string sideB, TrainingPrecision b, int repeat)
        {
            var x = runs.SingleOrDefault(r => r.Side == side && r.Precision == a && r.Repeat == repeat && r.Kernels == s.Main);
            var y = runs.SingleOrDefault(r => r.Side == sideB && r.Precision == b && r.Repeat == repeat && r.Kernels == s.Main);
            return x is null || y is null ? null : y.Seconds / x.Seconds;
        }
        IEnumerable<double> Ratios(string side, TrainingPrecision a, string sideB, TrainingPrecision b) =>
            Enumerable.Range(1, s.Repeats).Select(r => Ratio(side, a, sideB, b, r)).OfType<double>();
        bool both = s.Precisions.Contains(TrainingPrecision.Float32) && s.Precisions.Contains(TrainingPrecision.BFloat16);
        foreach (string side in sides)
            if (both && Ratios(side, TrainingPrecision.BFloat16, side, TrainingPrecision.Float32).ToList() is { Count: > 0 } r)
                text.AppendLine(Inv, $"- {side}: bf16 ÷ fp32 target tokens/s **{Range(r, "F2")}×**.");
        if (sides.Count == 2)
            foreach (var precision in s.Precisions)
                if (Ratios("Transduce", precision, "PyTorch twin", precision).ToList() is { Count: > 0 } r)
                    text.AppendLine(Inv, $"- {precision.Short()}: Transduce ÷ twin target tokens/s **{Range(r, "F2")}×**.");
        if (both && Ratios("Transduce", TrainingPrecision.BFloat16, "Transduce", TrainingPrecision.Float32).ToList() is { Count: > 0 } mine)
            text.AppendLine(Inv, $"- Acceptance (issue 16): Transduce bf16 ≥ 1.7× fp32 target tokens/s on the same batches: " +
                                 $"{(mine.All(x => x >= 1.7) ? "✅ met" : mine.Any(x => x >= 1.7) ? "⚠️ met in some repeats" : "❌ not met")} ({Range(mine, "F2")}×).");
        foreach (var precision in s.Precisions)
            foreach (var (kernelsName, _) in s.Kernels.Skip(1))
            {
                var ratios = Enumerable.Range(1, s.Repeats).Select(repeat =>
                {
                    var x = runs.SingleOrDefault(r => r.Side == "Transduce" && r.Precision == precision && r.Repeat == repeat && r.Kernels == s.Main);
                    var y = runs.SingleOrDefault(r => r.Side == "Transduce" && r.Precision == precision && r.Repeat == repeat && r.Kernels == kernelsName);
                    return x is null || y is null ? (double?)null : y.Seconds / x.Seconds;
                }).OfType<double>().ToList();
                if (ratios.Count > 0)
                    text.AppendLine(Inv, $"- {precision.Short()}: kernels `{s.Main}` ÷ `{kernelsName}` target tokens/s, per repeat: **{Range(ratios, "F3")}×** ({string.Join(", ", ratios.Select(r => r.ToString("F3", Inv)))}).");
            }
        text.AppendLine();
        string twinPeakText = sides.Count == 2 ? string.Create(Inv, $"; through the twin's torch {peaks.Twin32:F1} (fp32) and {peaks.Twin16:F1} (bf16)") : "";
        text.AppendLine(Inv, $"Matmul peaks on {s.Threads} threads, measured in this run: through TorchSharp {peaks.Ours32:F1} GFLOP/s in fp32 " +
                             $"({peaks.Size32}×{peaks.Size32}) and {peaks.Ours16:F1} in bf16 ({peaks.Size16}×{peaks.Size16}){twinPeakText}. " +
                             $"MFU is against the higher of each pair: **{peaks.Fp32:F1} (fp32)** and **{peaks.Bf16:F1} (bf16)** GFLOP/s. " +
                             $"Model FLOPs: {flops / 1e9:F1} GFLOP for the timed updates (3× the forward matmuls, padded shapes). " +
                             $"Peak RSS is the process's high-water mark during each Transduce run.");
        text.AppendLine();
        text.AppendLine("```sh");
        text.AppendLine(Inv, $"dotnet bench/Transduce.Bench/bin/Release/net10.0/Transduce.Bench.dll train --preset {s.Preset} --steps {s.Steps} --warmup {s.Warmup} " +
                             $"--threads {s.Threads} --precision {string.Join(',', s.Precisions.Select(x => x.Short()))} --repeats {s.Repeats}" +
                             $"{(s.MaxTokens is int m ? $" --max-tokens {m}" : "")}{(s.NoTwin ? " --no-twin" : "")}{(s.KeepFreed ? "" : " --keep-freed-memory false")}{(s.CurvePath is { } cp ? $" --curve {cp}" : "")}" +
                             $"{(s.Kernels.Count > 1 || s.Main != "default" ? $" --kernels {string.Join(',', s.Kernels.Select(k => k.Name))}" : "")}");
        text.AppendLine("```");
        return text.ToString();
    }
}
