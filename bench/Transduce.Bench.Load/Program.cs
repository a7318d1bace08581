using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Transduce.Bench.Load;

/// <summary>
/// <c>Transduce.Bench.Load</c>: a load benchmark of <c>transduce serve</c> with and without micro-batching, and
/// (<c>--kill-test</c>) a check that killing the server mid-load leaves no request without an outcome.
/// </summary>
internal static partial class Program
{
    internal static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static int Main(string[] args)
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint directory to serve. If it holds no checkpoint, a small GRU is trained into it (and kept); if omitted, into a temporary directory (deleted at exit)." };
        var cli = new Option<string?>("--cli") { Description = "Transduce.Cli.dll to run (default: src/Transduce.Cli/bin/Release/net10.0/Transduce.Cli.dll of this repository)." };
        var data = new Option<string?>("--data") { Description = "fra-eng folder with train.tsv and test.tsv (default: ../shared/data/fra-eng beside the repository)." };
        var trainPairs = new Option<int>("--train-pairs") { Description = "Train on the first N pairs of train.tsv.", DefaultValueFactory = _ => 2000 };
        var trainMinutes = new Option<double>("--train-minutes") { Description = "Training time limit in minutes.", DefaultValueFactory = _ => 1 };
        var requests = new Option<int>("--requests") { Description = "Requests per configuration (after warm-up).", DefaultValueFactory = _ => 2000 };
        var clients = new Option<int>("--clients") { Description = "Concurrent clients (closed loop: each sends its next request when the previous one is answered).", DefaultValueFactory = _ => 32 };
        var perRequest = new Option<int>("--sentences-per-request") { Description = "Sentences in each request.", DefaultValueFactory = _ => 1 };
        var warmup = new Option<int>("--warmup") { Description = "Warm-up requests per configuration (not measured).", DefaultValueFactory = _ => 64 };
        var seed = new Option<int>("--seed") { Description = "Seed for sampling the test sentences.", DefaultValueFactory = _ => 1 };
        var timeLimit = new Option<double>("--time-limit-s") { Description = "Time limit per configuration's measured load, in seconds.", DefaultValueFactory = _ => 300 };
        var threads = new Option<int?>("--server-threads") { Description = "--threads for the server (libtorch intra-op threads); default: the server's default (all cores)." };
        var computeType = new Option<string?>("--compute-type") { Description = "--compute-type for the server (float32, bfloat16, int8); default: the server's." };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var killTest = new Option<bool>("--kill-test") { Description = "Instead of the benchmark: kill the server mid-load (SIGKILL, then SIGTERM with a fresh server) and count outcomes." };
        var killClients = new Option<int>("--kill-clients") { Description = "Clients of the kill test.", DefaultValueFactory = _ => 16 };
        var killAfter = new Option<double>("--kill-after-s") { Description = "Seconds of load before the signal.", DefaultValueFactory = _ => 2 };
        var hangTimeout = new Option<double>("--hang-timeout-s") { Description = "Seconds after the signal by which every request must have an outcome.", DefaultValueFactory = _ => 30 };
        var adversarial = new Option<bool>("--adversarial") { Description = "Instead of the batching comparison: the normal load alone, then with a share of the largest requests the server admits mixed in; p50/p99 of the normal requests in both." };
        var adversarialShare = new Option<double>("--adversarial-share") { Description = "Share of all requests that are maximal (adversarial runs).", DefaultValueFactory = _ => 0.1 };
        var adversarialBeam = new Option<int>("--adversarial-beam") { Description = "Beam of the maximal requests.", DefaultValueFactory = _ => 4 };
        var adversarialChars = new Option<int>("--adversarial-chars") { Description = "Characters of each sentence of a maximal request (test sentences joined; the server's --max-chars is 1000 by default).", DefaultValueFactory = _ => 1000 };
        var stress = new Option<int>("--stress") { Description = "Adversarial runs: processes spinning a core each beside the server during the measured load (as stress --cpu N); N = cores doubles the demand for CPU.", DefaultValueFactory = _ => 0 };
        var repeats = new Option<int>("--repeats") { Description = "Adversarial runs: how many times to run the pair (without, with), alternating.", DefaultValueFactory = _ => 1 };

