using System.CommandLine;
using Transduce.Checkpoints;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// Decoding throughput on test.tsv — greedy and beam, batch 1 and batch 64, incremental and recompute-prefix — for a
/// Transformer and a GRU checkpoint, measured side by side with the PyTorch twin (bench/pytorch/infer_twin.py) in the
/// same run, with the tokens of both compared; for a Transformer also the ONNX Runtime twin (<see cref="OrtTwin"/>), incremental modes.
/// </summary>
internal static class InferBench
{
    /// <summary>What one run is asked to do.</summary>
    internal sealed record Settings
    {
        public string? Transformer { get; init; }
        public string? Gru { get; init; }
        public required string Data { get; init; }
        public int Threads { get; init; }
        public int Batch1Sentences { get; init; }
        public int? MaxSentences { get; init; }
        public int Batch { get; init; }
        public int Beam { get; init; }
        public bool Twin { get; init; }
        public bool Ort { get; init; }
        public bool Recompute { get; init; } = true;
        public double PeakSeconds { get; init; }
        public string? Out { get; init; }
    }

    /// <summary>One checkpoint's measurements: Transduce's and (unless skipped) the twin's, per mode.</summary>
    internal sealed record ModelRun(string Label, string Directory, Models.ModelConfig Config, int[] SourceSteps,
        IReadOnlyList<ModeResult> Ours, TwinDecoder.Result? Twin,
        TwinDecoder.Result? Ort);

