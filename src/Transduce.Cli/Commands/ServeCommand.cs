using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Serving;

namespace Transduce.Cli.Commands;

internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint directory.", Required = true };
        var urls = new Option<string>("--urls") { Description = "Loopback address(es) to listen on, ';'-separated; port 0 picks a free one.", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
        var window = new Option<double>("--batch-window-ms") { Description = "How long to gather concurrent requests into one batch.", DefaultValueFactory = _ => 5 };
        var maxBatch = new Option<int>("--max-batch") { Description = "Sentences decoded together at most.", DefaultValueFactory = _ => 64 };
        var queueLimit = new Option<int>("--queue-limit") { Description = "Sentences waiting at most; beyond it requests get 503.", DefaultValueFactory = _ => 1024 };
        var maxSentences = new Option<int>("--max-sentences") { Description = "Sentences per request at most.", DefaultValueFactory = _ => 64 };
        var maxChars = new Option<int>("--max-chars") { Description = "Characters per sentence at most.", DefaultValueFactory = _ => 1000 };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Request body size at most.", DefaultValueFactory = _ => 1 << 20 };
        var timeout = new Option<double>("--timeout-s") { Description = "Seconds a request may take, queueing included (then 504).", DefaultValueFactory = _ => 30 };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var computeType = new Option<string?>("--compute-type") { Description = "Number type of the decoder's products: float32, bfloat16 or int8 (default: the checkpoint's, else float32)." };
        computeType.AcceptOnlyFromAmong([.. Models.ComputeTypes.Names]);
        var command = new Command("serve", "Serve translations over HTTP on loopback: POST /v1/translate, GET /v1/models, /healthz, /metrics, and a web page at /.")
        {
            model, urls, window, maxBatch, queueLimit, maxSentences, maxChars, maxBody, timeout, threads, computeType,
        };
        command.SetAction(r =>
        {
            var options = new ServeOptions
            {
                BatchWindow = TimeSpan.FromMilliseconds(r.GetValue(window)),
                MaxBatch = r.GetValue(maxBatch), QueueLimit = r.GetValue(queueLimit),
                MaxSentences = r.GetValue(maxSentences), MaxChars = r.GetValue(maxChars), MaxBodyBytes = r.GetValue(maxBody),
                Timeout = TimeSpan.FromSeconds(r.GetValue(timeout)),
                ComputeType = r.GetValue(computeType) is { } type ? Models.ComputeTypes.Parse(type) : null,
            };
            options.Validate();
            var endpoints = ServingApp.ParseLoopbackUrls(r.GetValue(urls)!);
            if (r.GetValue(threads) is int n) TorchSharp.torch.set_num_threads(n);

            string directory = r.GetValue(model)!;
            var translator = Translator.Load(directory);
            if (options.ComputeType is { } chosen)
            {
                Models.ComputeTypes.Apply(translator.Checkpoint.Model, chosen); // fails now, not at the first request
                translator.ComputeType = chosen;
            }
            using var backend = new TranslatorBackend(translator);
            var info = ModelInfo.From(backend.Translator.Checkpoint, directory);
            using var app = ServingApp.Build(options, backend, info, endpoints);
            app.StartAsync().GetAwaiter().GetResult();
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            foreach (var address in addresses)
                Console.WriteLine($"serving {info.Architecture} checkpoint {info.Id} ({info.SourceLanguage} → {info.TargetLanguage}) on {address}");
            Console.Out.Flush();
            app.WaitForShutdown();   // Ctrl+C or SIGTERM: stop taking requests, finish the queued ones, exit 0
            return 0;
        });
        return command;
    }
}
