using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Transduce.Bench;

/// <summary>
/// Runs bench/pytorch/infer_twin.py on the same source ids as Transduce: writes them as JSON lines
/// (<c>{"ids": [...], "max_len": N}</c>), runs every mode in one python process and reads back its timings and outputs.
/// </summary>
internal static class TwinDecoder
{
    /// <summary>The twin's results per mode name, the PyTorch version and the BLAS library it ran with.</summary>
    public sealed record Result(string TorchVersion, string Blas, IReadOnlyDictionary<string, ModeResult> Modes);

    public static Result Run(string checkpoint, TransduceDecoder tokens, IReadOnlyList<DecodeMode> modes, int threads, int[] batch1Rows) =>
        Run(checkpoint, tokens.Sources, tokens.MaxLengths, modes, threads, batch1Rows);

    /// <summary>Runs the twin on <paramref name="sources"/> with output limits <paramref name="maxLengths"/>; <paramref name="extra"/> goes to infer_twin.py as is.</summary>
    public static Result Run(string checkpoint, int[][] sources, int[] maxLengths, IReadOnlyList<DecodeMode> modes, int threads, int[] batch1Rows,
        params string[] extra) =>
        RunProcess(sources, maxLengths, modes, batch1Rows, "infer_twin.py", (sourcesFile, output) => PythonTwin.Run("infer_twin.py", [
            "--checkpoint", checkpoint, "--sources", sourcesFile, "--out", output,
            "--threads", threads.ToString(CultureInfo.InvariantCulture), "--modes", string.Join(',', modes.Select(m => m.Name)), .. extra]));

    /// <summary>
    /// Writes <paramref name="sources"/> as JSON lines (<c>{"ids", "max_len", "batch1"}</c>) into a temporary folder, lets
    /// <paramref name="launch"/> run a twin process on that file (its result file the second argument) and reads the result:
    /// <c>{"torch", "blas", "modes": {name: {"seconds", "peak_rss_bytes", "outputs"}}}</c>. The PyTorch twin and the ONNX
    /// Runtime twin (<see cref="OrtTwin"/>) share this format.
    /// </summary>
    internal static Result RunProcess(int[][] sources, int[] maxLengths, IReadOnlyList<DecodeMode> modes, int[] batch1Rows, string twin,
        Action<string, string> launch)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"transduce-infer-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            string sourcesFile = Path.Combine(folder, "sources.jsonl"), output = Path.Combine(folder, "result.json");
            var lines = new StringBuilder();
            var batch1 = batch1Rows.ToHashSet();
            for (int i = 0; i < sources.Length; i++)
            {
                var row = new JsonObject
                {
                    ["ids"] = new JsonArray(sources[i].Select(id => (JsonNode)id).ToArray()),
                    ["max_len"] = maxLengths[i],
                    ["batch1"] = batch1.Contains(i),
                };
                lines.Append(row.ToJsonString()).Append('\n');
            }
            File.WriteAllText(sourcesFile, lines.ToString());
            launch(sourcesFile, output);
            return Parse(File.ReadAllText(output), modes, batch1Rows, sources.Length, twin);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static Result Parse(string json, IReadOnlyList<DecodeMode> modes, int[] batch1Rows, int count, string twin)
    {
        var root = JsonNode.Parse(json)?.AsObject() ?? throw new InvalidDataException($"{twin} wrote an empty result");
        var byName = root["modes"]?.AsObject() ?? throw new InvalidDataException($"{twin}: result has no 'modes'");
        var results = new Dictionary<string, ModeResult>();
        foreach (var mode in modes)
        {
            var m = byName[mode.Name]?.AsObject() ?? throw new InvalidDataException($"{twin}: no result for mode {mode.Name}");
            var outputs = m["outputs"]!.AsArray().Select(o => o!.AsArray().Select(t => t!.GetValue<int>()).ToArray()).ToArray();
            var rows = mode.Batch == 1 ? batch1Rows : Enumerable.Range(0, count).ToArray();
            if (outputs.Length != rows.Length)
                throw new InvalidDataException($"{twin}: mode {mode.Name} decoded {outputs.Length} sentences, expected {rows.Length}");
            results[mode.Name] = new ModeResult(mode, m["seconds"]!.GetValue<double>(), m["peak_rss_bytes"]!.GetValue<long>(), rows, outputs)
            {
                CpuSeconds = m["cpu_seconds"]?.GetValue<double>(),
            };
        }
        return new Result(root["torch"]?.GetValue<string>() ?? "?", root["blas"]?.GetValue<string>() ?? "?", results);
    }

    /// <summary>How many sentences got exactly the same tokens in <paramref name="a"/> and <paramref name="b"/>.</summary>
    public static int Identical(ModeResult a, ModeResult b) =>
        a.Outputs.Zip(b.Outputs).Count(p => p.First.AsSpan().SequenceEqual(p.Second));
}
