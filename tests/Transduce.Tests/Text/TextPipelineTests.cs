using Transduce.Text;

namespace Transduce.Tests.Text;

/// <summary>The pipeline picks one tokenizer per side from the text config and talks to it only through ids.</summary>
public sealed class TextPipelineTests
{
    private static readonly Vocabulary Words = Vocabulary.Build([["je", "suis", "là", "."]]);

    [Fact]
    public void WordPipelineNormalisesEncodesToIdsAndDecodesThem()
    {
        var pipeline = TextPipeline.Create(new TextConfig { Normalizer = "d2l" }, Words, Words);
        Assert.IsType<WordTokenizer>(pipeline.Source);
        Assert.Same(pipeline.Source, pipeline.Target); // one vocabulary, one tokenizer
        int[] ids = pipeline.EncodeSource("Je suis ICI.");
        Assert.Equal([Words["je"], Words["suis"], Words.UnkId, Words["."]], ids);
        Assert.Equal("je suis <unk> .", pipeline.Decode(ids));
        Assert.Equal(["je", "suis", "ici", "."], pipeline.SourceTokens("Je suis ICI.").Select(t => t.Value));
        Assert.Equal("je suis ici .", pipeline.Canonical("Je suis ICI.")); // references keep words the vocabulary lacks
        Assert.Equal(4, pipeline.CountTargetTokens("Je suis ICI."));
        Assert.False(pipeline.ProducesNaturalText);
    }

    [Fact]
    public void BpePipelineIsOneTokenizerForBothSidesWhoseIdsAreTheVocabulary()
    {
        var bpe = BpeTokenizer.Train(["Je suis là.", "Tu es là.", "Il est là."], new BpeTrainingOptions { VocabSize = 300 });
        var pipeline = TextPipeline.Create(new TextConfig { Normalizer = "none", Tokenizer = "bpe" }, bpe.Vocabulary, bpe.Vocabulary, bpe);
        Assert.Same(bpe, pipeline.Source);
        Assert.Same(bpe, pipeline.Target);
        Assert.True(pipeline.ProducesNaturalText);
        Assert.Equal("Tu es là.", pipeline.Decode(pipeline.EncodeTarget("Tu es là.")));
        Assert.Equal("Tu es là.", pipeline.Canonical("Tu es là."));

        var e = Assert.Throws<ArgumentException>(() =>
            TextPipeline.Create(new TextConfig { Tokenizer = "bpe" }, Words, Words, bpe));
        Assert.Contains("not the pieces of the 'bpe' subword model", e.Message);
    }

    [Fact]
    public void AConfigNamingWhatIsNotThereIsRefused()
    {
        Assert.Contains("needs its subword model",
            Assert.Throws<ArgumentException>(() => TextPipeline.Create(new TextConfig { Tokenizer = "bpe" }, Words, Words)).Message);
        Assert.Contains("needs its SentencePiece models",
            Assert.Throws<ArgumentException>(() => TextPipeline.Create(new TextConfig { Tokenizer = "spm" }, Words, Words)).Message);
        Assert.Contains("needs its SentencePiece model",
            Assert.Throws<ArgumentException>(() => TextPipeline.Create(new TextConfig { Tokenizer = "t5" }, Words, Words)).Message);
        Assert.Contains("unknown tokenizer 'chars' (known: word, bpe, spm, t5)",
            Assert.Throws<ArgumentException>(() => TextPipeline.Create(new TextConfig { Tokenizer = "chars" }, Words, Words)).Message);
        Assert.Contains("'max_steps' must be positive",
            Assert.Throws<ArgumentException>(() => TextPipeline.Create(new TextConfig { MaxSteps = 0 }, Words, Words)).Message);
    }
}
