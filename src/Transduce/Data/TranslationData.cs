using Transduce.Text;

namespace Transduce.Data;

/// <summary>A corpus turned into ids, with the vocabularies that did it.</summary>
/// <param name="Pairs">Encoded pairs, in corpus order.</param>
/// <param name="SourceVocabulary">Source vocabulary.</param>
/// <param name="TargetVocabulary">Target vocabulary.</param>
public sealed record TranslationData(IReadOnlyList<EncodedPair> Pairs, Vocabulary SourceVocabulary, Vocabulary TargetVocabulary)
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
}