    /// <summary>The <c>infer</c> command.</summary>
    public static Command Create()
    {
        var transformer = new Option<string?>("--transformer") { Description = "Transformer checkpoint directory." };
        var gru = new Option<string?>("--gru") { Description = "GRU checkpoint directory." };
        var data = new Option<string>("--data") { Description = "Test file (source<TAB>reference); sources are decoded.", DefaultValueFactory = _ => "../shared/data/fra-eng/test.tsv" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads, for Transduce and the twin alike.", DefaultValueFactory = _ => 2 };
        var batch1 = new Option<int>("--batch1-sentences") { Description = "Batch-1 modes decode only N sentences, spread evenly over the file (they are slow).", DefaultValueFactory = _ => 200 };
        var maxSentences = new Option<int?>("--max-sentences") { Description = "Use only the first N sentences of the test file (quick trials)." };
        var batch = new Option<int>("--batch") { Description = "The large batch size.", DefaultValueFactory = _ => 64 };
        var beam = new Option<int>("--beam") { Description = "Beam size of the beam-search modes.", DefaultValueFactory = _ => 4 };
        var noTwin = new Option<bool>("--no-twin") { Description = "No PyTorch twin." };
        var noOrt = new Option<bool>("--no-ort") { Description = "No ONNX Runtime twin (bench/pytorch/export_onnx.py, Transformers only)." };
        var noRecompute = new Option<bool>("--no-recompute") { Description = "Incremental modes only (e.g. every sentence at batch 1 against the ORT twin)." };
        var peakSeconds = new Option<double>("--peak-seconds") { Description = "Seconds per matrix size when measuring the matmul peak.", DefaultValueFactory = _ => 2 };
        var output = new Option<string?>("--out") { Description = "Also write the Markdown report to this file." };
        var command = new Command("infer", "Decoding throughput, side by side with the PyTorch twin.")
        {
            transformer, gru, data, threads, batch1, maxSentences, batch, beam, noTwin, noOrt, noRecompute, peakSeconds, output,
        };
        command.SetAction(r =>
        {
            var settings = new Settings
            {
                Transformer = r.GetValue(transformer), Gru = r.GetValue(gru), Data = r.GetValue(data)!,
                Threads = r.GetValue(threads), Batch1Sentences = r.GetValue(batch1), MaxSentences = r.GetValue(maxSentences),
                Batch = r.GetValue(batch), Beam = r.GetValue(beam), Twin = !r.GetValue(noTwin), Ort = !r.GetValue(noOrt), Recompute = !r.GetValue(noRecompute),
                PeakSeconds = r.GetValue(peakSeconds), Out = r.GetValue(output),
            };
            if (settings.Transformer is null && settings.Gru is null)
            {
                Console.Error.WriteLine("error: give --transformer and/or --gru");
                return 2;
            }
            if (settings.Threads < 1 || settings.Batch < 2 || settings.Beam < 2 || settings.Batch1Sentences < 1)
            {
                Console.Error.WriteLine("error: --threads and --batch1-sentences must be at least 1, --batch and --beam at least 2");
                return 2;
            }
            try
            {
                Run(settings);
                return 0;
            }
            catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException or CorpusFormatException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    private static void Run(Settings s)
    {
        set_num_threads(s.Threads);
        var read = ParallelCorpus.Read(s.Data, new CorpusReadOptions { MaxPairs = s.MaxSentences });
        var sentences = read.Pairs.Select(p => p.Source).ToList();
        Log($"{sentences.Count} sentences from {s.Data}; {s.Threads} thread(s); measuring the matmul peak …");
        var peak = Hardware.MatmulPeak(s.PeakSeconds);
        Log($"matmul peak {peak.GFlops:F1} GFLOP/s (n = {peak.Size})");

        var runs = new List<ModelRun>();
        foreach (var (label, directory) in new[] { ("Transformer", s.Transformer), ("GRU", s.Gru) })
            if (directory is not null) runs.Add(Measure(label, directory, sentences, s));

        string report = InferReport.Markdown(s, sentences.Count, peak, runs, Environment.GetCommandLineArgs());
        Console.WriteLine(report);
        if (s.Out is not null) File.WriteAllText(s.Out, report);
    }

    private static ModelRun Measure(string label, string directory, IReadOnlyList<string> sentences, Settings s)
    {
        var modes = DecodeMode.All(s.Beam, s.Batch).Where(m => s.Recompute || !m.Recompute).ToList();
        using var checkpoint = Checkpoint.Load(directory);
        var decoder = new TransduceDecoder(checkpoint, sentences);
        var all = Enumerable.Range(0, sentences.Count).ToArray();
        var batch1 = Batch1Rows(sentences.Count, s.Batch1Sentences);
        var ours = new List<ModeResult>();
        foreach (var mode in modes)
        {
            var rows = mode.Batch == 1 ? batch1 : all;
            // Warm-up: one batch's worth of sentences (three at batch 1), untimed — the twin does the same.
            var result = decoder.Run(mode, rows, mode.Batch == 1 ? 3 : mode.Batch);
            Log($"{label} {mode.Name}: {rows.Length} sentences in {result.Seconds:F2} s, {result.Tokens / result.Seconds:F0} tokens/s; " +
                $"CPU {result.CpuSeconds:F2} s ({result.CpuSeconds * 1000 / result.Tokens:F2} ms per token)");
            ours.Add(result);
        }
        TwinDecoder.Result? twin = null;
        if (s.Twin)
        {
            Log($"{label}: running the PyTorch twin …");
            twin = TwinDecoder.Run(directory, decoder, modes, s.Threads, batch1);
        }
        TwinDecoder.Result? ort = null;
        if (s.Ort && checkpoint.ModelConfig is Models.Transformer.TransformerConfig)
        {
            Log($"{label}: running the ONNX Runtime twin …");
            ort = OrtTwin.Run(OrtTwin.Export(directory), decoder.Sources, decoder.MaxLengths, modes.Where(m => !m.Recompute).ToList(), s.Threads,
                batch1, decoder.OrtFraming(s.Beam));
        }
        var steps = Enumerable.Range(0, sentences.Count).Select(decoder.SourceSteps).ToArray();
        return new ModelRun(label, directory, checkpoint.ModelConfig, steps, ours, twin, ort);
    }

    /// <summary>
    /// The sentences of the batch-1 rows: <paramref name="wanted"/> spread evenly over the file rather than its first
    /// ones, because test.tsv (like fra.txt) runs from the shortest sentences to the longest.
    /// </summary>
    internal static int[] Batch1Rows(int count, int wanted)
    {
        int n = Math.Min(count, wanted);
        return Enumerable.Range(0, n).Select(i => (int)((long)i * count / n)).ToArray();
    }

    private static void Log(string message) => Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {message}");
}
