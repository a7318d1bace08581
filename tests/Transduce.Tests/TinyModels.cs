using Transduce.Architecture;
using Transduce.Data;
using Transduce.Models;
using Transduce.Text;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests;

/// <summary>Small models and corpora that train in seconds.</summary>
internal static class TinyModels
{
    public static readonly SentencePair[] Pairs =
    [
        new("Go.", "Va !", 1), new("I lost.", "J'ai perdu.", 2), new("I'm home.", "Je suis chez moi.", 3),
        new("He's calm.", "Il est calme.", 4), new("Thank you!", "Merci !", 5), new("We won.", "Nous avons gagné.", 6),
    ];

    /// <summary>A tiny config of <paramref name="architecture"/> for the vocabularies, through the model registry.</summary>
    public static ModelConfig Config(Vocabulary src, Vocabulary tgt, double dropout = 0, string architecture = "gru",
        Func<ModelSettings, ModelSettings>? adjust = null)
    {
        var settings = new ModelSettings { EmbeddingSize = 16, HiddenSize = 32, Layers = 2, Dropout = dropout, Heads = 4, FfnSize = 64 };
        return ModelRegistry.Get(architecture).Configure(adjust is null ? settings : adjust(settings), src.Count, tgt.Count, tgt.PadId);
    }

    public static (EncoderDecoder Model, TranslationData Data, TextPipeline Pipeline, ModelConfig Config) Trained(
        int epochs = 150, int seed = 3, string architecture = "gru", Func<ModelSettings, ModelSettings>? adjust = null)
    {
        var data = TranslationData.Prepare(Pairs, new TextConfig { Normalizer = "d2l" }, jointVocabulary: adjust is not null);
        var pipeline = data.Text;
        manual_seed(seed);
        var config = Config(data.SourceVocabulary, data.TargetVocabulary, architecture: architecture, adjust: adjust);
        var model = ModelRegistry.Create(config);
        var tgt = data.TargetVocabulary;
        Trainer.Train(model, data.Pairs, new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId), null,
            new TrainingOptions { Epochs = epochs, BatchSize = 3, LearningRate = 0.01, Seed = seed });
        return (model, data, pipeline, config);
    }
}
