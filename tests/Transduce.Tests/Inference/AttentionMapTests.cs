using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Inference;

namespace Transduce.Tests.Inference;

public sealed class AttentionMapTests
{
    [Theory]
    [InlineData("bahdanau", 1)]
    [InlineData("transformer", 2)]
    public void TranslationComesWithOneAttentionRowPerOutputTokenOverTheSource(string architecture, int layers)
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 40, architecture: architecture);
        using var translator = new Translator(new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        });
        foreach (int beam in new[] { 3, 1 })
        {
            var options = new TranslationOptions { Beam = beam };
            var (beamText, beamMap) = translator.TranslateWithAttention("I'm home.", options);
            Assert.Equal(translator.Translate(["I'm home."], options)[0], beamText);
            Assert.Equal(beamText.Split(' ').Append("<eos>"), beamMap!.TargetTokens);
            Assert.Equal(beamMap.TargetTokens.Count, beamMap.Weights[0].GetLength(1));
        }
        var (text, map) = translator.TranslateWithAttention("I'm home.");
        Assert.Equal(translator.Translate(["I'm home."])[0], text);
        Assert.NotNull(map);
        Assert.Equal(["i'm", "home", ".", "<eos>"], map!.SourceTokens);
        Assert.Equal(text.Split(' ').Append("<eos>"), map.TargetTokens);
        Assert.Equal(layers, map.Weights.Count);
        var mean = map.Select();
        Assert.Equal(map.TargetTokens.Count, mean.GetLength(0));
        Assert.Equal(map.SourceTokens.Count, mean.GetLength(1));
        for (int i = 0; i < mean.GetLength(0); i++)
        {
            double sum = 0;
            for (int j = 0; j < mean.GetLength(1); j++) sum += mean[i, j];
            Assert.Equal(1.0, sum, 4);
        }
    }

    [Fact]
    public void PlainGruHasNoAttention()
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 1);
        using var translator = new Translator(new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        });
        Assert.Null(translator.TranslateWithAttention("Go.").Attention);
    }
}
