using System.CommandLine;
using System.Diagnostics;
using System.Numerics.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Bench;

internal static class Micro
{
    public static Command Create()
    {
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => 1 };
        var command = new Command("micro", "scratch") { threads };
        command.SetAction(r =>
        {
            set_num_threads(r.GetValue(threads));
            using var grad = inference_mode();
            foreach (var (m, k, n) in new[] { (1, 256, 256), (1, 256, 1024), (1, 1024, 256), (1, 256, 8000), (2, 256, 8000), (4, 256, 8000), (1, 512, 58101), (64, 256, 8000) })
            {
                var x = randn(m, k);
                var w = randn(n, k);
                var b = randn(n);
                var wt = w.t().contiguous();
                double Time(Action a) { a(); double best = double.MaxValue; for (int rep = 0; rep < 7; rep++) { var t0 = Cpu.ThreadSeconds(); int it = 0; while (Cpu.ThreadSeconds() - t0 < 0.04) { a(); it++; } best = Math.Min(best, (Cpu.ThreadSeconds() - t0) * 1e6 / it); } return best; }
                double linear = Time(() => nn.functional.linear(x, w, b).Dispose());
                double mmT = Time(() => x.mm(wt).Dispose());
                var x0 = x[0]; double mv = Time(() => w.mv(x0).Dispose()); var xT = x.t().contiguous(); double wx = Time(() => w.mm(xT).Dispose());
                double addmmT = Time(() => torch.addmm(b, x, wt, 1, 1).Dispose());
                var wf = w.data<float>().ToArray(); var xf = x.data<float>().ToArray(); var y = new float[m * n];
                double managed = Time(() => { for (int i = 0; i < m; i++) { var xs = xf.AsSpan(i * k, k); for (int j = 0; j < n; j++) y[i * n + j] = TensorPrimitives.Dot(xs, wf.AsSpan(j * k, k)); } });
                var wbf = w.to_type(ScalarType.BFloat16); var xbf = x.to_type(ScalarType.BFloat16); var bbf = b.to_type(ScalarType.BFloat16);
                double bf16 = Time(() => nn.functional.linear(xbf, wbf, bbf).Dispose());
                Console.WriteLine($"{m}x{k} @ {k}x{n}: linear {linear:F1} us, mm(Wt) {mmT:F1}, addmm {addmmT:F1}, managed dot {managed:F1}, mv {mv:F1}, W@xT {wx:F1}, bf16 linear {bf16:F1}  ({2.0*m*k*n/linear/1e3:F1} GFLOP/s linear)");
            }
            var cu = torch.jit.compile(@"
def quant(w: Tensor):
    q, offsets, scale, zero = torch.fbgemm_linear_quantize_weight(w)
    packed = torch.fbgemm_pack_quantized_matrix(q)
    return q, offsets, packed, torch.tensor(scale), torch.tensor(zero)

def lin8(x: Tensor, q: Tensor, packed: Tensor, offsets: Tensor, scale: float, zero: int, b: Tensor):
    return torch.fbgemm_linear_int8_weight_fp32_activation(x, q, packed, offsets, scale, zero, b)

def add(a: Tensor, b: Tensor):
    return a + b
");
            foreach (var (m, k, n) in new[] { (1, 256, 256), (1, 256, 8000), (64, 256, 8000), (1, 512, 58101), (32, 512, 2048) })
            {
                var x = randn(m, k); var w = randn(n, k) * 0.05; var b = randn(n);
                var r8 = cu.invoke<(TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor)>("quant", w);
                double scale = r8.Item4.to_type(ScalarType.Float64).item<double>(); long zero = r8.Item5.item<long>();
                var y8 = (TorchSharp.torch.Tensor)cu.invoke("lin8", x, r8.Item1, r8.Item3, r8.Item2, scale, zero, b);
                var y = nn.functional.linear(x, w, b);
                double err = (y8 - y).abs().max().item<float>() / y.abs().max().item<float>();
                double Time(Action a) { a(); double best = double.MaxValue; for (int rep = 0; rep < 5; rep++) { var t0 = Cpu.ThreadSeconds(); int it = 0; while (Cpu.ThreadSeconds() - t0 < 0.04) { a(); it++; } best = Math.Min(best, (Cpu.ThreadSeconds() - t0) * 1e6 / it); } return best; }
                double t8 = Time(() => ((TorchSharp.torch.Tensor)cu.invoke("lin8", x, r8.Item1, r8.Item3, r8.Item2, scale, zero, b)).Dispose());
                double t32 = Time(() => nn.functional.linear(x, w, b).Dispose());
                Console.WriteLine($"int8 fbgemm {m}x{k}x{n}: {t8:F1} us vs fp32 linear {t32:F1} us, rel err {err:E2}");
            }
            { var a = randn(1, 256); var c = randn(1, 256); double Time(Action f) { f(); double best = double.MaxValue; for (int rep = 0; rep < 5; rep++) { var t0 = Cpu.ThreadSeconds(); int it = 0; while (Cpu.ThreadSeconds() - t0 < 0.04) { f(); it++; } best = Math.Min(best, (Cpu.ThreadSeconds() - t0) * 1e6 / it); } return best; }
              Console.WriteLine($"script add invoke: {Time(() => ((TorchSharp.torch.Tensor)cu.invoke("add", a, c)).Dispose()):F2} us; eager add {Time(() => a.add(c).Dispose()):F2} us"); }
            double tiny = 0; { var a = randn(1, 256); var c = randn(1,256); a.add(c).Dispose(); var sw = Stopwatch.StartNew(); for (int i = 0; i < 100000; i++) a.add(c).Dispose(); tiny = sw.Elapsed.TotalMilliseconds * 1000 / 100000; }
            Console.WriteLine($"add 1x256: {tiny:F2} us");
            return 0;
        });
        return command;
    }
}