        var root = new RootCommand("Load benchmark of `transduce serve` (micro-batching on and off), and a kill-mid-load check.")
        {
            model, cli, data, trainPairs, trainMinutes, requests, clients, perRequest, warmup, seed, timeLimit, threads, computeType, output,
            killTest, killClients, killAfter, hangTimeout, adversarial, adversarialShare, adversarialBeam, adversarialChars, repeats, stress,
        };
        root.SetAction(r =>
        {
            var settings = new Settings
            {
                Arguments = args,
                Model = r.GetValue(model), Cli = r.GetValue(cli), Data = r.GetValue(data),
                TrainPairs = r.GetValue(trainPairs), TrainMinutes = r.GetValue(trainMinutes),
                Requests = r.GetValue(requests), Clients = r.GetValue(clients), SentencesPerRequest = r.GetValue(perRequest),
                Warmup = r.GetValue(warmup), Seed = r.GetValue(seed), TimeLimit = TimeSpan.FromSeconds(r.GetValue(timeLimit)),
                ServerThreads = r.GetValue(threads), ComputeType = r.GetValue(computeType), Out = r.GetValue(output),
                KillClients = r.GetValue(killClients), KillAfter = TimeSpan.FromSeconds(r.GetValue(killAfter)),
                HangTimeout = TimeSpan.FromSeconds(r.GetValue(hangTimeout)),
                AdversarialShare = r.GetValue(adversarialShare), AdversarialBeam = r.GetValue(adversarialBeam),
                AdversarialChars = r.GetValue(adversarialChars), Repeats = r.GetValue(repeats), Stress = r.GetValue(stress),
            };
            try
            {
                if (r.GetValue(killTest)) return RunKillTests(settings).GetAwaiter().GetResult();
                if (r.GetValue(adversarial)) return Adversarial.RunAsync(settings).GetAwaiter().GetResult();
                return RunBenchmark(settings).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is InvalidOperationException or FileNotFoundException or DirectoryNotFoundException or ArgumentException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        });
        return root.Parse(args).Invoke();
    }

    internal sealed record Settings
    {
        public double AdversarialShare { get; init; }
        public int AdversarialBeam { get; init; }
        public int AdversarialChars { get; init; }
        public int Repeats { get; init; }
        public int Stress { get; init; }
        public required string[] Arguments { get; init; }
        public string? Model { get; init; }
        public string? Cli { get; init; }
        public string? Data { get; init; }
        public int TrainPairs { get; init; }
        public double TrainMinutes { get; init; }
        public int Requests { get; init; }
        public int Clients { get; init; }
        public int SentencesPerRequest { get; init; }
        public int Warmup { get; init; }
        public int Seed { get; init; }
        public TimeSpan TimeLimit { get; init; }
        public int? ServerThreads { get; init; }
        public string? ComputeType { get; init; }
        public string? Out { get; init; }
        public int KillClients { get; init; }
        public TimeSpan KillAfter { get; init; }
        public TimeSpan HangTimeout { get; init; }
    }

    /// <summary>One way of running the server.</summary>
    internal sealed record ServerConfig(string Name, string[] Flags);

    internal static readonly ServerConfig[] Configs =
    [
        new("micro-batching (defaults: window 5 ms, max batch 64)", []),
        new("no batching", ["--batch-window-ms", "0", "--max-batch", "1"]),
    ];

