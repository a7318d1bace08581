using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Bench;

/// <summary>
/// The cost of one decoding step: wall time, tensors created (TorchSharp's per-thread statistics: every tensor a native
/// call returns) and managed bytes allocated, per step. Each figure is the difference between decoding the same sources
/// to a long and to a short fixed output length (<see cref="FixedLength"/>), divided by the extra steps, so the encoder,
/// the state set-up and the search's start-up cancel out. Native calls per step are counted outside the process with
/// uprobes (bench/profile-step.sh).
/// </summary>
internal static class StepProfile
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint directory (default: a synthetic model, see --synthetic)." };
        var synthetic = new Option<string>("--synthetic") { Description = $"Synthetic model when no --model: {string.Join(", ", Synthetic.Names)}.", DefaultValueFactory = _ => "base-cpu" };
        var cache = new Option<string>("--cache") { Description = "Where synthetic checkpoints are written (and reused).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "transduce-synthetic") };
        var batch = new Option<int>("--batch") { Description = "Sentences per batch.", DefaultValueFactory = _ => 1 };
        var beam = new Option<int>("--beam") { Description = "Beam size (1: greedy).", DefaultValueFactory = _ => 1 };
        var tokens = new Option<int>("--tokens") { Description = "Output tokens of the long run (the short run emits a quarter).", DefaultValueFactory = _ => 64 };
        var sourceTokens = new Option<int>("--source-tokens") { Description = "Source length.", DefaultValueFactory = _ => 20 };
        var sentences = new Option<int>("--sentences") { Description = "Sentences decoded per run.", DefaultValueFactory = _ => 8 };
        var repeat = new Option<int>("--repeat") { Description = "Measurements (the report gives each).", DefaultValueFactory = _ => 3 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads.", DefaultValueFactory = _ => 2 };
        var computeType = new Option<string>("--compute-type") { Description = "float32, bfloat16 or int8.", DefaultValueFactory = _ => "float32" };
        var only = new Option<int?>("--only-tokens") { Description = "Decode once with exactly N output tokens per sentence and exit (for external counters)." };
        var keepFreed = new Option<bool>("--keep-freed-memory") { Description = "Keep freed native memory for reuse, as translate/evaluate/serve do (false: glibc's default, for comparison).", DefaultValueFactory = _ => true };
        var phases = new Option<bool>("--phases") { Description = "Also time each phase of the decoder step (embedding, norms, each product, attention, output projection; the rest is the search and glue)." };
        var kernels = new Option<string>("--kernels") { Description = $"Decoding kernels, comma-separated: {string.Join(", ", Models.DecodingKernels.Names)}.", DefaultValueFactory = _ => "auto" };
        var command = new Command("step", "Per-step cost of decoding: time, tensors created, managed allocations.")
        {
            model, synthetic, cache, batch, beam, tokens, sourceTokens, sentences, repeat, threads, computeType, only, keepFreed, kernels, phases,
        };
        command.SetAction(r =>
        {
            set_num_threads(r.GetValue(threads));
            if (r.GetValue(keepFreed)) Transduce.Native.NativeMemory.KeepFreedMemory(); // as translate/evaluate/serve do
            string? dir = r.GetValue(model);
            using var checkpoint = dir is not null ? Checkpoint.Load(dir)
                : Synthetic.Create(r.GetValue(synthetic)!, Path.Combine(r.GetValue(cache)!, r.GetValue(synthetic)!));
            Models.ComputeTypes.Apply(checkpoint.Model, Models.ComputeTypes.Parse(r.GetValue(computeType)!));
            var chosenKernels = Models.DecodingKernels.Parse(r.GetValue(kernels)!);
            chosenKernels.Apply(checkpoint.Model);
            var runner = new Runner(checkpoint, r.GetValue(batch), r.GetValue(beam), r.GetValue(sourceTokens), r.GetValue(sentences));
            if (r.GetValue(only) is int n)
            {
                runner.Decode(n);
                return 0;
            }
            int longRun = r.GetValue(tokens), shortRun = Math.Max(1, longRun / 4);
            Console.WriteLine($"{Describe(checkpoint)}; batch {runner.Batch}, beam {runner.Beam}, {runner.Sentences} sentences of {runner.SourceTokens} source tokens, " +
                $"{shortRun} vs {longRun} output tokens, {get_num_threads()} thread(s), {r.GetValue(computeType)}, kernels {chosenKernels.Name}");
            if (r.GetValue(phases)) Models.Transformer.StepPhases.Enable();
            runner.Decode(shortRun); // warm-up
            for (int i = 0; i < r.GetValue(repeat); i++)
            {
                var a = runner.Measure(shortRun);
                var b = runner.Measure(longRun);
                double steps = (double)(b.Steps - a.Steps);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"per step: {(b.Seconds - a.Seconds) * 1000 / steps:F3} ms wall, {(b.CpuSeconds - a.CpuSeconds) * 1000 / steps:F3} ms CPU (this thread), {(b.Tensors - a.Tensors) / steps:F1} tensors created, " +
                    $"{(b.ManagedBytes - a.ManagedBytes) / steps:F0} managed bytes, {(b.Gen0 - a.Gen0) / steps * 1000:F2} gen-0 GCs per 1000 steps"));
                if (r.GetValue(phases)) Console.WriteLine(PhaseLine(a, b, steps));
            }
            return 0;
        });
        return command;
    }

    /// <summary>Milliseconds per step in each phase (the long run's minus the short run's, per extra step) and the rest of the wall time.</summary>
    private static string PhaseLine(Cost a, Cost b, double steps)
    {
        var parts = Models.Transformer.StepPhases.All.Select((p, i) => (Name: p.ToString(), Ms: (b.Phases[i] - a.Phases[i]) * 1000 / steps)).ToList();
        double wall = (b.Seconds - a.Seconds) * 1000 / steps;
        parts.Add(("Rest", wall - parts.Sum(p => p.Ms)));
        return "phases (ms per step): " + string.Join(", ", parts.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Name} {p.Ms:F3}")));
    }

    private static string Describe(Checkpoint c) =>
        $"{c.ModelConfig.Architecture} {c.ModelConfig.Layers}+{(c.ModelConfig as Models.Transformer.TransformerConfig)?.DecoderLayerCount ?? c.ModelConfig.Layers} × " +
        $"{c.ModelConfig.HiddenSize}, vocabulary {c.ModelConfig.TargetVocabSize}";

    private sealed record Cost(double Seconds, double CpuSeconds, long Tensors, long ManagedBytes, int Gen0, long Steps, double[] Phases);

    private sealed class Runner
    {
        private readonly Checkpoint checkpoint;
        private readonly int[][] sources;

        public Runner(Checkpoint checkpoint, int batch, int beam, int sourceTokens, int sentences)
        {
            this.checkpoint = checkpoint;
            (Batch, Beam, SourceTokens, Sentences) = (batch, beam, sourceTokens, sentences);
            var random = new Random(1);
            int vocab = checkpoint.ModelConfig.SourceVocabSize;
            sources = Enumerable.Range(0, sentences).Select(_ => Enumerable.Range(0, sourceTokens).Select(_ => random.Next(4, vocab)).ToArray()).ToArray();
            checkpoint.Model.eval();
        }

        public int Batch { get; }
        public int Beam { get; }
        public int SourceTokens { get; }
        public int Sentences { get; }

        public Cost Measure(int tokens)
        {
            GC.Collect();
            var stats = TorchSharp.DisposeScopeManager.Statistics;
            long tensors = stats.CreatedInScopeCount + stats.CreatedOutsideScopeCount;
            long bytes = GC.GetAllocatedBytesForCurrentThread();
            int gen0 = GC.CollectionCount(0);
            double cpu = Cpu.ThreadSeconds();
            var phases = Models.Transformer.StepPhases.Seconds();
            var clock = Stopwatch.StartNew();
            long steps = Decode(tokens);
            clock.Stop();
            return new Cost(clock.Elapsed.TotalSeconds, Cpu.ThreadSeconds() - cpu, stats.CreatedInScopeCount + stats.CreatedOutsideScopeCount - tensors,
                GC.GetAllocatedBytesForCurrentThread() - bytes, GC.CollectionCount(0) - gen0, steps,
                Models.Transformer.StepPhases.Seconds().Zip(phases, (x, y) => x - y).ToArray());
        }

        /// <summary>Decodes every source to exactly <paramref name="tokens"/> output tokens; returns the decoder steps taken.</summary>
        public long Decode(int tokens)
        {
            var ids = new SpecialIds(checkpoint.TargetVocabulary.PadId, checkpoint.TargetVocabulary.BosId, checkpoint.TargetVocabulary.EosId);
            var srcIds = new SpecialIds(checkpoint.SourceVocabulary.PadId, checkpoint.SourceVocabulary.BosId, checkpoint.SourceVocabulary.EosId);
            var model = FixedLength.Of(checkpoint.Model, ids.Eos, tokens);
            var beam = new BeamSearchOptions { BeamSize = Beam };
            long steps = 0;
            foreach (var chunk in sources.Chunk(Batch))
            {
                using var scope = NewDisposeScope();
                var (src, lengths) = Batching.BuildSources(chunk, srcIds, null);
                var limits = Enumerable.Repeat(tokens, chunk.Length).ToArray();
                var outputs = Beam == 1
                    ? GreedySearch.Decode(model, src, lengths, ids, limits)
                    : BeamSearch.Decode(model, src, lengths, ids, limits, beam).Select(n => n[0].Tokens).ToArray();
                if (outputs.Any(o => o.Length != tokens))
                    throw new InvalidOperationException($"an output has {outputs.First(o => o.Length != tokens).Length} tokens, not {tokens}");
                steps += tokens + 1; // <bos> … the step that ends the sentence
            }
            return steps;
        }
    }
}
