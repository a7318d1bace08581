using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Text;

namespace Transduce.Bench;

/// <summary>
/// The ONNX Runtime twin of the decoding benches: a Transformer checkpoint exported by bench/pytorch/export_onnx.py
/// (through python/transduce_torch) and decoded by <see cref="OrtDecoder"/> in a process of its own
/// (<c>Transduce.Bench ort-decode</c>, which never starts libtorch), so that its peak RSS is its own, as the PyTorch
/// twin's is. Incremental modes only: the graphs carry the key/value cache.
/// </summary>
internal static class OrtTwin
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>
    /// The exported graphs of <paramref name="checkpoint"/> in <paramref name="folder"/> (default: a folder per checkpoint
    /// path under the temporary folder), exported again when missing or older than the checkpoint's weights or configuration.
    /// </summary>
    public static string Export(string checkpoint, string? folder = null)
    {
        string full = Path.GetFullPath(checkpoint);
        folder ??= Path.Combine(Path.GetTempPath(), "transduce-onnx",
            $"{Path.GetFileName(full.TrimEnd('/'))}-{Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..8].ToLowerInvariant()}");
        var inputs = new[] { "model.safetensors", "config.json" }.Select(f => File.GetLastWriteTimeUtc(Path.Combine(full, f))).Max();
        var outputs = OrtModel.Graphs.Append("check.json").Select(f => Path.Combine(folder, f)).ToArray();
        if (outputs.All(File.Exists) && outputs.Min(File.GetLastWriteTimeUtc) > inputs) return folder;
        Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] exporting {full} to ONNX in {folder} …");
        PythonTwin.Run("export_onnx.py", "--checkpoint", full, "--out", folder);
        return folder;
    }

    /// <summary>
    /// int8 graphs made from the float32 export <paramref name="folder"/> by bench/pytorch/quantize_onnx.py (every MatMul by a
    /// weight as dynamic int8 quantisation) into <paramref name="folder"/>-int8, made again when older than the export.
    /// </summary>
    public static string Quantize(string folder)
    {
        string target = folder.TrimEnd('/') + "-int8";
        var made = OrtModel.Graphs.Select(g => Path.Combine(target, g)).ToArray();
        var from = OrtModel.Graphs.Select(g => File.GetLastWriteTimeUtc(Path.Combine(folder, g))).Max();
        if (made.All(File.Exists) && made.Min(File.GetLastWriteTimeUtc) > from) return target;
        Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] quantising {folder} to int8 in {target} …");
        PythonTwin.Run("quantize_onnx.py", "--onnx", folder, "--out", target);
        return target;
    }

    /// <summary>What <c>ort-decode</c> needs to frame sources and follow our searches' rules, from the checkpoint.</summary>
    /// <param name="SourcePad">Source padding id.</param>
    /// <param name="SourceEos">Source end id, appended to every source.</param>
    /// <param name="MaxSourceSteps">The source cut (ids and &lt;eos&gt;), when there is one.</param>
    /// <param name="Rules">Target ids, banned tokens, fixed length, beam options.</param>
    internal sealed record Framing(int SourcePad, int SourceEos, int? MaxSourceSteps, OrtDecoder.SearchRules Rules);

    /// <summary>Decodes <paramref name="sources"/> (ids without &lt;eos&gt;) in every mode in an <c>ort-decode</c> process; the graphs
    /// must hold to check.json within <paramref name="tolerance"/> (∞ for int8 graphs: the difference is only logged).</summary>
    public static TwinDecoder.Result Run(string onnxFolder, int[][] sources, int[] maxLengths, IReadOnlyList<DecodeMode> modes, int threads,
        int[] batch1Rows, Framing framing, double tolerance = 1e-4, string? profile = null) =>
        TwinDecoder.RunProcess(sources, maxLengths, modes, batch1Rows, "ort-decode", (sourcesFile, output) =>
        {
            var r = framing.Rules;
            var arguments = new List<string>
            {
                "ort-decode", "--onnx", onnxFolder, "--sources", sourcesFile, "--out", output, "--threads", threads.ToString(Inv),
                "--modes", string.Join(',', modes.Select(m => m.Name)),
                "--ids", string.Join(',', new[] { framing.SourcePad, framing.SourceEos, r.Pad, r.Bos, r.Eos }.Select(i => i.ToString(Inv))),
                "--normalization", r.Beam.Normalization.ToString(), "--length-penalty", r.Beam.LengthPenalty.ToString("R", Inv),
                "--early-stopping", r.Beam.EarlyStopping.ToString(), "--tolerance", tolerance.ToString("R", Inv),
            };
            if (framing.MaxSourceSteps is int cut) arguments.AddRange(["--max-source-steps", cut.ToString(Inv)]);
            if (r.FixedLength is int n) arguments.AddRange(["--fixed-length", n.ToString(Inv)]);
            if (r.Banned.Length > 0) arguments.AddRange(["--banned", string.Join(',', r.Banned.Select(b => b.ToString(Inv)))]);
            if (profile is not null) arguments.AddRange(["--profile", Path.GetFullPath(profile)]);
            // This very program, as it was started (the apphost, or dotnet with the assembly).
            string process = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell this process's path");
            var start = new ProcessStartInfo(process) { UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(process) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
            foreach (string a in arguments) start.ArgumentList.Add(a);
            using var child = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {process}");
            child.WaitForExit();
            if (child.ExitCode != 0) throw new InvalidOperationException($"ort-decode exited with code {child.ExitCode}");
        });

    /// <summary>The options a checkpoint's generation settings give the ORT twin; refuses logit rules it does not implement.</summary>
    public static OrtDecoder.SearchRules Rules(SpecialIds target, SearchOptions greedy, BeamSearchOptions beam, int? fixedLength)
    {
        if (greedy.BannedSequences.Count > 0 || greedy.MinLength > 0 || greedy.NoRepeatNgramSize > 0 || greedy.RepetitionPenalty != 1 || greedy.ForcedBosToken is not null)
            throw new InvalidOperationException("the ONNX Runtime twin implements banned tokens and the length rules only (the checkpoint's generation settings ask for more); run with --no-ort");
        return new OrtDecoder.SearchRules(target.Pad, target.Bos, target.Eos, greedy.BannedTokens.ToArray(), fixedLength, beam);
    }

    /// <summary>The hidden <c>ort-decode</c> command: the twin's process.</summary>
    public static Command CreateCommand()
    {
        var onnx = new Option<string>("--onnx") { Required = true, Description = "Folder written by export_onnx.py (encoder/, decoder/, check.json)." };
        var sourcesOption = new Option<string>("--sources") { Required = true, Description = "JSON lines {\"ids\", \"max_len\", \"batch1\"}." };
        var output = new Option<string>("--out") { Required = true, Description = "Result JSON (infer_twin.py's format)." };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads.", DefaultValueFactory = _ => 2 };
        var modesOption = new Option<string>("--modes") { Required = true, Description = "{greedy|beamK}-incremental-bN, comma-separated." };
        var ids = new Option<string>("--ids") { Required = true, Description = "source pad, source eos, target pad, bos, eos." };
        var cut = new Option<int?>("--max-source-steps") { Description = "Source cut (ids and <eos>)." };
        var fixedLength = new Option<int?>("--fixed-length") { Description = "Ban <eos> for the first N steps." };
        var banned = new Option<string?>("--banned") { Description = "Banned target ids, comma-separated." };
        var normalization = new Option<LengthNormalization>("--normalization") { DefaultValueFactory = _ => LengthNormalization.Gnmt };
        var penalty = new Option<double>("--length-penalty") { DefaultValueFactory = _ => 1.0 };
        var early = new Option<EarlyStopping>("--early-stopping") { DefaultValueFactory = _ => EarlyStopping.WhenFull };
        var tolerance = new Option<double>("--tolerance") { Description = "How far the graphs may be from check.json (int8: reported only).", DefaultValueFactory = _ => 1e-4 };
        var profile = new Option<string?>("--profile") { Description = "Profile the decoder session of each mode's timed pass (ORT's EnableProfiling) into DIR/MODE_*.json, summarised in DIR/MODE.md." };
        var command = new Command("ort-decode", "The ONNX Runtime twin's process (run by infer and infer-synthetic).")
        {
            onnx, sourcesOption, output, threads, modesOption, ids, cut, fixedLength, banned, normalization, penalty, early, tolerance, profile,
        };
        command.Hidden = true;
        command.SetAction(r =>
        {
            try
            {
                int[] special = r.GetValue(ids)!.Split(',').Select(s => int.Parse(s, Inv)).ToArray();
                var rules = new OrtDecoder.SearchRules(special[2], special[3], special[4],
                    r.GetValue(banned) is { Length: > 0 } b ? b.Split(',').Select(s => int.Parse(s, Inv)).ToArray() : [],
                    r.GetValue(fixedLength),
                    new BeamSearchOptions { Normalization = r.GetValue(normalization), LengthPenalty = r.GetValue(penalty), EarlyStopping = r.GetValue(early) });
                Decode(r.GetValue(onnx)!, r.GetValue(sourcesOption)!, r.GetValue(output)!, r.GetValue(threads), r.GetValue(modesOption)!,
                    special[0], special[1], r.GetValue(cut), rules, r.GetValue(tolerance), r.GetValue(profile));
                return 0;
            }
            catch (Exception e) when (e is InvalidDataException or InvalidOperationException or IOException or FormatException or OnnxRuntimeException)
            {
                Console.Error.WriteLine($"error: ort-decode: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    private static void Decode(string folder, string sourcesFile, string outputFile, int threads, string modeList, int sourcePad, int sourceEos,
        int? maxSourceSteps, OrtDecoder.SearchRules rules, double tolerance, string? profile)
    {
        var sentences = new List<int[]>();
        var limits = new List<int>();
        var batch1 = new List<int>();
        foreach (string line in File.ReadLines(sourcesFile))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            var row = JsonNode.Parse(line)!.AsObject();
            if (row["batch1"]?.GetValue<bool>() == true) batch1.Add(sentences.Count);
            sentences.Add(row["ids"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray());
            limits.Add(row["max_len"]!.GetValue<int>());
        }
        using var model = new OrtModel(folder, threads);
        double check = model.Check(folder, tolerance);
        Log($"ort: {OrtModel.Version}, {threads} intra-op thread(s); the graphs differ from the torch module by at most {check:G2} on check.json " +
            $"(tolerance {tolerance:G2})");
        var framed = sentences.Select(s => Batching.WithEos(s, sourceEos, maxSourceSteps)).ToArray();
        var results = new JsonObject();
        foreach (string name in modeList.Split(','))
        {
            var mode = ParseMode(name);
            var rows = mode.Batch == 1 ? batch1.ToArray() : Enumerable.Range(0, sentences.Count).ToArray();
            int maxSource = Math.Max(1, rows.Select(i => framed[i].Length).DefaultIfEmpty(1).Max());
            int maxOutput = rows.Select(i => limits[i]).DefaultIfEmpty(0).Max();
            int batchRows = Math.Min(mode.Batch, Math.Max(1, rows.Length));
            // One pass of a mode: warm-up as the other sides (one batch's worth of sentences, three at batch 1), untimed,
            // then the timed pass; returns the decoder's runs and rows before the timed pass too.
            (int[][] Outputs, double Seconds, double Cpu, long PeakRss, int RunsBefore, long RowsBefore, long RowsRun, double EncodeSeconds) Pass(OrtModel m)
            {
                using var decoder = new OrtDecoder(m, rules, batchRows, mode.Beam, maxSource, maxOutput);
                int[][] Run(int[] picked)
                {
                    var outputs = new int[picked.Length][];
                    // Sorted by source length (stable), as TransduceDecoder and Translator batch.
                    var order = Enumerable.Range(0, picked.Length).OrderBy(j => sentences[picked[j]].Length).ToArray();
                    foreach (var chunk in order.Chunk(mode.Batch))
                    {
                        var sources = chunk.Select(j => framed[picked[j]]).ToList();
                        var maxLengths = chunk.Select(j => limits[picked[j]]).ToArray();
                        var decoded = mode.Beam == 1 ? decoder.Greedy(sources, maxLengths) : decoder.Beam(sources, maxLengths, mode.Beam);
                        for (int k = 0; k < chunk.Length; k++) outputs[chunk[k]] = decoded[k];
                    }
                    return outputs;
                }
                Run(rows[..Math.Clamp(mode.Batch == 1 ? 3 : mode.Batch, Math.Min(1, rows.Length), rows.Length)]);
                int runsBefore = decoder.Runs;
                long rowsBefore = decoder.RowsRun;
                double encodeBefore = decoder.EncodeSeconds;
                var (outputs, seconds, cpu, peak) = Hardware.TimedPass(() => Run(rows));
                return (outputs, seconds, cpu, peak, runsBefore, rowsBefore, decoder.RowsRun, decoder.EncodeSeconds - encodeBefore);
            }
            var (decodedAll, seconds, cpuSeconds, peakRss, _, _, _, _) = Pass(model);
            long emitted = decodedAll.Sum(o => (long)o.Length + 1);
            if (profile is not null)
            {
                // Profiling costs time: a second pass in a decoder session of its own, whose trace ends with its timed pass;
                // the timings above stay the unprofiled ones.
                Directory.CreateDirectory(profile);
                using var profiled = new OrtModel(folder, threads, Path.Combine(profile, name));
                var p = Pass(profiled);
                string trace = profiled.Decoder.EndProfiling();
                var summary = OrtProfile.Summarise(trace, p.RunsBefore);
                string markdown = OrtProfile.Markdown(summary, name, p.RowsRun - p.RowsBefore);
                File.WriteAllText(Path.Combine(profile, name + ".md"), markdown);
                OrtProfile.WriteJson(Path.Combine(profile, name + ".json"), summary, p.Seconds, p.RowsRun - p.RowsBefore, seconds, p.EncodeSeconds);
                Log($"ort {name} profile ({trace}; the profiled pass took {p.Seconds:F2} s, unprofiled {seconds:F2} s):\n{markdown}");
            }
            results[name] = new JsonObject
            {
                ["seconds"] = seconds, ["cpu_seconds"] = cpuSeconds, ["sentences"] = rows.Length, ["peak_rss_bytes"] = peakRss,
                ["outputs"] = new JsonArray(decodedAll.Select(o => (JsonNode)new JsonArray(o.Select(t => (JsonNode)t).ToArray())).ToArray()),
            };
            Log($"ort {name}: {rows.Length} sentences in {seconds:F2} s, {emitted / seconds:F0} tokens/s; " +
                $"CPU {cpuSeconds:F2} s ({cpuSeconds * 1000 / emitted:F2} ms per token)");
        }
        var root = new JsonObject
        {
            ["torch"] = OrtModel.Version, ["blas"] = "MLAS (ORT's own)", ["threads"] = threads, ["check_max_difference"] = check, ["modes"] = results,
        };
        File.WriteAllText(outputFile, root.ToJsonString());
    }

    private static DecodeMode ParseMode(string name)
    {
        string[] parts = name.Split('-');
        if (parts.Length != 3 || parts[1] != "incremental" || !parts[2].StartsWith('b') || !(parts[0] == "greedy" || parts[0].StartsWith("beam", StringComparison.Ordinal)))
            throw new FormatException($"mode '{name}': the ONNX Runtime twin decodes {{greedy|beamK}}-incremental-bN");
        return new DecodeMode(parts[0] == "greedy" ? 1 : int.Parse(parts[0][4..], Inv), false, int.Parse(parts[2][1..], Inv));
    }

    private static void Log(string message) => Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {message}");
}
