using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Transduce.Models;
using Transduce.Native;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// <c>Transduce.Bench gemm</c>: one float32 linear product (x Wᵀ + b) at decoding's shapes through each kernel libtorch
/// offers here — <c>linear</c> (MKL), <c>addmm</c> over the transposed copy, oneDNN's inner product over a weight
/// reordered once (<see cref="OneDnnKernels"/>), and what <see cref="PackedLinear"/> picks — beside the PyTorch twin's
/// <c>linear</c> (OpenBLAS in Debian's python3-torch), in the same run; for one-row products also the managed panels of
/// the batch-1 step (<see cref="RowLinear"/>, one thread), and <see cref="PackedLinear"/> in bfloat16 (input and output
/// converted, as decoding calls it).
/// </summary>
internal static class GemmBench
{
    private static readonly string[] DefaultShapes =
    [
        "1x256x768", "1x256x1024", "1x1024x256", "1x512x1536", "1x256x8000", "1x256x17644", "8x256x17644",
        "32x256x17644", "128x256x17644", "32x512x768", "32x512x58101",
    ];

    public static Command Create()
    {
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads, both sides.", DefaultValueFactory = _ => 2 };
        var shapes = new Option<string[]>("--shapes") { Description = "Products as ROWSxINxOUT.", DefaultValueFactory = _ => DefaultShapes, AllowMultipleArgumentsPerToken = true };
        var noTwin = new Option<bool>("--no-twin") { Description = "Measure Transduce only." };
        var cpu = new Option<bool>("--cpu") { Description = "Time each call by the process's CPU time instead of wall time (on a busy machine, with --threads 1: the work, not the wait for a core)." };
        var command = new Command("gemm", "Microseconds per float32 linear product, per kernel, beside the PyTorch twin.") { threads, shapes, noTwin, cpu };
        command.SetAction(r =>
        {
            int n = r.GetValue(threads);
            set_num_threads(n);
            clock = r.GetValue(cpu) ? Cpu.ProcessSeconds : () => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
            var list = r.GetValue(shapes)!;
            var twin = r.GetValue(noTwin) ? [] : PythonTwin.Run("gemm_twin.py", [n.ToString(CultureInfo.InvariantCulture), .. list])
                .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => double.Parse(l.Split(' ')[3], CultureInfo.InvariantCulture)).ToArray();
            Console.WriteLine($"float32 products, {n} thread(s), µs per call (best of 5 windows{(r.GetValue(cpu) ? ", process CPU time" : "")}); GFLOP/s in brackets; oneDNN loaded: {OneDnnKernels.Available}");
            Console.WriteLine();
            Console.WriteLine("| rows × in → out | linear (MKL) | addmm, Wᵀ stored | oneDNN, reordered weight | PackedLinear | managed panels, 1 thread | PackedLinear bfloat16 | PyTorch 1.13 linear (OpenBLAS) | PackedLinear ÷ twin |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            using var grad = inference_mode();
            for (int i = 0; i < list.Length; i++)
            {
                var dims = list[i].Split('x').Select(long.Parse).ToArray();
                long rows = dims[0], inputs = dims[1], outputs = dims[2];
                using var scope = NewDisposeScope();
                var x = randn(rows, inputs);
                var w = randn(outputs, inputs);
                var b = randn(outputs);
                var wt = w.t().contiguous();
                using var packed = PackedLinear.Pack(ComputeType.Float32, [(w, b)]);
                using var half = PackedLinear.Pack(ComputeType.BFloat16, [(w, b)]);
                double flops = 2.0 * rows * inputs * outputs;
                string Cell(double us) => $"{us:F0} ({flops / us / 1e3:F0})";
                double linear = Best(() => nn.functional.linear(x, w, b));
                double transposed = Best(() => addmm(b, x, wt, 1, 1));
                string oneDnn = "—";
                if (OneDnnKernels.Available)
                {
                    var reordered = OneDnnKernels.Pack(w);
                    oneDnn = Cell(Best(() => OneDnnKernels.Linear(x, reordered, b)));
                }
                double chosen = Best(() => packed.Forward(x));
                string panels = rows == 1 && RowLinear.Supported ? Cell(Panels(w, b, x)) : "—";
                double bfloat16 = Best(() => half.Forward(x));
                string twinCell = i < twin.Length ? Cell(twin[i]) : "—";
                string ratio = i < twin.Length ? $"{twin[i] / chosen:F2}×" : "—";
                Console.WriteLine($"| {rows} × {inputs} → {outputs} | {Cell(linear)} | {Cell(transposed)} | {oneDnn} | {Cell(chosen)} | {panels} | {Cell(bfloat16)} | {twinCell} | {ratio} |");
            }
            return 0;
        });
        return command;
    }

    /// <summary>Microseconds per one-row product through <see cref="RowLinear"/>, on managed memory.</summary>
    private static unsafe double Panels(Tensor w, Tensor b, Tensor x)
    {
        using var linear = RowLinear.Pack([(w, b)]);
        var input = x.data<float>().ToArray();
        var output = new float[linear.PaddedOut];
        return Best(() =>
        {
            fixed (float* px = input, py = output) linear.Forward(px, py, null);
        });
    }

    /// <summary>Microseconds per call: the best of five 0.2-second windows after five warm-up calls.</summary>
    private static double Best(Func<Tensor> product) => Best(() => product().Dispose());

    /// <summary>Seconds on the clock the products are timed by: wall time, or with <c>--cpu</c> the process's CPU time.</summary>
    private static Func<double> clock = () => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;

    private static double Best(Action product)
    {
        for (int i = 0; i < 5; i++) product();
        double best = double.MaxValue;
        for (int window = 0; window < 5; window++)
        {
            long calls = 0;
            double start = clock(), elapsed = 0;
            while (elapsed < 0.2)
            {
                product();
                calls++;
                elapsed = clock() - start;
            }
            best = Math.Min(best, elapsed * 1e6 / calls);
        }
        return best;
    }
}
