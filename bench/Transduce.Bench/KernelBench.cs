using System.CommandLine;
using System.Diagnostics;
using Transduce.Models;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// <c>Transduce.Bench kernels</c>: the managed kernels of a decoding step against the libtorch calls they replace, at
/// decoding's shapes — one new position's attention (<see cref="PackedBlockOps.AttendOne"/> against
/// <see cref="PackedBlockOps.Attend"/>, float32 and bfloat16 caches) and greedy's pick
/// (<see cref="RowKernels.ArgMaxRows"/> against <c>max(-1)</c>). Each input is used as it is, warm in cache.
/// </summary>
internal static class KernelBench
{
    public static Command Create()
    {
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads.", DefaultValueFactory = _ => 2 };
        var command = new Command("kernels", "Microseconds per call of the managed step kernels and the libtorch calls they replace.") { threads };
        command.SetAction(r =>
        {
            set_num_threads(r.GetValue(threads));
            using var grad = inference_mode();
            Console.WriteLine($"{get_num_threads()} libtorch thread(s); managed kernels on one thread; µs per call (best of 5 windows)");
            Console.WriteLine();
            Console.WriteLine("| attention: rows × heads × cached positions, head 64 | libtorch (matmul, softmax, matmul) | managed, float32 cache | managed, bfloat16 cache |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (var (rows, heads, positions) in new[] { (1, 4, 20), (32, 8, 20), (32, 8, 64), (128, 8, 20) })
            {
                using var scope = NewDisposeScope();
                var qkv = randn(rows, 3 * heads * 64);
                var q = qkv.narrow(1, 0, heads * 64).view(rows, heads, 1, 64);
                var k = randn(rows, heads, positions, 64);
                var v = randn(rows, heads, positions, 64);
                var (kh, vh) = (k.to_type(ScalarType.BFloat16), v.to_type(ScalarType.BFloat16));
                var lengths = Enumerable.Repeat(positions, rows).ToArray();
                double libtorch = Best(() => PackedBlockOps.Attend(q, k, v, null, out _));
                double managed = Best(() => PackedBlockOps.AttendOne(qkv, k, v, lengths, heads, 64, weighted: false, out _));
                double half = Best(() => PackedBlockOps.AttendOne(qkv, kh, vh, lengths, heads, 64, weighted: false, out _));
                Console.WriteLine($"| {rows} × {heads} × {positions} | {libtorch:F0} | {managed:F0} | {half:F0} |");
            }
            Console.WriteLine();
            Console.WriteLine("| greedy pick: rows × vocabulary | libtorch max(-1), indices read | managed arg-max |");
            Console.WriteLine("| --- | ---: | ---: |");
            foreach (var (rows, vocabulary) in new[] { (1, 8000), (64, 8000), (32, 17644), (32, 58101) })
            {
                using var scope = NewDisposeScope();
                var logits = randn(rows, vocabulary);
                double libtorch = Best(() => { using var best = logits.max(-1).indexes; best.data<long>().ToArray(); });
                double managed = Best(() => { RowKernels.ArgMaxRows(logits); });
                Console.WriteLine($"| {rows} × {vocabulary} | {libtorch:F0} | {managed:F0} |");
            }
            return 0;
        });
        return command;
    }

    private static double Best(Func<Tensor> call) => Best(() => call().Dispose());

    /// <summary>Microseconds per call: the best of five 0.2-second windows after five warm-up calls.</summary>
    private static double Best(Action call)
    {
        for (int i = 0; i < 5; i++) call();
        double best = double.MaxValue;
        for (int window = 0; window < 5; window++)
        {
            long calls = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < 0.2)
            {
                using (NewDisposeScope()) call();
                calls++;
            }
            best = Math.Min(best, clock.Elapsed.TotalMilliseconds * 1000 / calls);
        }
        return best;
    }
}
