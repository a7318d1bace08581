using Transduce.Models;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

/// <summary>
/// A row team splits a one-row panel product over helper threads: every output must be exactly what the caller alone
/// computes (each output is one thread's sum, in panel order), whatever the split, the residual or the number type, and a
/// team must keep answering when its helpers have gone to sleep between products.
/// </summary>
public sealed unsafe class RowTeamTests
{
    private static float[] Run(RowLinear linear, float[] x, float[]? residual, RowTeam? team)
    {
        var y = new float[linear.PaddedOut];
        fixed (float* px = x, py = y, pr = residual)
        {
            if (team is null) linear.Forward(px, py, pr);
            else team.Forward(linear, px, py, pr);
        }
        return y;
    }

    [Theory]
    [InlineData(64, 1000, 2, false, false)]     // outputs past whole panels: a last partial panel
    [InlineData(256, 1024, 2, true, false)]
    [InlineData(256, 1024, 3, true, false)]     // three threads, chunks not a multiple of them
    [InlineData(128, 6 * 128, 2, false, true)]  // bfloat16 panels: rounded per output as on one thread
    [InlineData(512, 2048, 4, true, true)]
    public void ASplitProductEqualsTheCallerAlone(int inputs, int outputs, int threads, bool withResidual, bool bfloat16)
    {
        if (!RowLinear.Supported) return; // panels need AVX-512; the row step keeps libtorch's products without them
        manual_seed(5);
        using var w = randn(outputs, inputs);
        using var b = randn(outputs);
        using var linear = RowLinear.Pack([(w, b)], bfloat16: bfloat16);
        Assert.True((long)inputs * linear.PaddedOut >= RowTeam.MinSplitWork);
        using var team = new RowTeam(threads);
        var random = new Random(7);
        var x = Enumerable.Range(0, inputs).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var residual = withResidual ? Enumerable.Range(0, linear.PaddedOut).Select(_ => (float)random.NextDouble()).ToArray() : null;
        var alone = Run(linear, x, residual, null);
        for (int repeat = 0; repeat < 20; repeat++) Assert.Equal(alone, Run(linear, x, residual, team));
    }

    [Fact]
    public void AProductTooSmallToSplitAndATeamOfOneStayOnTheCaller()
    {
        if (!RowLinear.Supported) return;
        using var w = randn(128, 16);
        using var linear = RowLinear.Pack([(w, null)]);
        Assert.True(16L * linear.PaddedOut < RowTeam.MinSplitWork);
        var x = Enumerable.Repeat(0.25f, 16).ToArray();
        using var pair = new RowTeam(2);
        using var one = new RowTeam(1);
        Assert.Equal(1, one.Threads);
        Assert.Equal(Run(linear, x, null, null), Run(linear, x, null, pair));
        Assert.Equal(Run(linear, x, null, null), Run(linear, x, null, one));
    }

    [Fact]
    public void HelpersThatFellAsleepBetweenProductsStillTakeTheirShare()
    {
        if (!RowLinear.Supported) return;
        manual_seed(9);
        using var w = randn(2048, 256);
        using var linear = RowLinear.Pack([(w, null)]);
        using var team = new RowTeam(2);
        var x = Enumerable.Range(0, 256).Select(i => i / 256f).ToArray();
        var alone = Run(linear, x, null, null);
        for (int i = 0; i < 30; i++)
        {
            // Past the helper's spin: it sleeps, and the next product must wake it or finish without it.
            if (i % 3 == 0) Thread.Sleep(2);
            Assert.Equal(alone, Run(linear, x, null, team));
        }
    }

    [Fact]
    public void ATeamNobodyDisposedStopsItsHelpers()
    {
        // A model nobody disposed must not leave threads behind: the helpers do not keep their team alive, and its
        // finalizer stops them.
        if (!RowLinear.Supported) return;
        var threads = Abandon();
        for (int i = 0; i < 100 && threads.Any(t => t.IsAlive); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(10);
        }
        Assert.All(threads, t => Assert.False(t.IsAlive));
    }

    // Makes a team of three, runs one split product on it and drops it; returns its helper threads.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static IReadOnlyList<Thread> Abandon()
    {
        using var w = randn(1024, 256);
        using var linear = RowLinear.Pack([(w, null)]);
        var team = new RowTeam(3);
        Run(linear, new float[256], null, team);
        var threads = team.HelperThreads;
        Assert.Equal(2, threads.Count);
        Assert.All(threads, t => Assert.True(t.IsAlive));
        return threads;
    }
}
