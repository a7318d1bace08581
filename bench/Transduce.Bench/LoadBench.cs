using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// Load time and memory of a model as a fresh process meets it: each run is a new process (<c>load-one</c>) that loads the
/// checkpoint (<see cref="Checkpoint.Load"/>), sets a compute type, decodes a few sentences (which packs the weights), and
/// reports the time of each phase and its resident memory — after loading, after the first decoding, and the peak.
/// Runs alternate between compute types, so a noisy moment does not fall on one type only.
/// </summary>
internal static class LoadBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private sealed record Sample(string Type, double LoadSeconds, double FirstDecodeSeconds, double SecondDecodeSeconds,
        long RssAfterLoad, long RssSteady, long AnonSteady, long FileSteady, long PeakRss, string Outputs = "");

    public static IEnumerable<Command> Create()
    {
        var model = new Option<string>("--model") { Description = $"A synthetic model ({string.Join(", ", Synthetic.Names)}) or a checkpoint / Hugging Face folder.", DefaultValueFactory = _ => "nllb-600m" };
        var cache = new Option<string>("--cache") { Description = "Where synthetic checkpoints are written (and reused).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "transduce-synthetic") };
        var types = new Option<string>("--compute-types") { Description = "Compute types measured, comma-separated.", DefaultValueFactory = _ => "float32,bfloat16,int8" };
        var runs = new Option<int>("--runs") { Description = "Fresh processes per compute type.", DefaultValueFactory = _ => 3 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads.", DefaultValueFactory = _ => 2 };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var command = new Command("load", "Load time and resident memory of a model in fresh processes, per compute type.") { model, cache, types, runs, threads, output };
        command.SetAction(r =>
        {
            string name = r.GetValue(model)!;
            string directory = name;
            if (Synthetic.Names.Contains(name))
            {
                directory = Path.Combine(r.GetValue(cache)!, name);
                Log($"synthetic model {name} in {directory} …");
                Synthetic.Create(name, directory).Dispose();
            }
            var computeTypes = r.GetValue(types)!.Split(',');
            var samples = new List<Sample>();
            for (int run = 0; run < r.GetValue(runs); run++)
                foreach (var type in computeTypes)
                {
                    var sample = Child(directory, type, r.GetValue(threads));
                    Log($"{type}: load {sample.LoadSeconds:F2} s, first decoding {sample.FirstDecodeSeconds:F2} s, steady {Mb(sample.RssSteady)} MB, peak {Mb(sample.PeakRss)} MB");
                    samples.Add(sample);
                }
            string report = Report(name, directory, r.GetValue(threads), computeTypes, samples);
            Console.WriteLine(report);
            if (r.GetValue(output) is { } path) File.WriteAllText(path, report);
            return 0;
        });

        var dir = new Option<string>("--dir") { Required = true };
        var type = new Option<string>("--compute-type") { DefaultValueFactory = _ => "float32" };
        var one = new Command("load-one", "One fresh-process sample of `load` (prints one JSON line).") { dir, type, threads };
        one.Hidden = true;
        one.SetAction(r =>
        {
            set_num_threads(r.GetValue(threads));
            Transduce.Native.NativeMemory.KeepFreedMemory(); // as translate/evaluate/serve do
            using (empty(0)) { } // libtorch is loaded before the clock starts: its start-up is not the model's load
            var clock = Stopwatch.StartNew();
            using var checkpoint = Checkpoint.Load(r.GetValue(dir)!);
            double load = clock.Elapsed.TotalSeconds;
            long afterLoad = Status("VmRSS");
            var computeType = ComputeTypes.Parse(r.GetValue(type)!);
            ComputeTypes.Apply(checkpoint.Model, computeType);
            checkpoint.Model.eval();
            var (first, outputs) = Decode(checkpoint, seed: 1);
            // The second decoding still pays for what packing left behind (the kernel reclaiming the float32 originals, ~0.5 s
            // for 600M weights); from the third on a decoding takes what every later one does.
            Decode(checkpoint, seed: 2);
            var (later, more) = Decode(checkpoint, seed: 3);
            // A digest of every token decoded, so that two builds (or two loaders) can be compared output for output.
            string digest = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
                System.Text.Encoding.UTF8.GetBytes(string.Join("|", outputs.Concat(more).Select(o => string.Join(",", o)))))).ToLowerInvariant()[..16];
            Console.WriteLine(JsonSerializer.Serialize(new Sample(computeType.Name(), load, first, later, afterLoad,
                Status("VmRSS"), Status("RssAnon"), Status("RssFile"), Status("VmHWM"), digest)));
            return 0;
        });
        return [command, one];
    }

    // Eight sentences of 12–20 random source ids, decoded greedily to exactly 16 tokens each, in one batch.
    private static (double Seconds, int[][] Outputs) Decode(Checkpoint checkpoint, int seed)
    {
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        var src = checkpoint.SourceVocabulary;
        var random = new Random(seed);
        var sources = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, random.Next(12, 21)).Select(_ => random.Next(4, src.Count)).ToArray()).ToList();
        var (source, lengths) = Batching.BuildSources(sources, new SpecialIds(src.PadId, src.BosId, src.EosId), null);
        var tgt = checkpoint.TargetVocabulary;
        var model = FixedLength.Of(checkpoint.Model, tgt.EosId, 16);
        var outputs = GreedySearch.Decode(model, source, lengths, new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId), Enumerable.Repeat(16, sources.Count).ToArray());
        return (clock.Elapsed.TotalSeconds, outputs);
    }

    private static Sample Child(string directory, string type, int threads)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (!Path.GetFileNameWithoutExtension(Environment.ProcessPath!).Equals("Transduce.Bench", StringComparison.OrdinalIgnoreCase))
            start.ArgumentList.Add(typeof(LoadBench).Assembly.Location); // run as `dotnet Transduce.Bench.dll`
        foreach (var a in new[] { "load-one", "--dir", directory, "--compute-type", type, "--threads", threads.ToString(Inv) }) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start the load-one process");
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"load-one ({type}) exited with code {process.ExitCode}");
        string line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith('{'));
        return JsonSerializer.Deserialize<Sample>(line) ?? throw new InvalidDataException("load-one printed no result");
    }

    private static string Report(string name, string directory, int threads, IReadOnlyList<string> types, IReadOnlyList<Sample> samples)
    {
        var md = new StringBuilder();
        md.AppendLine("### Load time and resident memory, fresh process per run").AppendLine();
        long fileBytes = Directory.EnumerateFiles(directory, "*.safetensors").Sum(f => new FileInfo(f).Length);
        md.AppendLine(string.Create(Inv, $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {threads} thread(s), libtorch {__version__}. Model `{name}` ") +
            string.Create(Inv, $"({fileBytes / 1e9:F2} GB of safetensors). ") + "Load = `Checkpoint.Load` (libtorch already started); first decoding = 8 sentences " +
            "greedy to 16 tokens, which packs the weights for the compute type; third = the third such decoding; steady = resident set after it " +
            "(anonymous + file-backed); peak = VmHWM. Ranges over the runs.").AppendLine();
        md.AppendLine("| compute type | runs | load s | first decoding s | third decoding s | RSS after load MB | steady RSS MB | of which anon / file MB | peak RSS MB | outputs |");
        md.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        foreach (var type in types)
        {
            var s = samples.Where(x => x.Type == ComputeTypes.Parse(type).Name()).ToList();
            string Range(Func<Sample, double> f, string format) => s.Min(f).ToString(format, Inv) + (s.Count > 1 ? "–" + s.Max(f).ToString(format, Inv) : "");
            md.AppendLine(Inv, $"| {type} | {s.Count} | {Range(x => x.LoadSeconds, "F2")} | {Range(x => x.FirstDecodeSeconds, "F2")} | {Range(x => x.SecondDecodeSeconds, "F2")} | " +
                $"{Range(x => Mb(x.RssAfterLoad), "F0")} | {Range(x => Mb(x.RssSteady), "F0")} | {Range(x => Mb(x.AnonSteady), "F0")} / {Range(x => Mb(x.FileSteady), "F0")} | {Range(x => Mb(x.PeakRss), "F0")} | {string.Join(" ", s.Select(x => x.Outputs).Distinct())} |");
        }
        md.AppendLine().AppendLine("Command:").AppendLine().AppendLine("```sh")
            .AppendLine("dotnet run -c Release --project bench/Transduce.Bench -- " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)))
            .AppendLine("```");
        return md.ToString();
    }

    private static double Mb(long bytes) => bytes / 1048576.0;

    /// <summary>A memory line of /proc/self/status (VmRSS, RssAnon, RssFile, VmHWM) in bytes; 0 where absent.</summary>
    private static long Status(string key)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return 0;
        foreach (string line in File.ReadLines(status))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], Inv) * 1024;
        return 0;
    }

    private static void Log(string message) => Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {message}");
}
