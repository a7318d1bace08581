using System.Diagnostics;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

/// <summary>
/// The step profile's phase timer (StepPhases, read by <c>Transduce.Bench step --phases</c>): off it counts nothing; on,
/// every phase of a decoder step is timed on the row step and on the batched plan alike, the phases never add up to more
/// than the step's wall time, and the encoder (which runs the same TransformerStep) counts nothing.
/// </summary>
public sealed class StepPhasesTests
{
    private static TransformerSeq2Seq Model()
    {
        manual_seed(21);
        var model = new TransformerSeq2Seq(new TransformerConfig
        {
            SourceVocabSize = 30, TargetVocabSize = 40, EmbeddingSize = 32, HiddenSize = 32, Layers = 2, Heads = 4, FfnSize = 64,
            Dropout = 0, PreNorm = true, Activation = "relu",
        });
        model.eval();
        return model;
    }

    [Theory]
    [InlineData(1)] // the managed row step
    [InlineData(3)] // the batched plan
    public void EveryPhaseOfAStepIsTimedAndNoMoreThanItsWallTime(long rows)
    {
        using var model = Model();
        using var grad = inference_mode();
        var source = randint(4, 30, [rows, 6]);
        var lengths = full(rows, 6L, ScalarType.Int64);
        try
        {
            StepPhases.Enable();
            var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
            Assert.All(StepPhases.Seconds(), s => Assert.Equal(0, s)); // the encoder's blocks count nothing
            var clock = Stopwatch.StartNew();
            for (int t = 0; t < 5; t++)
            {
                (_, state) = model.Decoder.call(full(rows, 1, 1L + t, ScalarType.Int64), state);
                Assert.Equal(rows == 1, state.ManagedStep);
            }
            double wall = clock.Elapsed.TotalSeconds;
            var seconds = StepPhases.Seconds();
            Assert.Equal(StepPhases.All.Count, seconds.Length);
            foreach (var phase in StepPhases.All)
                Assert.True(seconds[(int)phase] > 0, $"{phase} was not timed");
            Assert.True(seconds.Sum() <= wall, $"phases {seconds.Sum()} s, more than the steps' {wall} s");
            // Encoding again after the steps leaves the totals alone.
            model.Encoder.call(source, lengths);
            Assert.Equal(seconds, StepPhases.Seconds());
        }
        finally
        {
            StepPhases.Disable();
        }
        Assert.All(StepPhases.Seconds(), s => Assert.Equal(0, s));
    }

    [Fact]
    public void OffByDefaultItCountsNothing()
    {
        using var model = Model();
        using var grad = inference_mode();
        var source = randint(4, 30, [1, 5]);
        var lengths = full(1, 5L, ScalarType.Int64);
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        model.Decoder.call(full(1, 1, 1L, ScalarType.Int64), state);
        Assert.All(StepPhases.Seconds(), s => Assert.Equal(0, s));
    }
}
