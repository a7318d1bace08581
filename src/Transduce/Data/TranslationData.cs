using Transduce.Text;

namespace Transduce.Data;

/// <summary>A corpus turned into ids, with the text pipeline that did it.</summary>
/// <param name="Pairs">Encoded pairs, in corpus order.</param>
/// <param name="Text">The pipeline (normaliser and tokenizers) the pairs were encoded with.</param>
internal sealed record TranslationData(IReadOnlyList<EncodedPair> Pairs, TextPipeline Text)
{
    /// <summary>Source vocabulary.</summary>
    public Vocabulary SourceVocabulary => Text.Source.Vocabulary;

    /// <summary>Target vocabulary.</summary>
    public Vocabulary TargetVocabulary => Text.Target.Vocabulary;

    /// <summary>
    /// Encodes <paramref name="pairs"/> with a pipeline whose vocabularies already exist (resuming, validating, fine-tuning),
    /// as the model's family frames a training pair (<paramref name="encoding"/>; default: the pipeline's ids).
    /// </summary>
    public static TranslationData Encode(IReadOnlyList<SentencePair> pairs, TextPipeline text, PairEncoding? encoding = null,
        PairEncodingContext? context = null)
    {
        var e = encoding ?? PairEncoding.Default;
        var c = context ?? new PairEncodingContext();
        return new(pairs.Select(p => new EncodedPair(e.Source(text, p.Source, c), e.Target(text, p.Target, c))).ToList(), text);
    }

    /// <summary>
    /// Word-level data: normalises and splits <paramref name="pairs"/> into words, builds word vocabularies from
    /// <paramref name="vocabularyPairs"/> (default: the same pairs) with <paramref name="minFrequency"/> — one joint
    /// vocabulary for both sides with <paramref name="jointVocabulary"/> — and encodes the pairs with them.
    /// </summary>
    public static TranslationData Prepare(
        IReadOnlyList<SentencePair> pairs,
        TextConfig config,
        int minFrequency = 1,
        IReadOnlyList<SentencePair>? vocabularyPairs = null,
        bool jointVocabulary = false)
    {
        if (config.Tokenizer != "word")
            throw new ArgumentException($"text config: vocabularies are built from words here; the '{config.Tokenizer}' tokenizer brings its own");
        var normalizer = TextNormalizers.FromName(config.Normalizer);
        (string[] Src, string[] Tgt) Words(SentencePair p) =>
            (WordTokenizer.Split(normalizer.Normalize(p.Source)), WordTokenizer.Split(normalizer.Normalize(p.Target)));
        var words = pairs.Select(Words).ToList();
        var (source, target) = Vocabularies(vocabularyPairs is null ? words : vocabularyPairs.Select(Words).ToList(), minFrequency, jointVocabulary);
        var encoded = words.Select(t => new EncodedPair(source.Encode(t.Src), target.Encode(t.Tgt))).ToList();
        return new TranslationData(encoded, TextPipeline.Create(config, source, target));
    }

    /// <summary>
    /// Everything text-side a training run needs, learnt from its training pairs: with <see cref="TextConfig.Tokenizer"/>
    /// <c>bpe</c>, a joint BPE model of <paramref name="bpeVocabSize"/> pieces trained on the normalised sentences of both
    /// sides (its vocabulary serves both); otherwise word vocabularies with <paramref name="minFrequency"/>, joint when
    /// <paramref name="jointVocabulary"/>, built from <paramref name="vocabularyPairs"/> if given.
    /// </summary>
    /// <returns>The encoded pairs with their pipeline, and the BPE model, if any.</returns>
    public static (TranslationData Data, BpeTokenizer? Subwords) ForTraining(
        IReadOnlyList<SentencePair> pairs, TextConfig text, int bpeVocabSize = 8000, int minFrequency = 1,
        bool jointVocabulary = false, IReadOnlyList<SentencePair>? vocabularyPairs = null, SentencePiecePair? sentencePiece = null)
    {
        if (text.Tokenizer == "spm")
            return (WithSentencePiece(pairs, text, sentencePiece ?? throw new ArgumentException("text config: the 'spm' tokenizer needs its SentencePiece models"),
                minFrequency, jointVocabulary, vocabularyPairs), null);
        if (text.Tokenizer != "bpe")
            return (Prepare(pairs, text, minFrequency, vocabularyPairs, jointVocabulary), null);
        var normalizer = TextNormalizers.FromName(text.Normalizer);
        var subwords = BpeTokenizer.Train(pairs.SelectMany(p => new[] { normalizer.Normalize(p.Source), normalizer.Normalize(p.Target) }),
            new BpeTrainingOptions { VocabSize = bpeVocabSize });
        return (Encode(pairs, TextPipeline.Create(text, subwords.Vocabulary, subwords.Vocabulary, subwords)), subwords);
    }

    /// <summary>
    /// SentencePiece data: segments the normalised sentences with the given models (trained beforehand), builds the
    /// vocabularies from the pieces <paramref name="vocabularyPairs"/> (default: the same pairs) use at least
    /// <paramref name="minFrequency"/> times — one for both sides with <paramref name="jointVocabulary"/> — and encodes
    /// the pairs with them.
    /// </summary>
    public static TranslationData WithSentencePiece(IReadOnlyList<SentencePair> pairs, TextConfig text, SentencePiecePair sentencePiece,
        int minFrequency = 1, bool jointVocabulary = false, IReadOnlyList<SentencePair>? vocabularyPairs = null)
    {
        var normalizer = TextNormalizers.FromName(text.Normalizer);
        var pieces = (vocabularyPairs ?? pairs)
            .Select(p => (Src: sentencePiece.Source.EncodePieces(normalizer.Normalize(p.Source)), Tgt: sentencePiece.Target.EncodePieces(normalizer.Normalize(p.Target))))
            .ToList();
        var (source, target) = Vocabularies(pieces, minFrequency, jointVocabulary);
        return Encode(pairs, TextPipeline.Create(text, source, target, sentencePiece: sentencePiece));
    }

    /// <summary>Source and target vocabularies of tokenized pairs (one instance for both sides when joint).</summary>
    private static (Vocabulary Source, Vocabulary Target) Vocabularies(List<(string[] Src, string[] Tgt)> tokens, int minFrequency, bool joint)
    {
        if (joint)
        {
            var both = Vocabulary.Build(tokens.Select(t => t.Src).Concat(tokens.Select(t => t.Tgt)), minFrequency);
            return (both, both);
        }
        return (Vocabulary.Build(tokens.Select(t => t.Src), minFrequency), Vocabulary.Build(tokens.Select(t => t.Tgt), minFrequency));
    }
}
