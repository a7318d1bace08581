using Transduce.Data;
using Transduce.Models;
using Transduce.Text;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

/// <summary>The trainer's learning-rate schedules and gradient accumulation, on the library API.</summary>
public sealed class TrainerTests
{
    [Fact]
    public void ConstantScheduleKeepsTheRate()
    {
        var options = new TrainingOptions { LearningRate = 0.003 };
        Assert.All(new[] { 1, 2, 1000, 1_000_000 }, step => Assert.Equal(0.003, Trainer.LearningRate(options, step)));
    }

    [Fact]
    public void InverseSqrtWarmsUpLinearlyPeaksAtTheEndOfWarmUpThenFallsAsOneOverRootStep()
    {
        var options = new TrainingOptions { LearningRate = 0.001, Schedule = LearningRateSchedule.InverseSqrt, WarmupSteps = 400 };
        Assert.Equal(0.001 / 400, Trainer.LearningRate(options, 1), 12);
        Assert.Equal(0.0005, Trainer.LearningRate(options, 200), 12);
        Assert.Equal(0.001, Trainer.LearningRate(options, 400), 12);                  // the peak is the configured rate
        Assert.Equal(0.0005, Trainer.LearningRate(options, 1600), 12);                // 4× the warm-up: half the rate
        Assert.Equal(0.001 * Math.Sqrt(400.0 / 10_000), Trainer.LearningRate(options, 10_000), 12);
        var rates = Enumerable.Range(1, 2000).Select(s => Trainer.LearningRate(options, s)).ToArray();
        Assert.Equal(399, Array.IndexOf(rates, rates.Max()));
    }

    /// <summary>Four pairs whose targets all hold three tokens, so every batch of them weighs its tokens alike.</summary>
    private static readonly SentencePair[] EvenTargets =
    [
        new("Go now.", "Va maintenant !", 1), new("I lost.", "J'ai perdu !", 2), new("He's calm.", "Il est calme", 3), new("We won.", "Nous avons gagné", 4),
    ];

    private static float[] TrainOnce(int batchSize, int accumulate)
    {
        var data = TranslationData.Prepare(EvenTargets, new TextConfig());
        Assert.All(data.Pairs, p => Assert.Equal(3, p.Target.Length));
        manual_seed(17);
        using var model = ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary));
        var tgt = data.TargetVocabulary;
        var result = Trainer.Train(model, data.Pairs, new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId), null,
            new TrainingOptions { Epochs = 1, BatchSize = batchSize, AccumulateSteps = accumulate, LearningRate = 0.01, Seed = 5, KeepFreedMemory = false });
        Assert.Equal(4 / (batchSize * accumulate), result.Steps);
        return model.parameters().SelectMany(p => p.detach().cpu().data<float>().ToArray()).ToArray();
    }

    [Fact]
    public void AccumulatingTwoHalfBatchesMakesTheUpdateOfTheWholeBatch()
    {
        var whole = TrainOnce(batchSize: 4, accumulate: 1);
        var accumulated = TrainOnce(batchSize: 2, accumulate: 2);
        var twoUpdates = TrainOnce(batchSize: 2, accumulate: 1);
        double Diff(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs(p.First - p.Second));
        // Adam's first step moves each weight by about the learning rate (0.01) whatever its gradient's size, so summation
        // noise in a near-zero gradient shows; a hundredth of a step is the tolerance.
        Assert.True(Diff(whole, accumulated) < 1e-4, $"accumulated update differs from the whole batch's by {Diff(whole, accumulated)}");
        Assert.True(Diff(whole, twoUpdates) > 5e-3, $"two separate updates differ from one by only {Diff(whole, twoUpdates)}");
    }
}