    private static async Task<int> RunBenchmark(Settings s)
    {
        if (s.Requests < 1 || s.Clients < 1 || s.SentencesPerRequest < 1 || s.Warmup < 0)
            throw new ArgumentException("--requests, --clients and --sentences-per-request must be positive, --warmup not negative");
        var env = Locate(s);
        var (warmupRequests, measured) = DrawRequests(s, TestSources(env.DataDir), new Random(s.Seed));

        using var modelDir = await PrepareModel(s, env);
        var rows = new List<(ServerConfig Config, LoadResult Result, double? MeanBatch, long? PeakRss, bool CleanStop)>();
        JsonElement? modelInfo = null;
        foreach (var config in Configs)
        {
            Console.Error.WriteLine($"[bench] starting serve: {config.Name}");
            using var server = await ServeProcess.StartAsync(env.Cli, modelDir.Path, ServerFlags(s, config), TimeSpan.FromSeconds(120));
            using var http = TranslateClient.Create(server.Url, s.Clients);
            modelInfo ??= await ModelInfo(http);
            if (warmupRequests.Length > 0)
            {
                var warm = await LoadRun.RunAsync(http, warmupRequests, s.Clients, TimeSpan.FromSeconds(120));
                if (warm.ErrorCount > 0 || warm.TimedOut)
                    throw new InvalidOperationException($"warm-up failed: {Errors(warm.Errors)}{(warm.TimedOut ? " (timed out)" : "")}\n{server.Log}");
            }
            var before = await BatchStats(http);
            Console.Error.WriteLine($"[bench] {s.Requests} requests from {s.Clients} clients");
            var result = await LoadRun.RunAsync(http, measured, s.Clients, s.TimeLimit);
            var after = await BatchStats(http);
            long? peak = server.PeakRssBytes();
            double? meanBatch = before is { } b && after is { } a && a.Count > b.Count ? (a.Sum - b.Sum) / (a.Count - b.Count) : null;
            bool clean = await server.StopAsync(TimeSpan.FromSeconds(60)) && server.ExitCode == 0;
            rows.Add((config, result, meanBatch, peak, clean));
            Console.Error.WriteLine($"[bench] {result.RequestsPerSecond:F1} req/s, p50 {result.Percentile(50):F1} ms, errors {result.ErrorCount}");
        }

        var md = new StringBuilder();
        md.AppendLine("## `transduce serve` load benchmark").AppendLine();
        Header(md, s, env, modelInfo, modelDir);
        md.AppendLine(string.Create(Inv, $"- Load: {s.Requests:N0} requests per configuration after {s.Warmup} warm-up requests, {s.Clients} concurrent clients (closed loop, HTTP/1.1 keep-alive), {s.SentencesPerRequest} sentence(s) per request sampled from the sources of `test.tsv` (seed {s.Seed}), greedy decoding (beam 1); time limit {s.TimeLimit.TotalSeconds:0} s per configuration."));
        md.AppendLine("- Latency is client-side (send to full response) over successful requests; peak RSS is the server's `VmHWM` at the end of the run (model load and warm-up included); mean batch is the server's `transduce_batch_size` sum/count over the measured requests.").AppendLine();
        md.AppendLine("| server | requests | errors | time (s) | requests/s | sentences/s | p50 (ms) | p95 (ms) | p99 (ms) | mean batch | peak RSS (MiB) |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (config, r, meanBatch, peak, _) in rows)
        {
            string flags = config.Flags.Length == 0 ? "" : $" (`{string.Join(' ', config.Flags)}`)";
            string done = r.TimedOut ? $"{r.Succeeded:N0} of {r.Planned:N0} (time limit)" : r.Succeeded.ToString("N0", Inv);
            md.AppendLine(string.Create(Inv,
                $"| {config.Name}{flags} | {done} | {r.ErrorCount}{(r.ErrorCount > 0 ? $" ({Errors(r.Errors)})" : "")} | {r.Elapsed.TotalSeconds:F1} | {r.RequestsPerSecond:F1} | {r.SentencesPerSecond:F1} | {r.Percentile(50):F1} | {r.Percentile(95):F1} | {r.Percentile(99):F1} | {(meanBatch is double mb ? mb.ToString("F1", Inv) : "–")} | {(peak is long p ? (p / 1048576.0).ToString("F0", Inv) : "–")} |"));
        }
        if (rows.Count == 2 && rows[1].Result.RequestsPerSecond > 0)
            md.AppendLine().AppendLine(string.Create(Inv, $"Micro-batching vs none: {rows[0].Result.RequestsPerSecond / rows[1].Result.RequestsPerSecond:F2}× the throughput, p50 {rows[0].Result.Percentile(50):F1} vs {rows[1].Result.Percentile(50):F1} ms."));
        foreach (var (config, _, _, _, clean) in rows.Where(r => !r.CleanStop))
            md.AppendLine().AppendLine($"Warning: the server ({config.Name}) did not stop cleanly on SIGTERM.");
        Emit(md.ToString(), s.Out);

        bool ok = rows.All(r => r.Result.ErrorCount == 0 && !r.Result.TimedOut);
        return ok ? 0 : 1;
    }

    private static async Task<int> RunKillTests(Settings s)
    {
        if (s.KillClients < 1) throw new ArgumentException("--kill-clients must be positive");
        var env = Locate(s);
        var sources = TestSources(env.DataDir);
        var rng = new Random(s.Seed);
        var sentences = Enumerable.Range(0, 4096).Select(_ => sources[rng.Next(sources.Count)]).ToArray();
        using var modelDir = await PrepareModel(s, env);

        var results = new List<KillCheckResult>();
        JsonElement? modelInfo = null;
        foreach (int signal in new[] { ServeProcess.SigKill, ServeProcess.SigTerm })
        {
            using var server = await ServeProcess.StartAsync(env.Cli, modelDir.Path, ServerFlags(s, Configs[0]), TimeSpan.FromSeconds(120));
            if (modelInfo is null)
            {
                using var http = TranslateClient.Create(server.Url, 1);
                modelInfo = await ModelInfo(http);
            }
            var options = new KillCheckOptions { Clients = s.KillClients, LoadBeforeSignal = s.KillAfter, Signal = signal, HangTimeout = s.HangTimeout };
            Console.Error.WriteLine($"[kill-test] {options.Clients} clients, {(signal == ServeProcess.SigKill ? "SIGKILL" : "SIGTERM")} after {options.LoadBeforeSignal.TotalSeconds:0.#} s");
            results.Add(await KillCheck.RunAsync(server, sentences, options));
        }

        var md = new StringBuilder();
        md.AppendLine("## `transduce serve` kill-mid-load check").AppendLine();
        Header(md, s, env, modelInfo, modelDir);
        md.AppendLine(string.Create(Inv, $"- {s.KillClients} clients send one-sentence requests back to back (each stops after its first failure); after {s.KillAfter.TotalSeconds:0.#} s of load the server gets the signal; a request with no outcome {s.HangTimeout.TotalSeconds:0} s after the signal counts as hung. Fresh server per signal, default micro-batching."));
        md.AppendLine("- \"Before signal\" counts requests begun before the signal was sent. With SIGTERM every such request the server accepted must be answered 200; `refused` means the connection was refused (never accepted).").AppendLine();
        md.AppendLine("| signal | requests | 200 | errors | hung | in flight at signal | begun before signal: 200 / failed | server exit | last outcome after signal | result |");
        md.AppendLine("|---|---:|---:|---|---:|---:|---|---|---:|---|");
        foreach (var r in results)
        {
            string exit = r.ExitCode is int code ? $"code {code} after {r.ExitAfterSignal!.Value.TotalMilliseconds:F0} ms" : "did not exit";
            string before = $"{r.AnsweredBeforeSignal} / {r.ErrorsBeforeSignal.Values.Sum()}{(r.ErrorsBeforeSignal.Count > 0 ? $" ({Errors(r.ErrorsBeforeSignal)})" : "")}";
            md.AppendLine(string.Create(Inv,
                $"| {r.SignalName} | {r.Started} | {r.Answered} | {r.ErrorCount} ({Errors(r.Errors)}) | {r.Hung} | {r.InFlightAtSignal} | {before} | {exit} | {r.LastOutcomeAfterSignal.TotalMilliseconds:F0} ms | {(r.Passed ? "pass" : "FAIL")} |"));
        }
        Emit(md.ToString(), s.Out);
        return results.All(r => r.Passed) ? 0 : 1;
    }

    /// <summary>
    /// The warm-up and measured requests of a run: <see cref="Settings.SentencesPerRequest"/> sentences of
    /// <paramref name="sources"/> each, drawn with <paramref name="rng"/> (warm-up first, so the measured ones depend
    /// only on the seed and the warm-up count).
    /// </summary>
    internal static (string[][] Warmup, string[][] Measured) DrawRequests(Settings s, IReadOnlyList<string> sources, Random rng)
    {
        string[] Draw() => [.. Enumerable.Range(0, s.SentencesPerRequest).Select(_ => sources[rng.Next(sources.Count)])];
        var warmup = Enumerable.Range(0, s.Warmup).Select(_ => Draw()).ToArray();
        return (warmup, Enumerable.Range(0, s.Requests).Select(_ => Draw()).ToArray());
    }

    internal static string[] ServerFlags(Settings s, ServerConfig config) =>
        [.. config.Flags, .. s.ServerThreads is int n ? new[] { "--threads", n.ToString(Inv) } : [],
            .. s.ComputeType is { } type ? new[] { "--compute-type", type } : []];

    internal static void Header(StringBuilder md, Settings s, BenchEnvironment env, JsonElement? model, ModelDirectory modelDir)
    {
        md.AppendLine($"- Command: `dotnet bench/Transduce.Bench.Load/bin/Release/net10.0/Transduce.Bench.Load.dll {string.Join(' ', s.Arguments)}`");
        md.AppendLine($"- Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; commit {env.Commit}");
        md.AppendLine($"- Machine: {System.Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {System.Environment.Version}; the clients run on the same machine as the server");
        md.AppendLine($"- Server: `transduce serve` ({Path.GetFileName(env.Cli)}), {(s.ServerThreads is int t ? $"`--threads {t}`" : "default threads")}{(s.ComputeType is { } ct ? $", `--compute-type {ct}`" : "")}, loopback");
        if (model is { } m)
        {
            string Get(string name) => m.TryGetProperty(name, out var v) ? v.ToString() : "?";
            md.AppendLine($"- Model: {Get("architecture")} {Get("embedding_size")}/{Get("hidden_size")}×{Get("layers")}, {long.Parse(Get("parameters"), Inv):N0} parameters, vocab {Get("source_vocab_size")}/{Get("target_vocab_size")}, id {Get("id")}; {modelDir.Description}");
        }
    }

    internal static void Emit(string markdown, string? path)
    {
        Console.WriteLine(markdown);
        if (path is null) return;
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, markdown);
        Console.Error.WriteLine($"[bench] wrote {path}");
    }

