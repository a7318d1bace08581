using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Transduce.Models;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// The two pieces of a training step that issue 27 replaced, timed alone at a preset's sizes, each against its reference
/// in alternation: the loss with its backward pass over (tokens × vocabulary) bfloat16 logits (autograd's against
/// <see cref="Seq2SeqLoss.Backward"/> fused), and clipping + Adam + zeroing over the model's parameters (TorchSharp's
/// per tensor against <see cref="FlatAdam"/>). Minima over many rounds: on a shared machine the fastest round is the
/// one least disturbed.
/// </summary>
internal static class StepPartsBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The <c>train-parts</c> command.</summary>
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "Preset whose model sizes are used.", DefaultValueFactory = _ => "transformer-base-cpu" };
        var tokens = new Option<int>("--tokens") { Description = "Target positions of the logits (rows).", DefaultValueFactory = _ => 4096 };
        var vocabulary = new Option<int>("--vocabulary") { Description = "Output vocabulary (columns).", DefaultValueFactory = _ => 8000 };
        var rounds = new Option<int>("--rounds") { Description = "Alternated rounds of each piece.", DefaultValueFactory = _ => 15 };
        var chunk = new Option<long>("--chunk") { Description = "Logits per chunk of the fused loss.", DefaultValueFactory = _ => Seq2SeqLoss.FusedChunkValues };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads.", DefaultValueFactory = _ => 2 };
        var command = new Command("train-parts", "The fused loss and the flat Adam of a training step against their reference paths, alternated (minimum and median ms).")
        {
            preset, tokens, vocabulary, rounds, threads, chunk,
        };
        command.SetAction(r => Run(r.GetValue(preset)!, r.GetValue(tokens), r.GetValue(vocabulary), Math.Max(1, r.GetValue(rounds)), r.GetValue(threads), r.GetValue(chunk)));
        return command;
    }

    private static int Run(string presetName, int tokens, int vocabulary, int rounds, int threads, long chunk)
    {
        set_num_threads(threads);
        manual_seed(1);
        var preset = RunConfig.FromPreset(presetName);
        var config = preset.Model.ToModelConfig(vocabulary, vocabulary, 0);

        // The loss: bf16 logits as the autocast output layer makes them, 3 % padding.
        using var logits = randn(tokens, vocabulary).mul_(3).to_type(ScalarType.BFloat16);
        using var labels = randint(1, vocabulary, [1, tokens]).masked_fill(rand(1, tokens).lt(0.03), 0);
        double Loss(bool fused)
        {
            using var scope = NewDisposeScope();
            using var leaf = logits.detach().requires_grad_(true);
            var clock = Stopwatch.StartNew();
            Seq2SeqLoss.Backward(leaf.reshape(1, tokens, vocabulary), labels, 0, preset.Training.LabelSmoothing, 1, fused, chunk);
            return clock.Elapsed.TotalMilliseconds;
        }

        // The update: two copies of the model with the same gradients, one per optimiser.
        (List<TorchSharp.Modules.Parameter>, TorchSharp.Modules.Adam) Model()
        {
            manual_seed(2);
            var model = ModelRegistry.Create(config);
            var parameters = Trainer.DistinctParameters(model);
            return (parameters, optim.Adam(parameters, lr: preset.Training.LearningRate));
        }
        var (plain, adam) = Model();
        var (flatParameters, flatAdam) = Model();
        using var flat = FlatAdam.TryCreate(flatAdam, flatParameters) ?? throw new InvalidOperationException("FlatAdam refused the model");
        foreach (var p in plain) p.grad = randn_like(p);
        double Update(bool isFlat)
        {
            using var scope = NewDisposeScope();
            if (isFlat)
            {
                using (no_grad()) flatParameters.ForEach(p => p.grad!.normal_());
                var clock = Stopwatch.StartNew();
                flat.ClipGradNorm(preset.Training.GradientClip);
                flat.Step();
                flat.ZeroGrad();
                return clock.Elapsed.TotalMilliseconds;
            }
            else
            {
                using (no_grad()) plain.ForEach(p => p.grad!.normal_());
                var clock = Stopwatch.StartNew();
                nn.utils.clip_grad_norm_(plain, preset.Training.GradientClip);
                adam.step();
                adam.zero_grad();
                return clock.Elapsed.TotalMilliseconds;
            }
        }

        var times = new Dictionary<string, List<double>> { ["loss, autograd"] = [], ["loss, fused"] = [], ["update, per tensor"] = [], ["update, flat"] = [] };
        for (int round = 0; round < rounds + 1; round++)
        {
            bool odd = round % 2 == 1;
            var order = new (string, Func<double>)[]
            {
                ("loss, autograd", () => Loss(false)), ("loss, fused", () => Loss(true)),
                ("update, per tensor", () => Update(false)), ("update, flat", () => Update(true)),
            };
            foreach (var (name, run) in odd ? order.Reverse() : order)
            {
                double ms = run();
                if (round > 0) times[name].Add(ms);   // round 0 warms up
            }
        }
        Console.WriteLine(string.Create(Inv, $"Step pieces at `{presetName}`'s sizes ({flat.Count:N0} parameters in {flatParameters.Count} tensors; " +
                                             $"logits {tokens:N0} × {vocabulary:N0} bf16, label smoothing {preset.Training.LabelSmoothing}, fused in chunks of {chunk:N0} logits); {threads} threads; " +
                                             $"{rounds} alternated rounds after one of warm-up; milliseconds."));
        Console.WriteLine();
        Console.WriteLine("| piece | minimum | median |");
        Console.WriteLine("| --- | ---: | ---: |");
        foreach (var (name, list) in times)
        {
            var sorted = list.Order().ToList();
            Console.WriteLine(string.Create(Inv, $"| {name} | {sorted[0]:F1} | {sorted[sorted.Count / 2]:F1} |"));
        }
        adam.Dispose();
        flatAdam.Dispose();
        return 0;
    }
}
