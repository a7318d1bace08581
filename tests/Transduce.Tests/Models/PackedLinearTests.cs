using Transduce.Models;
using Transduce.Native;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

/// <summary>
/// Packed float32 products give <c>linear</c>'s result whichever kernel serves them: oneDNN's inner product over its
/// reordered weight (large products), or <c>addmm</c> over the transposed copy (one row of a small layer).
/// </summary>
public sealed class PackedLinearTests
{
    [Fact]
    public void OneDnnKernelsLoadWithThisLibtorch() =>
        Assert.True(OneDnnKernels.Available, "the oneDNN inner product did not load: float32 decoding falls back to MKL");

    [Theory]
    [InlineData(256, 1100, true, true)]   // large: oneDNN at every row count
    [InlineData(64, 96, true, true)]      // small: addmm at one row, oneDNN from 43 rows up
    [InlineData(300, 1000, false, true)]
    [InlineData(256, 1100, true, false)]  // --kernels no-onednn: addmm at every row count
    [InlineData(300, 1000, false, false)]
    public void ProductsEqualLinear(int inputs, int outputs, bool bias, bool oneDnn)
    {
        manual_seed(7);
        using var scope = NewDisposeScope();
        using var grad = inference_mode();
        var w = randn(outputs, inputs) / Math.Sqrt(inputs);
        var b = bias ? randn(outputs) : null;
        using var packed = PackedLinear.Pack(ComputeType.Float32, [(w, b)], kernels: DecodingKernels.Auto with { OneDnn = oneDnn });
        Assert.Equal(oneDnn && OneDnnKernels.Available, packed.UsesOneDnn);
        foreach (long rows in new long[] { 0, 1, 3, 64 })
        {
            var x = randn(rows, inputs);
            var expected = nn.functional.linear(x, w, b);
            var actual = packed.Forward(x);
            Assert.Equal(expected.shape, actual.shape);
            if (rows > 0)
                Assert.True(expected.allclose(actual, rtol: 1e-4, atol: 1e-5),
                    $"{rows} rows: max difference {(expected - actual).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void AStridedInputGivesTheSameProduct()
    {
        manual_seed(8);
        using var scope = NewDisposeScope();
        using var grad = inference_mode();
        var w = randn(2000, 256) / 16;
        using var packed = PackedLinear.Pack(ComputeType.Float32, [(w, null)]);
        var wide = randn(5, 512);
        var x = wide.narrow(1, 100, 256); // not contiguous
        Assert.True(nn.functional.linear(x, w).allclose(packed.Forward(x), rtol: 1e-4, atol: 1e-5));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]   // --kernels no-onednn: libtorch's bfloat16 linear
    public void BFloat16ProductsStayCloseToFloat32(bool oneDnn)
    {
        manual_seed(9);
        using var scope = NewDisposeScope();
        using var grad = inference_mode();
        var w = randn(1100, 256) / 16;
        var b = randn(1100);
        using var packed = PackedLinear.Pack(ComputeType.BFloat16, [(w, b)], kernels: DecodingKernels.Auto with { OneDnn = oneDnn });
        Assert.Equal(oneDnn && OneDnnKernels.Available, packed.UsesOneDnn);
        foreach (long rows in new long[] { 0, 1, 5 })
        {
            var x = randn(rows, 256);
            var expected = nn.functional.linear(x, w, b);
            var actual = packed.Forward(x);
            Assert.Equal(ScalarType.Float32, actual.dtype);
            Assert.Equal(expected.shape, actual.shape);
            if (rows > 0)
                Assert.True(expected.allclose(actual, rtol: 0.05, atol: 0.05), $"{rows} rows: max difference {(expected - actual).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void ProductsFromSeveralThreadsAtOnceAreRight()
    {
        // A service runs one decoder thread per model; they share the one loaded kernel module.
        manual_seed(10);
        using var w = randn(3000, 256) / 16;
        using var b = randn(3000);
        using var packed = PackedLinear.Pack(ComputeType.Float32, [(w, b)]);
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 3).Select(t => new Thread(() =>
        {
            using var grad = inference_mode();
            for (int i = 0; i < 40; i++)
            {
                using var scope = NewDisposeScope();
                var x = randn(1 + (t * 7 + i) % 9, 256);
                if (!nn.functional.linear(x, w, b).allclose(packed.Forward(x), rtol: 1e-4, atol: 1e-5)) failures.Add($"thread {t}, call {i}");
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(failures);
    }
}
