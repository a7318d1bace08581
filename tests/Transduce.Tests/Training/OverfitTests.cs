using Transduce.Data;
using Transduce.Inference;
using Transduce.Training;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Training;

public sealed class OverfitTests
{
    [Fact]
    public void TinyGruLearnsAHandfulOfPairsExactly()
    {
        var (model, data, pipeline, _) = TinyModels.Trained();
        using var _m = model;
        var src = data.SourceVocabulary;
        var tgt = data.TargetVocabulary;
        var sources = TinyModels.Pairs.Select(p => pipeline.EncodeSource(p.Source)).ToList();
        var (x, len) = Batching.BuildSources(sources, new SpecialIds(src.PadId, src.BosId, src.EosId), null);
        using (x)
        using (len)
        {
            var outputs = GreedySearch.Decode(model, x, len, new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId), Enumerable.Repeat(20, sources.Count).ToArray());
            for (int i = 0; i < TinyModels.Pairs.Length; i++)
            {
                string expected = pipeline.Canonical(TinyModels.Pairs[i].Target);
                Assert.Equal(expected, pipeline.Decode(outputs[i]));
            }
        }
    }

    [Fact]
    public void TrainingLossFallsAndTheSameSeedGivesTheSameWeights()
    {
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        var pipeline = data.Text;
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        float[] Run()
        {
            manual_seed(21);
            using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, tgt, dropout: 0.2));
            var result = Trainer.Train(model, data.Pairs, ids, null, new TrainingOptions { Epochs = 30, BatchSize = 2, LearningRate = 0.01, Seed = 2 });
            Assert.True(result.Epochs[^1].Loss < result.Epochs[0].Loss / 3, $"loss went {result.Epochs[0].Loss} → {result.Epochs[^1].Loss}");
            return model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
        }
        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void Bf16TrainingLearnsKeepsFloat32WeightsAndIsRepeatable()
    {
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        float[] Run(TrainingPrecision precision)
        {
            manual_seed(21);
            using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, tgt, dropout: 0.1, architecture: "transformer"));
            var result = Trainer.Train(model, data.Pairs, ids, null,
                new TrainingOptions { Epochs = 30, BatchSize = 2, LearningRate = 0.005, Seed = 2, Precision = precision });
            Assert.True(result.Epochs[^1].Loss < result.Epochs[0].Loss / 3, $"{precision}: loss went {result.Epochs[0].Loss} → {result.Epochs[^1].Loss}");
            Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
            return model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
        }
        var bf16 = Run(TrainingPrecision.BFloat16);
        Assert.Equal(bf16, Run(TrainingPrecision.BFloat16));
        // The setting is not ignored: bf16 arithmetic ends elsewhere than fp32 from the same start and batches.
        Assert.NotEqual(Run(TrainingPrecision.Float32), bf16);
    }
}
