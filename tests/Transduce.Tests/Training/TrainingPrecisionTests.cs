using System.Text.Json.Nodes;
using Transduce.Training;

namespace Transduce.Tests.Training;

/// <summary>
/// <c>training.precision: auto</c>: bf16 only on a machine whose bf16 products clearly beat fp32's, chosen once when a
/// run starts and saved with the run, so a resume keeps it.
/// </summary>
public sealed class TrainingPrecisionTests
{
    [Theory]
    [InlineData(258.1, 968.8, TrainingPrecision.BFloat16)]   // issue 16's host (AMX): bf16 training ran 2.68× fp32
    [InlineData(327.0, 166.7, TrainingPrecision.Float32)]    // issue 27's host (AVX-512 BF16, no AMX): bf16 ran 0.64× fp32
    [InlineData(300.0, 330.0, TrainingPrecision.Float32)]    // a little faster is not enough to leave exact float32
    [InlineData(300.0, 360.0, TrainingPrecision.BFloat16)]
    [InlineData(0.0, 100.0, TrainingPrecision.Float32)]
    [InlineData(double.NaN, 100.0, TrainingPrecision.Float32)]
    [InlineData(100.0, double.NaN, TrainingPrecision.Float32)]
    public void AutoTakesBFloat16OnlyWhereItsProductsAreClearlyFaster(double float32, double bfloat16, TrainingPrecision expected) =>
        Assert.Equal(expected, TrainingPrecisions.Choose(float32, bfloat16));

    [Fact]
    public void PrecisionNamesReadAsTheCliAndFilesWriteThem()
    {
        Assert.Equal(TrainingPrecision.BFloat16, TrainingPrecisions.Parse("BF16"));
        Assert.Equal(TrainingPrecision.Float32, TrainingPrecisions.Parse("fp32"));
        Assert.Equal(TrainingPrecision.Auto, TrainingPrecisions.Parse("auto"));
        Assert.Contains("int8 is for decoding", Assert.Throws<ArgumentException>(() => TrainingPrecisions.Parse("int8")).Message);
        var config = RunConfig.Parse("training:\n  precision: auto\n", "run.yaml");
        Assert.Equal(TrainingPrecision.Auto, config.Training.Precision);
        // A file naming a precision training does not have gets one line naming the file, line and key.
        var bad = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("training:\n  precision: int8\n", "run.yaml"));
        Assert.StartsWith("run.yaml:2: 'training.precision' must be one of", bad.Message);
    }

    [Fact]
    public void AnAutoRunSavesThePrecisionItMeasuredAndItsResumeKeepsIt()
    {
        var config = TrainingRunTests.Tiny(epochs: 2) with { Training = TrainingRunTests.Tiny(epochs: 2).Training with { Precision = TrainingPrecision.Auto } };
        using var temp = new TempDir();
        string run = temp.File("auto");
        var messages = new List<string>();
        TrainingPrecision chosen;
        using (var training = new TrainingRun(config, run, TrainingRunTests.Pairs))
        {
            training.Message += (_, m) => messages.Add(m);
            training.Run();
            chosen = training.Config.Training.Precision;
        }
        Assert.NotEqual(TrainingPrecision.Auto, chosen);
        // The log says what was measured and what it chose.
        Assert.Contains(messages, m => m.Contains($"{chosen.Name()} (auto: matmuls ") && m.Contains(" GFLOP/s in bfloat16, "));
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(run, TrainingRun.ConfigFile)))!["training"]!["precision"]!.GetValue<string>();
        Assert.Equal(chosen.Name(), saved);
        using var resumed = TrainingRun.Resume(run, TrainingRunTests.Pairs);
        Assert.Equal(chosen, resumed.Config.Training.Precision);
    }
}
