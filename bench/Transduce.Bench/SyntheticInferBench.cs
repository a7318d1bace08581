using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Models;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Bench;

/// <summary>
/// Decoding speed at the size users run: a synthetic model (<see cref="Synthetic"/>, default OPUS-MT size) with random
/// weights, random source ids and every output exactly <c>--tokens</c> long (<see cref="FixedLength"/>), greedy and beam,
/// at several batch sizes, in each compute type — side by side with the PyTorch twin in float32 on the same ids and
/// weights, in the same run.
/// </summary>
internal static class SyntheticInferBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private sealed record Row(DecodeMode Mode, ComputeType Type, ModeResult Result, double[]? Phases, double EncodeSeconds);

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = $"Synthetic model: {string.Join(", ", Synthetic.Names)}.", DefaultValueFactory = _ => "opus-mt" };
        var cache = new Option<string>("--cache") { Description = "Where the synthetic checkpoint is written (and reused).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "transduce-synthetic") };
        var sentences = new Option<int>("--sentences") { Description = "Sentences decoded by the batched modes.", DefaultValueFactory = _ => 64 };
        var batch1 = new Option<int>("--batch1-sentences") { Description = "Sentences decoded by the batch-1 modes.", DefaultValueFactory = _ => 8 };
        var tokens = new Option<int>("--tokens") { Description = "Output tokens per sentence (before <eos>).", DefaultValueFactory = _ => 32 };
        var sourceMin = new Option<int>("--source-min") { Description = "Shortest source (tokens).", DefaultValueFactory = _ => 10 };
        var sourceMax = new Option<int>("--source-max") { Description = "Longest source (tokens).", DefaultValueFactory = _ => 40 };
        var batches = new Option<string>("--batches") { Description = "Batch sizes, comma-separated.", DefaultValueFactory = _ => "1,8,32" };
        var beam = new Option<int>("--beam") { Description = "Beam size of the beam rows (1: greedy only).", DefaultValueFactory = _ => 4 };
        var types = new Option<string>("--compute-types") { Description = "Compute types measured, comma-separated.", DefaultValueFactory = _ => "float32,bfloat16,int8" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads, both sides.", DefaultValueFactory = _ => 2 };
        var noTwin = new Option<bool>("--no-twin") { Description = "No PyTorch twin." };
        var noOrt = new Option<bool>("--no-ort") { Description = "No ONNX Runtime twin (Transformers only)." };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var ortProfile = new Option<string?>("--ort-profile") { Description = "Profile ORT's float32 decoder in each mode's timed pass into DIR, and its int8 one into DIR/int8 when int8 is measured (ort-decode --profile; timings include the profiler's cost); our float32 and int8 rows are timed by phase beside them." };
        var command = new Command("infer-synthetic", "Decoding speed of a production-size synthetic model, per compute type, side by side with the PyTorch twin.")
        {
            model, cache, sentences, batch1, tokens, sourceMin, sourceMax, batches, beam, types, threads, noTwin, noOrt, output, ortProfile,
        };
        command.SetAction(r => Guard(() =>
        {
            set_num_threads(r.GetValue(threads));
            Transduce.Native.NativeMemory.KeepFreedMemory(); // as translate/evaluate/serve do
            string name = r.GetValue(model)!;
            string directory = Path.Combine(r.GetValue(cache)!, name);
            Log($"synthetic model {name} in {directory} …");
            var made = Stopwatch.StartNew();
            using var checkpoint = Synthetic.Create(name, directory);
            Log($"synthetic model ready in {made.Elapsed.TotalSeconds:F1} s (created and saved, or loaded when it was there)");
            int n = r.GetValue(tokens);
            var random = new Random(1);
            int vocab = checkpoint.ModelConfig.SourceVocabSize;
            var sources = Enumerable.Range(0, r.GetValue(sentences))
                .Select(_ => Enumerable.Range(0, random.Next(r.GetValue(sourceMin), r.GetValue(sourceMax) + 1)).Select(_ => random.Next(4, vocab)).ToArray())
                .ToArray();
            var batch1Rows = InferBench.Batch1Rows(sources.Length, r.GetValue(batch1));
            var modes = (from b in r.GetValue(beam) > 1 ? new[] { 1, r.GetValue(beam) } : [1]
                         from size in r.GetValue(batches)!.Split(',').Select(s => int.Parse(s, Inv))
                         select new DecodeMode(b, false, size)).ToList();
            var computeTypes = r.GetValue(types)!.Split(',').Select(ComputeTypes.Parse).ToList();
            var rows = new List<Row>();
            foreach (var type in computeTypes)
                foreach (var mode in modes)
                {
                    var picked = mode.Batch == 1 ? batch1Rows : Enumerable.Range(0, sources.Length).ToArray();
                    bool profiled = r.GetValue(ortProfile) is not null && type is ComputeType.Float32 or ComputeType.Int8;
                    var (result, phases, encodeSeconds) = Decode(checkpoint, type, mode, sources, picked, n, profiled);
                    Log($"{type.Name()} {mode.Name}: {picked.Length} sentences in {result.Seconds:F2} s ({result.Tokens / result.Seconds:F0} tokens/s; CPU {result.CpuSeconds * 1000 / result.Tokens:F2} ms per token)");
                    rows.Add(new Row(mode, type, result, phases, encodeSeconds));
                }
            TwinDecoder.Result? twin = null;
            if (!r.GetValue(noTwin))
            {
                Log("running the PyTorch twin (float32) …");
                twin = TwinDecoder.Run(directory, sources, Enumerable.Repeat(n, sources.Length).ToArray(), modes, r.GetValue(threads), batch1Rows,
                    "--fixed-length", n.ToString(Inv));
            }
            TwinDecoder.Result? ort = null, ortInt8 = null;
            if (!r.GetValue(noOrt) && checkpoint.ModelConfig is Models.Transformer.TransformerConfig)
            {
                Log("running the ONNX Runtime twin (float32) …");
                var src = checkpoint.SourceVocabulary;
                var tgt = checkpoint.TargetVocabulary;
                var framing = new OrtTwin.Framing(src.PadId, src.EosId, null, OrtTwin.Rules(new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId),
                    new SearchOptions(), new BeamSearchOptions(), fixedLength: n));
                string exported = OrtTwin.Export(directory);
                ort = OrtTwin.Run(exported, sources, Enumerable.Repeat(n, sources.Length).ToArray(), modes, r.GetValue(threads),
                    batch1Rows, framing, profile: r.GetValue(ortProfile));
                if (computeTypes.Contains(ComputeType.Int8))
                {
                    Log("running the ONNX Runtime twin in int8 (bench/pytorch/quantize_onnx.py) …");
                    ortInt8 = OrtTwin.Run(OrtTwin.Quantize(exported), sources, Enumerable.Repeat(n, sources.Length).ToArray(), modes,
                        r.GetValue(threads), batch1Rows, framing, tolerance: double.PositiveInfinity,
                        profile: r.GetValue(ortProfile) is { } dir ? Path.Combine(dir, "int8") : null);
                }
            }
            string report = Report(name, checkpoint.ModelConfig, sources, n, r.GetValue(threads), computeTypes, modes, rows, twin, ort, ortInt8);
            if (ort is not null && r.GetValue(ortProfile) is { } profileDir)
            {
                var sides = new StringBuilder("### Where a step goes: Transduce's step phases beside ONNX Runtime's profile (float32; int8 beside ORT's int8 graphs)\n\n");
                foreach (var row in rows.Where(x => x.Phases is not null))
                {
                    bool int8 = row.Type == ComputeType.Int8;
                    string json = Path.Combine(int8 ? Path.Combine(profileDir, "int8") : profileDir, row.Mode.Name + ".json");
                    if (File.Exists(json))
                        sides.AppendLine(OrtProfile.SideBySide($"{row.Type.Name()} {row.Mode.Name}", row.Phases!, row.Result.Seconds, row.EncodeSeconds, row.Result.Tokens, json));
                }
                report += "\n" + sides;
            }
            Console.WriteLine(report);
            if (r.GetValue(output) is { } path) File.WriteAllText(path, report);
            return 0;
        }));
        return command;
    }

    /// <summary>A twin that fails (python3-torch missing, an export or ort-decode error) is one error line and exit 1.</summary>
    private static int Guard(Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    /// <summary>Decodes <paramref name="rows"/> in one mode (warm-up, then the timed pass); with <paramref name="phases"/> also times
    /// the timed pass's decoder steps by phase (<see cref="Models.Transformer.StepPhases"/>, seconds per phase); also the timed
    /// pass's seconds in the encoder and the decoder's initial state.</summary>
    private static (ModeResult Result, double[]? Phases, double EncodeSeconds) Decode(Checkpoint checkpoint, ComputeType type, DecodeMode mode, int[][] sources, int[] rows, int tokens,
        bool phases = false)
    {
        ComputeTypes.Apply(checkpoint.Model, type);
        var model = FixedLength.Of(checkpoint.Model, checkpoint.TargetVocabulary.EosId, tokens);
        model.eval();
        var src = checkpoint.SourceVocabulary;
        var ids = new SpecialIds(checkpoint.TargetVocabulary.PadId, checkpoint.TargetVocabulary.BosId, checkpoint.TargetVocabulary.EosId);
        var srcIds = new SpecialIds(src.PadId, src.BosId, src.EosId);
        var beam = new BeamSearchOptions { BeamSize = mode.Beam };
        int[][] Run(int[] picked)
        {
            var results = new int[picked.Length][];
            var order = Enumerable.Range(0, picked.Length).OrderBy(j => sources[picked[j]].Length).ToArray();
            foreach (var chunk in order.Chunk(mode.Batch))
            {
                using var scope = NewDisposeScope();
                var (source, lengths) = Batching.BuildSources(chunk.Select(j => sources[picked[j]]).ToList(), srcIds, null);
                var limits = Enumerable.Repeat(tokens, chunk.Length).ToArray();
                var outputs = mode.Beam == 1
                    ? GreedySearch.Decode(model, source, lengths, ids, limits)
                    : BeamSearch.Decode(model, source, lengths, ids, limits, beam).Select(h => h.Count > 0 ? h[0].Tokens : []).ToArray();
                for (int k = 0; k < chunk.Length; k++) results[chunk[k]] = outputs[k];
            }
            return results;
        }
        Run(rows[..Math.Min(rows.Length, mode.Batch == 1 ? 2 : mode.Batch)]); // warm-up (and packing the weights), untimed
        if (phases) Models.Transformer.StepPhases.Enable();
        try
        {
            double encodeBefore = FixedLength.BeginSeconds;
            var (decoded, seconds, cpuSeconds, peakRss) = Hardware.TimedPass(() => Run(rows));
            return (new ModeResult(mode, seconds, peakRss, rows, decoded) { CpuSeconds = cpuSeconds },
                phases ? Models.Transformer.StepPhases.Seconds() : null, FixedLength.BeginSeconds - encodeBefore);
        }
        finally
        {
            Models.Transformer.StepPhases.Disable();
        }
    }

    private static string Report(string name, ModelConfig config, int[][] sources, int tokens, int threads, IReadOnlyList<ComputeType> types,
        IReadOnlyList<DecodeMode> modes, IReadOnlyList<Row> rows, TwinDecoder.Result? twin, TwinDecoder.Result? ort,
        TwinDecoder.Result? ortInt8)
    {
        var md = new StringBuilder();
        md.AppendLine("### Decoding a production-size model: Transduce per compute type vs PyTorch twin (float32)").AppendLine();
        md.AppendLine(Inv, $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {threads} thread(s) on both sides, libtorch {__version__} (TorchSharp); twin " +
            $"{(twin is null ? "not run" : $"PyTorch {twin.TorchVersion} with BLAS {twin.Blas}")}; ONNX Runtime twin " +
            $"{(ort is null ? "not run" : $"{ort.TorchVersion} (CPU provider, all graph optimisations, float32 graphs from bench/pytorch/export_onnx.py, same threads" +
                (ortInt8 is null ? ")" : "; int8: the same graphs with every MatMul by a weight quantised dynamically by bench/pytorch/quantize_onnx.py, u8 × s8 per-column, which ORT fuses into DynamicQuantizeMatMul)"))}.").AppendLine();
        string network = config is Models.Transformer.TransformerConfig c
            ? string.Create(Inv, $"Transformer {c.Layers}+{c.DecoderLayerCount}, d_model {c.HiddenSize}, {c.Heads} heads{(c.HeadSize is int h ? $" × {h}" : "")}, " +
                $"FFN {c.FfnSize}, {c.Activation}, {(c.PreNorm ? "pre" : "post")}-norm ({c.Norm}), {c.Positions} positions" +
                $"{(c.Positions == "sinusoidal" ? $" ({c.PositionalLayout}{(c.PositionOffset > 0 ? $", offset {c.PositionOffset}" : "")})" : "")}, " +
                $"vocabulary {c.TargetVocabSize:N0}{(c.TieEmbeddings ? ", tied" : "")}{(c.ShareEmbeddings ? ", shared" : "")}" +
                $"{(c.OutputScale != 1 ? $", output × {c.OutputScale:G4}" : "")}")
            : string.Create(Inv, $"{config.Architecture} {config.Layers} layers × {config.HiddenSize}, vocabulary {config.TargetVocabSize:N0}");
        md.AppendLine(Inv, $"Model: synthetic `{name}` (random weights, seed 1): {network}. {sources.Length} random sources of " +
            $"{sources.Min(s => s.Length)}–{sources.Max(s => s.Length)} tokens; every output exactly {tokens} tokens (`</s>` banned until then, " +
            $"in the twin too). Target tokens count `</s>`: {tokens + 1} per sentence. Batch-1 rows decode fewer sentences.").AppendLine();
        var header = new StringBuilder("| search | batch | sentences |");
        var rule = new StringBuilder("| --- | ---: | ---: |");
        foreach (var t in types)
        {
            header.Append(Inv, $" tok/s {t.Name()} |");
            rule.Append(" ---: |");
        }
        header.Append(" tok/s twin fp32 | float32 ÷ twin |");
        rule.Append(" ---: | ---: |");
        foreach (var t in types.Where(t => t != ComputeType.Float32))
        {
            header.Append(Inv, $" {t.Name()} ÷ float32 |");
            rule.Append(" ---: |");
        }
        header.Append(" tok/s per thread (best type) | same tokens float32/twin | tok/s ORT fp32 | float32 ÷ ORT | ms/token float32 / ORT | peak RSS MiB float32 / twin / ORT | same tokens float32/ORT |");
        rule.Append(" ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        if (ortInt8 is not null)
        {
            header.Append(" tok/s ORT int8 | int8 ÷ ORT int8 |");
            rule.Append(" ---: | ---: |");
        }
        md.AppendLine(header.ToString()).AppendLine(rule.ToString());
        foreach (var mode in modes)
        {
            var mine = types.ToDictionary(t => t, t => rows.Single(r => r.Mode == mode && r.Type == t).Result);
            var other = twin?.Modes.GetValueOrDefault(mode.Name);
            double Rate(ModeResult x) => x.Tokens / x.Seconds;
            var line = new StringBuilder(string.Create(Inv, $"| {mode.Search} | {mode.Batch} | {mine.Values.First().Sentences} |"));
            foreach (var t in types) line.Append(Inv, $" {Rate(mine[t]):F0} |");
            line.Append(other is null ? " — | — |" : string.Create(Inv, $" {Rate(other):F0} | {(mine.TryGetValue(ComputeType.Float32, out var f) ? (Rate(f) / Rate(other)).ToString("F2", Inv) + "×" : "—")} |"));
            foreach (var t in types.Where(t => t != ComputeType.Float32))
                line.Append(mine.TryGetValue(ComputeType.Float32, out var f32) ? string.Create(Inv, $" {Rate(mine[t]) / Rate(f32):F2}× |") : " — |");
            line.Append(Inv, $" {mine.Values.Max(Rate) / threads:F0} |");
            line.Append(other is not null && mine.TryGetValue(ComputeType.Float32, out var g)
                ? $" {TwinDecoder.Identical(g, other)}/{g.Sentences} |" : " — |");
            var onnx = ort?.Modes.GetValueOrDefault(mode.Name);
            mine.TryGetValue(ComputeType.Float32, out var fp32);
            static string Mib(ModeResult? x) => x is null || x.PeakRss <= 0 ? "—" : (x.PeakRss / (1024.0 * 1024)).ToString("F0", Inv);
            static string Ms(ModeResult? x) => x is null ? "—" : (x.Seconds * 1000 / x.Tokens).ToString("F2", Inv);
            line.Append(onnx is null ? " — | — | — |" : string.Create(Inv, $" {Rate(onnx):F0} | {(fp32 is null ? "—" : (Rate(fp32) / Rate(onnx)).ToString("F2", Inv) + "×")} | {(mode.Batch == 1 ? $"{Ms(fp32)} / {Ms(onnx)}" : "—")} |"));
            line.Append(Inv, $" {Mib(fp32)} / {Mib(other)} / {Mib(onnx)} |");
            line.Append(onnx is not null && fp32 is not null ? $" {TwinDecoder.Identical(fp32, onnx)}/{fp32.Sentences} |" : " — |");
            if (ortInt8 is not null)
            {
                var onnx8 = ortInt8.Modes.GetValueOrDefault(mode.Name);
                line.Append(onnx8 is null ? " — | — |" : string.Create(Inv, $" {Rate(onnx8):F0} | {(mine.TryGetValue(ComputeType.Int8, out var i8) ? (Rate(i8) / Rate(onnx8)).ToString("F2", Inv) + "×" : "—")} |"));
            }
            md.AppendLine(line.ToString());
        }
        md.AppendLine();
        md.AppendLine("CTranslate2's published OPUS-MT en→de CPU figures (4 threads, Intel Xeon Platinum 8275CL, a different CPU): " +
            "525 target tokens/s float32 and 696 int8, i.e. 131 and 174 per thread.").AppendLine();
        md.AppendLine("Command:").AppendLine().AppendLine("```sh")
            .AppendLine("dotnet run -c Release --project bench/Transduce.Bench -- " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)))
            .AppendLine("```");
        return md.ToString();
    }

    private static void Log(string message) => Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {message}");
}
