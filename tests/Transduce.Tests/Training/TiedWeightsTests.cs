using Transduce.Data;
using Transduce.Models;
using Transduce.Training;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Training;

public sealed class TiedWeightsTests
{
    [Fact]
    public void AdamUpdatesATiedEmbeddingOncePerStep()
    {
        // TorchSharp lists the tied weight twice (the embedding and the output projection). Adam's first step moves every
        // weight with a gradient by exactly its learning rate; updated twice, the tied weight would move by twice that.
        using var scope = NewDisposeScope();   // every tensor made here goes with the test (MemoryTests counts live ones)
        manual_seed(7);
        var config = new Transduce.Models.Transformer.TransformerConfig
        {
            SourceVocabSize = 30, TargetVocabSize = 30, EmbeddingSize = 16, HiddenSize = 16, Heads = 2,
            FfnSize = 16, Layers = 1, Dropout = 0, TieEmbeddings = true, ShareEmbeddings = true,
        };
        using var model = ModelRegistry.Create(config);
        var tied = model.named_parameters().First(p => p.name == "decoder.dense.weight").parameter;
        Assert.Equal(model.parameters().Count() - 1, Trainer.DistinctParameters(model).Count);
        using var before = tied.detach().clone();
        var pairs = new List<EncodedPair> { new([4, 5, 6], [7, 8]), new([9, 10], [11, 12, 13]) };
        const double Rate = 0.01;
        Trainer.Train(model, pairs, new SpecialIds(0, 1, 2), null,
            new TrainingOptions { Epochs = 1, BatchSize = 2, LearningRate = Rate, GradientClip = 0, KeepFreedMemory = false });
        using var moved = (tied.detach() - before).abs().max();
        double largest = moved.item<float>();
        Assert.InRange(largest, Rate * 0.99, Rate * 1.001);
    }
}
