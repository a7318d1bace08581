using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

/// <summary>Validation measures the model as it is without changing the run: mode restored, no random numbers drawn.</summary>
public sealed class ValidatorTests
{
    [Fact]
    public void AMemorisedCorpusScoresFullBleuAndLowLossAndTheRunIsLeftAsItWas()
    {
        var (model, data, pipeline, config) = TinyModels.Trained();
        using var checkpoint = new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        };
        model.train();
        using var rngBefore = get_rng_state();
        var result = new Validator(TinyModels.Pairs).Run(checkpoint, step: 42);
        using var rngAfter = get_rng_state();

        Assert.Equal(42, result.Step);
        Assert.Equal(100.0, result.Bleu, 6);           // the pairs were learnt word for word (OverfitTests)
        Assert.InRange(result.Loss, 0, 0.1);
        Assert.True(model.training, "validation must hand the model back in training mode");
        Assert.True(rngBefore.eq(rngAfter).all().item<bool>(), "validation drew random numbers and would change the run");

        // Measuring again, in other batches, gives the same figures.
        var again = new Validator(TinyModels.Pairs, batchSize: 2).Run(checkpoint, 43);
        Assert.Equal(result.Bleu, again.Bleu);
        Assert.Equal(result.Loss, again.Loss, 5);
    }

    [Fact]
    public void WrongTranslationsScoreBelowFullAndAnEmptySetIsRefused()
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 1);
        using var checkpoint = new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        };
        var result = new Validator(TinyModels.Pairs).Run(checkpoint, 1);
        Assert.InRange(result.Bleu, 0, 99);
        Assert.True(result.Loss > 1, $"an untrained model's loss is {result.Loss}");
        Assert.Throws<ArgumentException>(() => new Validator([]));
    }
}
