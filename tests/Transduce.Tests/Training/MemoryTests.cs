using Transduce.Data;
using Transduce.Inference;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

/// <summary>Counts live tensors process-wide, so it must not overlap other tests that create or dispose tensors.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LiveTensorCountCollection
{
    public const string Name = "live tensor count";
}

[Collection(LiveTensorCountCollection.Name)]
public sealed class MemoryTests
{
    [Fact]
    public void TrainingAndDecodingLeaveNoLiveTensorsBehind()
    {
        var pipeline = new Transduce.Text.TextPipeline(new Transduce.Text.TextConfig());
        var data = TranslationData.Prepare(TinyModels.Pairs, pipeline);
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        manual_seed(1);
        using var model = Transduce.Models.ModelFactory.Create(TinyModels.Config(data.SourceVocabulary, tgt));
        var options = new TrainingOptions { Epochs = 2, BatchSize = 2 };
        Trainer.Train(model, data.Pairs, ids, null, options); // warm-up: parameters' gradients now exist

        long before = Tensor.TotalCount;
        Trainer.Train(model, data.Pairs, ids, null, options with { Epochs = 5 });
        var (x, len) = Batching.BuildSources([[4, 5, 6], [7]], new SpecialIds(0, 1, 2), null);
        using (x) using (len)
            for (int i = 0; i < 5; i++) GreedySearch.Decode(model, x, len, ids, [10, 10]);
        // Decoding in eval mode packs the decoder's weights once and keeps them with the model (reused by every decode);
        // leaving eval mode releases them.
        model.train();
        // The optimizer's state lived inside Train and is gone; nothing else may remain.
        Assert.Equal(before, Tensor.TotalCount);
    }
}
