using System.Globalization;
using System.Text;

namespace Transduce.Bench;

/// <summary>The Markdown report of <see cref="InferBench"/>: one side-by-side table, the issue's acceptance checks, the command.</summary>
internal static class InferReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Markdown(InferBench.Settings s, int sentences, (double GFlops, int Size) peak,
        IReadOnlyList<InferBench.ModelRun> runs, string[] commandLine)
    {
        var md = new StringBuilder();
        var twinRun = runs.Select(r => r.Twin).FirstOrDefault(t => t is not null);
        string twinInfo = twinRun is null ? "not run" : $"{twinRun.TorchVersion} with BLAS {twinRun.Blas}";
        var ortRun = runs.Select(r => r.Ort).FirstOrDefault(t => t is not null);
        md.AppendLine("### Decoding throughput: Transduce vs PyTorch twin and ONNX Runtime twin").AppendLine();
        md.AppendLine(Inv, $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {CpuModel()}, {s.Threads} thread(s) on both sides. " +
            $"Transduce on libtorch {TorchSharp.torch.__version__} (TorchSharp); twin on PyTorch {twinInfo} (eager, inference_mode). " +
            $"ONNX Runtime twin: {(ortRun is null ? "not run" : $"{ortRun.TorchVersion}, CPU provider, all graph optimisations, the same intra-op threads, " +
                "the model exported by bench/pytorch/export_onnx.py (encoder + one decoder step with the key/value cache as inputs and outputs), " +
                "greedy and beam search in C# following ours rule for rule, buffers bound with IOBinding and reused between steps; incremental modes only")}. " +
            $"Matmul peak {peak.GFlops:F1} GFLOP/s (fp32, n = {peak.Size}; the faster of MKL's mm and oneDNN's inner product), measured in this run.").AppendLine();
        md.AppendLine(Inv, $"Data: {s.Data}, {sentences} sentences; batch-{s.Batch} rows decode all of them (sorted by length, " +
            $"as `translate` does), batch-1 rows {Math.Min(s.Batch1Sentences, sentences)} of them spread evenly over the file (it is sorted from short to long). " +
            $"Each mode is warmed up first (untimed).");
        foreach (var run in runs)
            md.AppendLine(Inv, $"{run.Label}: `{run.Directory}` ({Describe(run.Config)}).");
        md.AppendLine();
        md.AppendLine("*incremental*: the decoder carries its state (Transformer: key/value cache; GRU: hidden state). " +
            "*recompute*: every step re-runs the decoder over the whole prefix from a fresh state (`RecomputePrefix`, the issue's \"d2l way\"). " +
            "tok/s counts emitted target tokens, `<eos>` included; ms/token is batch-1 wall time per emitted token; " +
            "MFU (Transformer, greedy, large batch) is the FLOPs of cached decoding (`Flops.TransformerDecode`, per sentence, " +
            "padding excluded) over wall time and the matmul peak — for *recompute* rows it shows how much of the machine the " +
            "extra work wastes. Peak RSS is each process's high-water mark during the timed pass. " +
            "*same tokens*: sentences whose Transduce and twin outputs are identical (PyTorch, ORT).").AppendLine();

        md.AppendLine("| model | search | decoding | batch | sentences | sent/s Transduce | sent/s PyTorch | Transduce ÷ PyTorch | tok/s Transduce | tok/s PyTorch | ms/token Transduce | ms/token PyTorch | MFU Transduce | MFU PyTorch | peak RSS MiB Transduce | peak RSS MiB PyTorch | same tokens PyTorch | tok/s ORT | Transduce ÷ ORT | ms/token ORT | peak RSS MiB ORT | same tokens ORT |");
        md.AppendLine("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var run in runs)
            foreach (var ours in run.Ours)
            {
                var twin = run.Twin?.Modes.GetValueOrDefault(ours.Mode.Name);
                var ort = run.Ort?.Modes.GetValueOrDefault(ours.Mode.Name);
                var m = ours.Mode;
                bool batch1 = m.Batch == 1;
                md.AppendLine(Inv, $"| {run.Label} | {m.Search} | {m.Decoding} | {m.Batch} | {ours.Sentences} " +
                    $"| {Rate(ours.Sentences, ours)} | {Rate(twin?.Sentences, twin)} | {Ratio(ours, twin)} " +
                    $"| {Rate(ours.Tokens, ours)} | {Rate(twin?.Tokens, twin)} " +
                    $"| {(batch1 ? MsPerToken(ours) : "—")} | {(batch1 ? MsPerToken(twin) : "—")} " +
                    $"| {Percent(Mfu(run, ours, peak.GFlops))} | {Percent(twin is null ? null : Mfu(run, twin, peak.GFlops))} " +
                    $"| {Mib(ours.PeakRss)} | {Mib(twin?.PeakRss)} | {Same(ours, twin)} " +
                    $"| {Rate(ort?.Tokens, ort)} | {Ratio(ours, ort)} | {(batch1 ? MsPerToken(ort) : "—")} | {Mib(ort?.PeakRss)} | {Same(ours, ort)} |");
            }
        md.AppendLine();

        md.AppendLine("Acceptance (issue 5):").AppendLine();
        foreach (var line in Acceptance(runs, s)) md.AppendLine("- " + line);
        md.AppendLine();
        md.AppendLine("Command:").AppendLine();
        md.AppendLine("```sh").AppendLine(Command(commandLine)).AppendLine("```");
        return md.ToString();
    }

    private static IEnumerable<string> Acceptance(IReadOnlyList<InferBench.ModelRun> runs, InferBench.Settings s)
    {
        string large = $"b{s.Batch}", beam = $"beam{s.Beam}";
        foreach (var run in runs)
        {
            var ours = run.Ours.ToDictionary(r => r.Mode.Name);
            var twin = run.Twin?.Modes;
            if (run.Config is Models.Transformer.TransformerConfig && twin is not null && twin.ContainsKey($"greedy-recompute-{large}"))
            {
                var fast = ours[$"greedy-incremental-{large}"];
                double vsD2l = Speed(fast) / Speed(twin[$"greedy-recompute-{large}"]);
                double vsCached = Speed(fast) / Speed(twin[$"greedy-incremental-{large}"]);
                yield return string.Create(Inv, $"{run.Label} greedy, batch {s.Batch}: Transduce (incremental) is {vsD2l:F2}× the twin's d2l-style " +
                    $"(recompute-prefix) sentences/s (needs ≥ 3×: {Mark(vsD2l >= 3)}) and {vsCached:F2}× the twin's cached decoding " +
                    $"(needs ≥ 1×: {Mark(vsCached >= 1)}).");
            }
            foreach (string size in new[] { large, "b1" })
            {
                // Same sentences in both modes, so the ratio of times is the ratio of cost per sentence.
                double cost = ours[$"{beam}-incremental-{size}"].Seconds / ours[$"greedy-incremental-{size}"].Seconds;
                string twinCost = twin is null ? "" : string.Create(Inv, $" (twin: {twin[$"{beam}-incremental-{size}"].Seconds / twin[$"greedy-incremental-{size}"].Seconds:F2}×)");
                yield return string.Create(Inv, $"{run.Label} beam {s.Beam} costs {cost:F2}× greedy at batch {size[1..]}, incremental " +
                    $"(needs < {s.Beam}×: {Mark(cost < s.Beam)}){twinCost}.");
            }
            if (twin is not null)
            {
                int same = run.Ours.Sum(r => TwinDecoder.Identical(r, twin[r.Mode.Name]));
                int total = run.Ours.Sum(r => r.Sentences);
                yield return string.Create(Inv, $"{run.Label}: the twin emits the same tokens as Transduce for {same} of {total} decoded sentences " +
                    $"over all modes ({Mark(same == total)}).");
            }
            if (run.Ort is { } ortRun)
            {
                var compared = run.Ours.Where(r => ortRun.Modes.ContainsKey(r.Mode.Name)).ToList();
                int same = compared.Sum(r => TwinDecoder.Identical(r, ortRun.Modes[r.Mode.Name]));
                int total = compared.Sum(r => r.Sentences);
                string perMode = string.Join(", ", compared.Select(r => $"{r.Mode.Name} {TwinDecoder.Identical(r, ortRun.Modes[r.Mode.Name])}/{r.Sentences}"));
                yield return $"{run.Label}: the ONNX Runtime twin emits the same tokens as Transduce for {same} of {total} " +
                    $"sentences over the incremental modes ({Mark(same == total)}; issue 28): {perMode}.";
            }
            var selfCheck = run.Ours.Where(r => r.Mode.Recompute)
                .Select(r => (r, ours[r.Mode.Name.Replace("recompute", "incremental", StringComparison.Ordinal)]))
                .Sum(p => TwinDecoder.Identical(p.Item1, p.Item2));
            int selfTotal = run.Ours.Where(r => r.Mode.Recompute).Sum(r => r.Sentences);
            if (selfTotal > 0)
                yield return string.Create(Inv, $"{run.Label}: Transduce's incremental and recompute-prefix decoding agree on {selfCheck} of {selfTotal} sentences.");
        }
    }

    private static double Speed(ModeResult r) => r.Sentences / r.Seconds;

    private static string Rate(long? count, ModeResult? r) =>
        r is null || count is null ? "—" : (count.Value / r.Seconds).ToString(count.Value / r.Seconds >= 100 ? "F0" : "F1", Inv);

    private static string Ratio(ModeResult ours, ModeResult? twin) =>
        twin is null ? "—" : (Speed(ours) / Speed(twin)).ToString("F2", Inv) + "×";

    private static string MsPerToken(ModeResult? r) => r is null ? "—" : (r.Seconds * 1000 / r.Tokens).ToString("F2", Inv);

    private static string Percent(double? fraction) => fraction is double f ? (100 * f).ToString("F1", Inv) + " %" : "—";

    private static string Mib(long? bytes) => bytes is long b && b > 0 ? (b / (1024.0 * 1024)).ToString("F0", Inv) : "—";

    private static string Same(ModeResult ours, ModeResult? twin) =>
        twin is null ? "—" : $"{TwinDecoder.Identical(ours, twin)}/{ours.Sentences}";

    private static string Mark(bool ok) => ok ? "✅ met" : "❌ not met";

    /// <summary>Model FLOPs utilisation of a greedy large-batch Transformer mode; null for the other rows.</summary>
    private static double? Mfu(InferBench.ModelRun run, ModeResult r, double peakGFlops)
    {
        if (run.Config is not Models.Transformer.TransformerConfig config || r.Mode.Beam != 1 || r.Mode.Batch == 1) return null;
        // Positions fed per sentence: <bos> and every output token (the last step emits <eos> or hits the limit).
        double flops = r.Outputs.Select((o, j) => Flops.TransformerDecode(config, run.SourceSteps[r.Rows[j]], o.Length + 1)).Sum();
        return flops / r.Seconds / (peakGFlops * 1e9);
    }

    private static string Describe(Models.ModelConfig config) => config is Models.Transformer.TransformerConfig c
        ? string.Create(Inv, $"Transformer {c.Layers}+{c.DecoderLayerCount} layers, width {c.HiddenSize}, FFN {c.FfnSize}, {c.Heads} heads, " +
            $"{(c.PreNorm ? "pre" : "post")}-norm, vocabularies {c.SourceVocabSize}/{c.TargetVocabSize}" +
            $"{(c.ShareEmbeddings ? ", shared" : "")}{(c.TieEmbeddings ? ", tied" : "")}")
        : string.Create(Inv, $"{config.Architecture} {config.Layers} layers, hidden {config.HiddenSize}, embeddings {config.EmbeddingSize}, vocabularies {config.SourceVocabSize}/{config.TargetVocabSize}");

    private static string CpuModel()
    {
        const string info = "/proc/cpuinfo";
        string? model = File.Exists(info)
            ? File.ReadLines(info).FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        return $"{model ?? "unknown CPU"}, {Environment.ProcessorCount} logical cores";
    }

    /// <summary>The command as typed (program name first), quoted where a shell would need it.</summary>
    private static string Command(string[] commandLine)
    {
        static string Quote(string a) => a.Length > 0 && a.All(ch => char.IsLetterOrDigit(ch) || "-_./=:,+@".Contains(ch)) ? a : $"'{a.Replace("'", "'\\''", StringComparison.Ordinal)}'";
        string program = Path.GetFileNameWithoutExtension(commandLine[0]);
        return string.Join(' ', new[] { $"dotnet run -c Release --project bench/Transduce.Bench --" }.Concat(commandLine.Skip(1).Select(Quote)))
            + $"   # ran as {program}";
    }
}