    internal static string Errors(IReadOnlyDictionary<string, int> errors) =>
        errors.Count == 0 ? "none" : string.Join(", ", errors.OrderByDescending(p => p.Value).Select(p => $"{p.Key} {p.Value}"));

    internal static async Task<JsonElement?> ModelInfo(HttpClient http)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var doc = JsonDocument.Parse(await http.GetStringAsync("v1/models", timeout.Token));
        return doc.RootElement.GetProperty("models")[0].Clone();
    }

    /// <summary>The server's <c>transduce_batch_size</c> histogram sum and count, from <c>/metrics</c>.</summary>
    internal static async Task<(double Sum, double Count)?> BatchStats(HttpClient http)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string text = await http.GetStringAsync("metrics", timeout.Token);
        double? sum = null, count = null;
        foreach (string line in text.Split('\n'))
        {
            // "transduce_batch_size_sum{model=\"…\"} 123": summed over the models served.
            if (MetricValue(line, "transduce_batch_size_sum") is double v) sum = (sum ?? 0) + v;
            else if (MetricValue(line, "transduce_batch_size_count") is double n) count = (count ?? 0) + n;
        }
        return sum is double s && count is double c ? (s, c) : null;
    }

    /// <summary>The value of a sample line of metric <paramref name="name"/> (with or without labels), else null.</summary>
    internal static double? MetricValue(string line, string name)
    {
        if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length == name.Length || (line[name.Length] != ' ' && line[name.Length] != '{'))
            return null;
        int space = line.LastIndexOf(' ');
        return double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, Inv, out double value) ? value : null;
    }

    internal sealed record BenchEnvironment(string Repo, string Cli, string DataDir, string Commit);

    internal static BenchEnvironment Locate(Settings s)
    {
        string repo = FindRepo();
        string cliDll = Path.GetFullPath(s.Cli ?? Path.Combine(repo, "src", "Transduce.Cli", "bin", "Release", "net10.0", "Transduce.Cli.dll"));
        if (!File.Exists(cliDll))
            throw new FileNotFoundException($"{cliDll}: not found; build it first: dotnet build -c Release src/Transduce.Cli (or pass --cli)");
        string dataDir = Path.GetFullPath(s.Data ?? Path.Combine(repo, "..", "shared", "data", "fra-eng"));
        if (!File.Exists(Path.Combine(dataDir, "test.tsv")))
            throw new FileNotFoundException($"{Path.Combine(dataDir, "test.tsv")}: not found (pass --data DIR)");
        return new BenchEnvironment(repo, cliDll, dataDir, Commit(repo));
    }

    /// <summary>The repository: the first directory holding <c>Transduce.sln</c> above the current directory or this program.</summary>
    private static string FindRepo()
    {
        foreach (string start in new[] { System.Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Transduce.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository (a directory with Transduce.sln) above the current directory");
    }

    private static string Commit(string repo)
    {
        try
        {
            string head = RunGit(repo, "rev-parse", "--short=12", "HEAD").Trim();
            bool dirty = RunGit(repo, "status", "--porcelain", "--untracked-files=no").Trim().Length > 0;
            return head.Length == 0 ? "unknown" : dirty ? head + " (with uncommitted changes)" : head;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return "unknown";
        }
    }

    private static string RunGit(string repo, params string[] args)
    {
        var psi = new ProcessStartInfo("git") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-C");
        psi.ArgumentList.Add(repo);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? output : "";
    }

    /// <summary>The source sides of <c>test.tsv</c> (first column), empty lines skipped.</summary>
    internal static List<string> TestSources(string dataDir)
    {
        var sources = File.ReadLines(Path.Combine(dataDir, "test.tsv"))
            .Select(line => line.Split('\t')[0].Trim())
            .Where(source => source.Length > 0)
            .ToList();
        if (sources.Count == 0) throw new InvalidOperationException($"{dataDir}/test.tsv has no sentences");
        return sources;
    }

    /// <summary>A checkpoint directory to serve; deletes it on dispose if it was trained into a temporary directory.</summary>
    internal sealed class ModelDirectory(string path, bool temporary, string description) : IDisposable
    {
        public string Path { get; } = path;

        public string Description { get; } = description;

        public void Dispose()
        {
            if (temporary && Directory.Exists(System.IO.Path.GetDirectoryName(Path)))
                Directory.Delete(System.IO.Path.GetDirectoryName(Path)!, recursive: true);
        }
    }

    private static bool IsCheckpoint(string dir) => File.Exists(Path.Combine(dir, "config.json")) && File.Exists(Path.Combine(dir, "model.safetensors"));

    internal static async Task<ModelDirectory> PrepareModel(Settings s, BenchEnvironment env)
    {
        if (s.Model is { } given && IsCheckpoint(given))
            return new ModelDirectory(Path.GetFullPath(given), temporary: false, $"checkpoint `{given}` (given)");
        bool temporary = s.Model is null;
        string dir = s.Model is { } target ? Path.GetFullPath(target)
            : Path.Combine(Path.GetTempPath(), "transduce-bench-" + Guid.NewGuid().ToString("N"), "model");
        string train = Path.Combine(env.DataDir, "train.tsv");
        string[] args =
        [
            "train", "--data", train, "--max-pairs", s.TrainPairs.ToString(Inv), "--model", "gru", "--embed", "256", "--hidden", "256",
            "--layers", "2", "--dropout", "0.2", "--epochs", "1000", "--batch-size", "64", "--lr", "0.005", "--seed", "1",
            "--time-limit", s.TrainMinutes.ToString(Inv), "--out", dir,
        ];
        Console.Error.WriteLine($"[bench] training: dotnet {Path.GetFileName(env.Cli)} {string.Join(' ', args)}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(env.Cli);
        foreach (string a in args) psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0 || !IsCheckpoint(dir))
            throw new InvalidOperationException($"training failed (exit {p.ExitCode}):\n{Tail(await stdout)}\n{Tail(await stderr)}");
        Console.Error.WriteLine($"[bench] trained in {clock.Elapsed.TotalSeconds:F0} s into {dir}");
        string shown = string.Join(' ', args.Skip(1).Select(a => a == train ? "train.tsv" : a == dir ? "DIR" : a));
        string description = string.Create(Inv,
            $"trained by the benchmark on the first {s.TrainPairs:N0} pairs of `train.tsv` in {clock.Elapsed.TotalSeconds:F0} s (`transduce train {shown}`)");
        return new ModelDirectory(dir, temporary, description);
    }

    private static string Tail(string text) => text.Length <= 4000 ? text : "…" + text[^4000..];
}
