using System.Globalization;
using System.Text;
using System.Text.Json;
using Transduce.Models.Transformer;

namespace Transduce.Bench;

/// <summary>
/// Summarises the JSON trace ONNX Runtime writes with <c>SessionOptions.EnableProfiling</c> for the decoder session
/// (<c>ort-decode --profile DIR</c>): each kernel's time by operator type and by the phase of our step profile
/// (<see cref="StepPhase"/>, read from the node's name, which the exporter takes from our module names), per decoder run
/// and per decoded token, over the runs of the timed pass only (the check and the warm-up runs come first and are skipped).
/// The time of a run outside its kernels (the executor, binding, allocation) is its own line, "Session overhead".
/// </summary>
internal static class OrtProfile
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Kernel totals over the decoder runs of a timed pass.</summary>
    /// <param name="Runs">Decoder runs summarised.</param>
    /// <param name="RunMs">Their wall time inside ONNX Runtime (the <c>model_run</c> events).</param>
    /// <param name="ByOperator">Kernel milliseconds by operator type (ORT's fused types, e.g. FusedMatMul).</param>
    /// <param name="ByPhase">Kernel milliseconds by <see cref="StepPhase"/> name, or "Other".</param>
    internal sealed record Summary(int Runs, double RunMs, IReadOnlyDictionary<string, double> ByOperator, IReadOnlyDictionary<string, double> ByPhase)
    {
        /// <summary>Run time outside the kernels.</summary>
        public double OverheadMs => RunMs - ByOperator.Values.Sum();
    }

    /// <summary>Reads <paramref name="tracePath"/> and sums the kernels of the decoder runs after the first <paramref name="skipRuns"/>.</summary>
    public static Summary Summarise(string tracePath, int skipRuns)
    {
        using var stream = File.OpenRead(tracePath);
        using var document = JsonDocument.Parse(stream);
        var runs = new List<(double Start, double End)>();
        var nodes = new List<(double Start, double Ms, string Operator, string Name)>();
        foreach (var e in document.RootElement.EnumerateArray())
        {
            string category = e.TryGetProperty("cat", out var c) ? c.GetString() ?? "" : "";
            string name = e.TryGetProperty("name", out var n) ? n.GetString() ?? "" : "";
            double ts = e.TryGetProperty("ts", out var t) ? t.GetDouble() : 0, dur = e.TryGetProperty("dur", out var d) ? d.GetDouble() : 0;
            if (category == "Session" && name == "model_run") runs.Add((ts, ts + dur));
            else if (category == "Node" && name.EndsWith("_kernel_time", StringComparison.Ordinal)
                && e.TryGetProperty("args", out var args) && args.TryGetProperty("op_name", out var op))
                nodes.Add((ts, dur / 1000, op.GetString() ?? "?", name[..^"_kernel_time".Length]));
        }
        runs.Sort();
        if (runs.Count <= skipRuns) throw new InvalidDataException($"{tracePath}: {runs.Count} decoder runs, fewer than the {skipRuns} before the timed pass");
        double from = runs[skipRuns].Start;
        var byOperator = new SortedDictionary<string, double>(StringComparer.Ordinal);
        var byPhase = new SortedDictionary<string, double>(StringComparer.Ordinal);
        foreach (var (start, ms, op, name) in nodes.Where(x => x.Start >= from))
        {
            byOperator[op] = byOperator.GetValueOrDefault(op) + ms;
            string phase = Phase(name, op);
            byPhase[phase] = byPhase.GetValueOrDefault(phase) + ms;
        }
        var timed = runs.Skip(skipRuns).ToList();
        return new Summary(timed.Count, timed.Sum(r => r.End - r.Start) / 1000, byOperator, byPhase);
    }

    /// <summary>
    /// The phase of a node of the exported decoder step, from its name: the tracer's module path through
    /// python/transduce_torch, where a decoder block's sub-layers are its residual wrappers (<c>addNorm1</c> self-attention,
    /// <c>addNorm2</c> cross-attention, <c>addNorm3</c> the feed-forward network), e.g.
    /// <c>/decoder/blocks.0/addNorm1/W_q/MatMul</c>. A residual's <c>Add</c> counts with the sub-layer's output product, as
    /// in our step; a fused node keeps the name of one of its nodes.
    /// </summary>
    internal static string Phase(string name, string op)
    {
        bool Has(string part) => name.Contains(part, StringComparison.Ordinal);
        if (Has("/norm/") || op is "LayerNormalization" or "SimplifiedLayerNormalization") return nameof(StepPhase.Norm);
        if (Has("/decoder/dense/")) return nameof(StepPhase.OutputProjection);
        if (Has("/decoder/embedding/") || Has("/decoder/positions/") || name == "/decoder/Mul") return nameof(StepPhase.Embedding);
        if (Has("/addNorm1/"))
            return Has("/W_q/") || Has("/W_k/") || Has("/W_v/") ? nameof(StepPhase.SelfQkv)
                : Has("/W_o/") || name.EndsWith("/addNorm1/Add", StringComparison.Ordinal) ? nameof(StepPhase.SelfOut)
                : nameof(StepPhase.SelfAttention);
        if (Has("/addNorm2/"))
            return Has("/W_q/") ? nameof(StepPhase.CrossQuery)
                : Has("/W_o/") || name.EndsWith("/addNorm2/Add", StringComparison.Ordinal) ? nameof(StepPhase.CrossOut)
                : nameof(StepPhase.CrossAttention);
        if (Has("/addNorm3/"))
            return Has("/ffn/dense1/") || Has("/ffn/up/") ? nameof(StepPhase.Ffn1)
                : Has("/ffn/dense2/") || name.EndsWith("/addNorm3/Add", StringComparison.Ordinal) ? nameof(StepPhase.Ffn2)
                : nameof(StepPhase.Activation);
        return "Other"; // the source mask's nodes outside the blocks, shapes, the last token's logits
    }

    /// <summary>
    /// Writes what <see cref="SideBySide"/> reads for one mode: the timed pass's wall seconds and tokens, the decoder runs'
    /// time inside ONNX Runtime, and kernel milliseconds by phase; <paramref name="unprofiledSeconds"/> is the same pass without
    /// the profiler; <paramref name="encodeSeconds"/> the pass's time in the encoder graph.
    /// </summary>
    public static void WriteJson(string path, Summary s, double seconds, long tokens, double unprofiledSeconds, double encodeSeconds)
    {
        var phases = new System.Text.Json.Nodes.JsonObject();
        foreach (var (name, ms) in s.ByPhase) phases[name] = ms;
        var root = new System.Text.Json.Nodes.JsonObject
        {
            ["seconds"] = seconds, ["unprofiled_seconds"] = unprofiledSeconds, ["encode_seconds"] = encodeSeconds, ["tokens"] = tokens, ["runs"] = s.Runs, ["run_ms"] = s.RunMs, ["phases"] = phases,
        };
        File.WriteAllText(path, root.ToJsonString());
    }

    /// <summary>
    /// Our step's phases (seconds over a timed pass of <paramref name="ourTokens"/> tokens and <paramref name="ourSeconds"/>
    /// wall) beside ORT's kernels by the same phases (the JSON <see cref="WriteJson"/> wrote), in ms per token. Ours has no
    /// line of its own for the time between its marks (it falls in the next phase); ORT's time outside its kernels is
    /// "step overhead". Outside the decoder steps: the encoder (with the cross-attention keys and values) and the rest (the
    /// search, batching).
    /// </summary>
    public static string SideBySide(string mode, double[] ourPhases, double ourSeconds, double ourEncodeSeconds, long ourTokens, string ortJson)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(ortJson));
        var root = document.RootElement;
        double ortSeconds = root.GetProperty("seconds").GetDouble(), runMs = root.GetProperty("run_ms").GetDouble();
        long ortTokens = root.GetProperty("tokens").GetInt64();
        var ort = root.GetProperty("phases").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        var md = new StringBuilder();
        double unprofiled = root.GetProperty("unprofiled_seconds").GetDouble();
        md.AppendLine(Inv, $"{mode}: ms per token (ours: {ourTokens} tokens in {ourSeconds:F2} s; ORT: the profiled pass, {ortTokens} tokens in {ortSeconds:F2} s, " +
            $"{unprofiled:F2} s without the profiler)").AppendLine();
        md.AppendLine("| phase | Transduce | ONNX Runtime | Transduce − ORT |").AppendLine("| --- | ---: | ---: | ---: |");
        double oursSteps = 0, ortKernels = 0;
        void Line(string name, double ours, double theirs) =>
            md.AppendLine(Inv, $"| {name} | {ours:F3} | {theirs:F3} | {ours - theirs:+0.000;−0.000;0.000} |");
        foreach (var phase in StepPhases.All)
        {
            double ours = ourPhases[(int)phase] * 1000 / ourTokens, theirs = ort.GetValueOrDefault(phase.ToString()) / ortTokens;
            oursSteps += ours;
            ortKernels += theirs;
            Line(phase.ToString(), ours, theirs);
        }
        double other = ort.GetValueOrDefault("Other") / ortTokens;
        Line("other kernels (masks, shapes)", 0, other);
        Line("step overhead outside kernels", 0, runMs / ortTokens - ortKernels - other);
        Line("**decoder step**", oursSteps, runMs / ortTokens);
        double ortEncode = root.GetProperty("encode_seconds").GetDouble() * 1000 / ortTokens, ourEncode = ourEncodeSeconds * 1000 / ourTokens;
        Line("encoder and cross-attention keys/values", ourEncode, ortEncode);
        Line("search, batching, glue", ourSeconds * 1000 / ourTokens - oursSteps - ourEncode, ortSeconds * 1000 / ortTokens - runMs / ortTokens - ortEncode);
        Line("**wall**", ourSeconds * 1000 / ourTokens, ortSeconds * 1000 / ortTokens);
        Line("wall, ORT without the profiler", ourSeconds * 1000 / ourTokens, unprofiled * 1000 / ortTokens);
        return md.ToString();
    }

    /// <summary>The summary as Markdown: by phase and by operator, ms per decoder run and per token.</summary>
    public static string Markdown(Summary s, string mode, long tokens)
    {
        var md = new StringBuilder();
        md.AppendLine(Inv, $"ONNX Runtime profile, {mode}: {s.Runs} decoder runs, {tokens} tokens, {s.RunMs / s.Runs:F3} ms per run " +
            $"({s.RunMs / tokens:F3} ms per token) inside ONNX Runtime, of which kernels {(s.RunMs - s.OverheadMs) / s.Runs:F3}");
        md.AppendLine().AppendLine("| by phase | ms per run | ms per token | share |").AppendLine("| --- | ---: | ---: | ---: |");
        foreach (var (name, ms) in s.ByPhase.OrderByDescending(p => p.Value).Append(new("Session overhead", s.OverheadMs)))
            md.AppendLine(Inv, $"| {name} | {ms / s.Runs:F3} | {ms / tokens:F4} | {100 * ms / s.RunMs:F1} % |");
        md.AppendLine().AppendLine("| by operator | ms per run | ms per token | share |").AppendLine("| --- | ---: | ---: | ---: |");
        foreach (var (name, ms) in s.ByOperator.OrderByDescending(p => p.Value))
            md.AppendLine(Inv, $"| {name} | {ms / s.Runs:F3} | {ms / tokens:F4} | {100 * ms / s.RunMs:F1} % |");
        return md.ToString();
    }
}
