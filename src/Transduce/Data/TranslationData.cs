using Transduce.Text;

namespace Transduce.Data;

/// <summary>A corpus turned into ids, with the vocabularies that did it.</summary>
/// <param name="Pairs">Encoded pairs, in corpus order.</param>
/// <param name="SourceVocabulary">Source vocabulary.</param>
/// <param name="TargetVocabulary">Target vocabulary.</param>
internal sealed record TranslationData(IReadOnlyList<EncodedPair> Pairs, Vocabulary SourceVocabulary, Vocabulary TargetVocabulary)
{
    /// <summary>
    /// Tokenizes <paramref name="pairs"/> with <paramref name="pipeline"/> and encodes them. Vocabularies are built
    /// from <paramref name="vocabularyPairs"/> (default: the same pairs) unless given; with <paramref name="jointVocabulary"/>
    /// one vocabulary covers both sides.
    /// </summary>
    public static TranslationData Prepare(
        IReadOnlyList<SentencePair> pairs,
        TextPipeline pipeline,
        int minFrequency = 1,
        Vocabulary? sourceVocabulary = null,
        Vocabulary? targetVocabulary = null,
        IReadOnlyList<SentencePair>? vocabularyPairs = null,
        bool jointVocabulary = false)
    {
        var tokenized = pairs.Select(p => (Src: pipeline.TokenizeSource(p.Source), Tgt: pipeline.TokenizeTarget(p.Target))).ToList();
        if (sourceVocabulary is null || targetVocabulary is null)
        {
            var vocabTokens = vocabularyPairs is null
                ? tokenized
                : vocabularyPairs.Select(p => (Src: pipeline.TokenizeSource(p.Source), Tgt: pipeline.TokenizeTarget(p.Target))).ToList();
            if (jointVocabulary)
            {
                var joint = Vocabulary.Build(vocabTokens.Select(t => t.Src).Concat(vocabTokens.Select(t => t.Tgt)), minFrequency);
                sourceVocabulary ??= joint;
                targetVocabulary ??= joint;
            }
            sourceVocabulary ??= Vocabulary.Build(vocabTokens.Select(t => t.Src), minFrequency);
            targetVocabulary ??= Vocabulary.Build(vocabTokens.Select(t => t.Tgt), minFrequency);
        }
        var encoded = tokenized
            .Select(t => new EncodedPair(sourceVocabulary.Encode(t.Src), targetVocabulary.Encode(t.Tgt)))
            .ToList();
        return new TranslationData(encoded, sourceVocabulary, targetVocabulary);
    }

    /// <summary>
    /// Everything text-side a training run needs, learnt from its training pairs: with <see cref="TextConfig.Tokenizer"/>
    /// <c>bpe</c>, a joint BPE model of <paramref name="bpeVocabSize"/> pieces trained on the normalised sentences of both
    /// sides (its vocabulary serves both); otherwise word vocabularies with <paramref name="minFrequency"/>, joint when
    /// <paramref name="jointVocabulary"/>, built from <paramref name="vocabularyPairs"/> if given.
    /// </summary>
    /// <returns>The encoded pairs with their vocabularies, and the BPE model, if any.</returns>
    public static (TranslationData Data, BpeTokenizer? Subwords) ForTraining(
        IReadOnlyList<SentencePair> pairs, TextConfig text, int bpeVocabSize = 8000, int minFrequency = 1,
        bool jointVocabulary = false, IReadOnlyList<SentencePair>? vocabularyPairs = null)
    {
        BpeTokenizer? subwords = null;
        if (text.Tokenizer == "bpe")
        {
            var normalizer = TextNormalizers.FromName(text.Normalizer);
            subwords = BpeTokenizer.Train(pairs.SelectMany(p => new[] { normalizer.Normalize(p.Source), normalizer.Normalize(p.Target) }),
                new BpeTrainingOptions { VocabSize = bpeVocabSize });
        }
        var pipeline = new TextPipeline(text, subwords);
        var data = subwords is null
            ? Prepare(pairs, pipeline, minFrequency, vocabularyPairs: vocabularyPairs, jointVocabulary: jointVocabulary)
            : Prepare(pairs, pipeline, sourceVocabulary: subwords.Vocabulary, targetVocabulary: subwords.Vocabulary);
        return (data, subwords);
    }
}
