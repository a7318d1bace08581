using System.CommandLine;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Transduce.Translation;
using Transduce.Inference;
using Transduce.Serving;

namespace Transduce.Cli.Commands;

internal static class ServeCommand
{
    public static Command Create()
    {
        var defaults = new ServeOptions();
        var model = new Option<string[]>("--model")
        {
            Description = "Checkpoint directory (or MarianMT folder) to serve, as DIR or NAME=DIR; repeat for several models (the first is the default). " +
                "Without NAME, the directory's name is used.",
            Required = true, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false,
        };
        var urls = new Option<string>("--urls") { Description = "Address(es) to listen on, ';'-separated; port 0 picks a free one. Loopback only unless --allow-remote.", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
        var allowRemote = new Option<bool>("--allow-remote") { Description = "Accept non-loopback addresses in --urls (0.0.0.0, [::], *, an interface's IP): for containers and load balancers. Prints a warning; pair it with --api-key-file and TLS in front." };
        var allowedHosts = new Option<string?>("--allowed-hosts") { Description = "Host header values to answer, ';'-separated (others get 400). [default: localhost and the loopback addresses for a loopback service, any host with --allow-remote]" };
        var apiKeyFile = new Option<string?>("--api-key-file") { Description = $"File holding an API key (at least {ServeOptions.MinApiKeyLength} characters); /v1/* and /metrics then need 'Authorization: Bearer <key>'." };
        var window = new Option<double>("--batch-window-ms") { Description = "How long an idle service gathers concurrent requests into one batch (only once requests have been coming together; a lone request starts at once).", DefaultValueFactory = _ => defaults.BatchWindow.TotalMilliseconds };
        var maxBatch = new Option<int>("--max-batch") { Description = "Sentences decoded together at most.", DefaultValueFactory = _ => defaults.MaxBatch };
        var maxBatchCost = new Option<long>("--max-batch-cost") { Description = "Estimated cost of one decoder call at most; large requests are decoded a slice at a time, taking turns with small ones.", DefaultValueFactory = _ => defaults.MaxBatchCost };
        var queueLimit = new Option<int>("--queue-limit") { Description = "Sentences waiting per model at most; beyond it requests get 503.", DefaultValueFactory = _ => defaults.QueueLimit };
        var maxSentences = new Option<int>("--max-sentences") { Description = "Sentences per request at most.", DefaultValueFactory = _ => defaults.MaxSentences };
        var maxChars = new Option<int>("--max-chars") { Description = "Characters per sentence at most.", DefaultValueFactory = _ => defaults.MaxChars };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Request body size at most.", DefaultValueFactory = _ => defaults.MaxBodyBytes };
        var maxBeam = BeamFlags.WithDefault("--max-beam", "Largest beam and n-best a request may ask for.", defaults.MaxBeam);
        var maxOutputTokens = new Option<int>("--max-output-tokens") { Description = "Output tokens per sentence at most, whatever its length.", DefaultValueFactory = _ => defaults.MaxOutputTokens };
        var maxOutputRatio = new Option<double>("--max-output-ratio") { Description = "Output tokens per sentence at most: ratio × (source tokens + 1) + --max-output-extra.", DefaultValueFactory = _ => defaults.MaxOutputRatio };
        var maxOutputExtra = new Option<int>("--max-output-extra") { Description = "The constant of the output limit.", DefaultValueFactory = _ => defaults.MaxOutputExtra };
        var maxRequestCost = new Option<long>("--max-request-cost") { Description = "Estimated cost of one request at most (per sentence: max(beam, n_best) × (source positions + output limit + 1)); more: 413, or 422 when a smaller beam would fit.", DefaultValueFactory = _ => defaults.MaxRequestCost };
        var maxInflightCost = new Option<long>("--max-inflight-cost") { Description = "Estimated cost of all admitted, unanswered requests at most (every model together); more: 503 with Retry-After.", DefaultValueFactory = _ => defaults.MaxInflightCost };
        var maxAttentionCells = new Option<long>("--max-attention-cells") { Description = "Attention weights one response may carry.", DefaultValueFactory = _ => defaults.MaxAttentionCells };
        var maxConnections = new Option<long>("--max-connections") { Description = "Open connections at most.", DefaultValueFactory = _ => defaults.MaxConnections };
        var timeout = new Option<double>("--timeout-s") { Description = "Seconds a request may take, queueing included (then 504, and its decoding stops).", DefaultValueFactory = _ => defaults.Timeout.TotalSeconds };
        var shutdownTimeout = new Option<double?>("--shutdown-timeout-s") { Description = "Seconds a stop (SIGTERM, Ctrl+C) waits for admitted requests before it stops the decoders. [default: --timeout-s + 5]" };
        var noWarmUp = new Option<bool>("--no-warmup") { Description = "Start serving without first decoding a few sentences in the usual shapes (the first requests then pay for first-decode set-up)." };
        var logFormat = new Option<string>("--log-format") { Description = "Log format on standard error: text or json.", DefaultValueFactory = _ => "text" };
        CliValues.OneOf(logFormat, CliValues.Names<ServeLogFormat>());
        var logText = new Option<bool>("--log-text") { Description = "Also log the sentences and their translations (off: only counts, timings and costs)." };
        var noRequestLog = new Option<bool>("--no-request-log") { Description = "Do not log each request." };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var computeType = ComputeTypeFlag.Create(ComputeTypeFlag.Decoding("each checkpoint's"));
        var kernels = KernelFlags.Create();
        var command = new Command("serve", "Serve translations over HTTP: POST /v1/translate, GET /v1/models, /healthz, /metrics, the OpenAPI document at /openapi/v1.json, and a web page at /.")
        {
            model, urls, allowRemote, allowedHosts, apiKeyFile, window, maxBatch, maxBatchCost, queueLimit, maxSentences, maxChars, maxBody, maxBeam,
            maxOutputTokens, maxOutputRatio, maxOutputExtra, maxRequestCost, maxInflightCost, maxAttentionCells, maxConnections, timeout,
            shutdownTimeout, noWarmUp, logFormat, logText, noRequestLog, threads, computeType, kernels,
        };
        command.SetAction(r =>
        {
            var options = new ServeOptions
            {
                BatchWindow = TimeSpan.FromMilliseconds(r.GetValue(window)),
                MaxBatch = r.GetValue(maxBatch), MaxBatchCost = r.GetValue(maxBatchCost), QueueLimit = r.GetValue(queueLimit),
                MaxSentences = r.GetValue(maxSentences), MaxChars = r.GetValue(maxChars), MaxBodyBytes = r.GetValue(maxBody),
                MaxBeam = r.GetValue(maxBeam), MaxOutputTokens = r.GetValue(maxOutputTokens), MaxOutputRatio = r.GetValue(maxOutputRatio),
                MaxOutputExtra = r.GetValue(maxOutputExtra), MaxRequestCost = r.GetValue(maxRequestCost), MaxInflightCost = r.GetValue(maxInflightCost),
                MaxAttentionCells = r.GetValue(maxAttentionCells), MaxConnections = r.GetValue(maxConnections),
                Timeout = TimeSpan.FromSeconds(r.GetValue(timeout)),
                ShutdownTimeout = r.GetValue(shutdownTimeout) is double s ? TimeSpan.FromSeconds(s) : null,
                WarmUp = !r.GetValue(noWarmUp),
                AllowRemote = r.GetValue(allowRemote),
                AllowedHosts = r.GetValue(allowedHosts) is { } hosts
                    ? hosts.Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : null,
                ApiKey = r.GetValue(apiKeyFile) is { } keyFile ? ReadApiKey(keyFile) : null,
                LogFormat = CliValues.Parse<ServeLogFormat>(r.GetValue(logFormat)!), LogText = r.GetValue(logText), LogRequests = !r.GetValue(noRequestLog),
                ComputeType = ComputeTypeFlag.Read(r, computeType),
                Kernels = KernelFlags.Read(r, kernels), KeepFreedMemory = true,
            };
            // A limit out of range, or two that contradict each other, is a mistake in the command line: a usage error,
            // said before any model loads.
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                return CliProgram.RefuseValues(r, e.Message);
            }
            var endpoints = ListenAddresses.Parse(r.GetValue(urls)!, options.AllowRemote);
            var specs = (r.GetValue(model) ?? []).Select(ParseModelArgument).ToArray();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, _) in specs)
                if (!names.Add(name)) throw new ArgumentException($"--model: the name '{name}' is given twice; name them NAME=DIR");
            if (r.GetValue(threads) is int n) TorchSharp.torch.set_num_threads(n);

            // The models load as the app is built (one translator per directory: a directory served under two names shares
            // its weights) and go with the app, after its decoder threads.
            var transduce = new TransduceOptions { Serve = options };
            foreach (var (name, directory) in specs) transduce.AddModel(name, directory);
            KernelFlags.Print(Console.Out, options.Kernels);
            using var app = ServingApp.Build(transduce, endpoints);
            app.StartAsync().GetAwaiter().GetResult();
            var served = ServingApp.Models(app);
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            foreach (var m in served)
                Console.WriteLine($"model '{m.Name}': {m.Info.Architecture} checkpoint {m.Info.Id} ({m.Info.SourceLanguage} → {m.Info.TargetLanguage})"
                    + (m == served[0] ? ", the default" : ""));
            foreach (string address in addresses)
                Console.WriteLine($"OpenAPI document: {address.TrimEnd('/')}{ServingApp.OpenApiPath}");
            foreach (string address in addresses)
                Console.WriteLine($"serving {Describe(served)} on {address}");
            Console.Out.Flush();
            if (!ListenAddresses.AllLoopback(endpoints))
                Console.Error.WriteLine($"warning: listening on {string.Join(", ", endpoints.Where(e => !IPAddress.IsLoopback(e.Address)))}, which other machines can reach (--allow-remote); " +
                    (options.ApiKey is null ? "there is no API key (--api-key-file), so anyone who can connect can use it; " : "requests need the API key; ") +
                    "traffic is plain HTTP: put TLS in front");
            app.WaitForShutdown();   // Ctrl+C or SIGTERM: stop taking requests, finish the admitted ones, stop the decoders, exit 0
            return 0;
        });
        return command;
    }

    private static string Describe(IReadOnlyList<ServedModel> served) => served.Count == 1
        ? $"{served[0].Info.Architecture} checkpoint {served[0].Info.Id} ({served[0].Info.SourceLanguage} → {served[0].Info.TargetLanguage})"
        : $"{served.Count} models ({string.Join(", ", served.Select(m => m.Name))})";

    /// <summary>
    /// <c>NAME=DIR</c>, or <c>DIR</c> (named after the directory). A value that is an existing directory is always a
    /// directory, even if it contains '='.
    /// </summary>
    internal static (string Name, string Directory) ParseModelArgument(string value)
    {
        int eq = value.IndexOf('=');
        if (eq > 0 && !Directory.Exists(value))
        {
            string name = value[..eq], directory = value[(eq + 1)..];
            if (!ServedModel.IsValidName(name))
                throw new ArgumentException($"--model {value}: '{name}' is not a model name (1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)");
            if (directory.Length == 0) throw new ArgumentException($"--model {value}: no directory after '='");
            return (name, directory);
        }
        string leaf = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(value)));
        var cleaned = new string(leaf.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '-').ToArray()).TrimStart('.', '_', '-');
        if (cleaned.Length > 64) cleaned = cleaned[..64];
        return (ServedModel.IsValidName(cleaned) ? cleaned : "default", value);
    }

    /// <summary>The key in <paramref name="path"/> (surrounding whitespace removed); one clear line if it is missing or unfit.</summary>
    private static string ReadApiKey(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--api-key-file {path}: no such file");
        if (new FileInfo(path).Length > 4096) throw new ArgumentException($"--api-key-file {path}: more than 4 KiB; the file should hold the key alone");
        string key = File.ReadAllText(path).Trim();
        if (key.Length < ServeOptions.MinApiKeyLength || key.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            throw new ArgumentException($"--api-key-file {path}: the key must be one line of at least {ServeOptions.MinApiKeyLength} characters without spaces");
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
            Console.Error.WriteLine($"warning: --api-key-file {path} can be read by every user of this machine (chmod 600 it)");
        return key;
    }
}
