using System.CommandLine;
using System.Diagnostics;
using Transduce.Architecture;
using Transduce.Checkpoints;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// <c>Transduce.Bench encoder</c>: milliseconds to encode one source batch in eval mode, per batch size, on a synthetic
/// checkpoint. Run it with <c>--kernels modules</c> for the modules' path (libtorch's <c>linear</c>, MKL)
/// and without for the packed one (<see cref="Models.Transformer.TransformerEncodePlan"/>, oneDNN).
/// </summary>
internal static class EncoderBench
{
    public static Command Create()
    {
        var synthetic = new Option<string>("--synthetic") { Description = $"Synthetic model: {string.Join(", ", Synthetic.Names)}.", DefaultValueFactory = _ => "base-cpu" };
        var cache = new Option<string>("--cache") { Description = "Where synthetic checkpoints are written (and reused).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "transduce-synthetic") };
        var batches = new Option<string>("--batches") { Description = "Batch sizes, comma-separated.", DefaultValueFactory = _ => "1,8,32,64" };
        var sourceTokens = new Option<int>("--source-tokens") { Description = "Tokens of every source.", DefaultValueFactory = _ => 40 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads.", DefaultValueFactory = _ => 2 };
        var kernels = new Option<string>("--kernels") { Description = $"Decoding kernels, comma-separated: {string.Join(", ", Models.DecodingKernels.Names)}.", DefaultValueFactory = _ => "auto" };
        var command = new Command("encoder", "Milliseconds per encoded source batch (eval mode), per batch size.") { synthetic, cache, batches, sourceTokens, threads, kernels };
        command.SetAction(r =>
        {
            set_num_threads(r.GetValue(threads));
            string name = r.GetValue(synthetic)!;
            using var checkpoint = Synthetic.Create(name, Path.Combine(r.GetValue(cache)!, name));
            var model = checkpoint.Model;
            model.eval();
            var chosenKernels = Models.DecodingKernels.Parse(r.GetValue(kernels)!);
            chosenKernels.Apply(model);
            var encoder = (Encoder)model.GetType().GetProperty("Encoder")!.GetValue(model)!;
            long steps = r.GetValue(sourceTokens);
            Console.WriteLine($"{name}: {steps} source tokens, {get_num_threads()} thread(s), kernels {chosenKernels.Name}");
            using var grad = inference_mode();
            foreach (long batch in r.GetValue(batches)!.Split(',').Select(long.Parse))
            {
                using var scope = NewDisposeScope();
                manual_seed(1);
                var source = randint(4, 500, [batch, steps]);
                var lengths = full(batch, steps, ScalarType.Int64);
                for (int i = 0; i < 3; i++) encoder.call(source, lengths).Outputs.Dispose();
                double best = double.MaxValue;
                for (int window = 0; window < 5; window++)
                {
                    int calls = 0;
                    var clock = Stopwatch.StartNew();
                    while (clock.Elapsed.TotalSeconds < 0.3)
                    {
                        encoder.call(source, lengths).Outputs.Dispose();
                        calls++;
                    }
                    best = Math.Min(best, clock.Elapsed.TotalMilliseconds / calls);
                }
                Console.WriteLine($"batch {batch}: {best:F2} ms per batch");
            }
            return 0;
        });
        return command;
    }
}
