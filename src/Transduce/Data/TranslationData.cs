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
        var encode = Encoder(text, encoding, context);
        return new(pairs.Select(encode).ToList(), text);
    }

    /// <summary>One pair encoded as the model's family frames a training pair (<see cref="Encode"/>).</summary>
    private static Func<SentencePair, EncodedPair> Encoder(TextPipeline text, PairEncoding? encoding, PairEncodingContext? context)
    {
        var e = encoding ?? PairEncoding.Default;
        var c = context ?? new PairEncodingContext();
        return p => new EncodedPair(e.Source(text, p.Source, c), e.Target(text, p.Target, c));
    }

    /// <summary>
    /// <see cref="Encode"/> over a stream: the pairs are read <paramref name="chunkPairs"/> at a time, each chunk encoded on
    /// up to <paramref name="threads"/> threads, and the encoded pairs come out in stream order (the tokenizers are thread-safe).
    /// </summary>
    public static IEnumerable<EncodedPair> EncodeStream(IEnumerable<SentencePair> pairs, TextPipeline text, PairEncoding? encoding = null,
        PairEncodingContext? context = null, int threads = 1, int chunkPairs = 1 << 14)
    {
        var encode = Encoder(text, encoding, context);
        var chunk = new List<SentencePair>(chunkPairs);
        var encoded = new EncodedPair[chunkPairs];
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
        foreach (var pair in pairs)
        {
            chunk.Add(pair);
            if (chunk.Count < chunkPairs) continue;
            Parallel.For(0, chunk.Count, parallel, i => encoded[i] = encode(chunk[i]));
            for (int i = 0; i < chunk.Count; i++) yield return encoded[i];
            chunk.Clear();
        }
        Parallel.For(0, chunk.Count, parallel, i => encoded[i] = encode(chunk[i]));
        for (int i = 0; i < chunk.Count; i++) yield return encoded[i];
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
    /// With <paramref name="bpeSamplePairs"/>, BPE learns from a uniform sample of that many pairs under <paramref name="seed"/>
    /// (<see cref="ReservoirSample{T}"/>, as a streamed corpus is sampled).
    /// </summary>
    /// <returns>The encoded pairs with their pipeline, and the BPE model, if any.</returns>
    public static (TranslationData Data, BpeTokenizer? Subwords) ForTraining(
        IReadOnlyList<SentencePair> pairs, TextConfig text, int bpeVocabSize = 8000, int minFrequency = 1,
        bool jointVocabulary = false, IReadOnlyList<SentencePair>? vocabularyPairs = null, SentencePiecePair? sentencePiece = null,
        int? bpeSamplePairs = null, int seed = 0)
    {
        var learnFrom = text.Tokenizer != "bpe" ? vocabularyPairs ?? pairs
            : bpeSamplePairs is int sample && pairs.Count > sample ? ReservoirSample<SentencePair>.Of(pairs, sample, seed) : pairs;
        var (pipeline, subwords) = LearnText(learnFrom, text, bpeVocabSize, minFrequency, jointVocabulary, sentencePiece);
        return (Encode(pairs, pipeline), subwords);
    }

    /// <summary>
    /// The text pipeline of a new model, learnt from <paramref name="pairs"/>: a joint BPE model of <paramref name="bpeVocabSize"/>
    /// pieces trained on the normalised sentences of both sides (<c>bpe</c>; the result depends only on the multiset of
    /// sentences), or vocabularies of the words (<c>word</c>) or of the SentencePiece pieces (<c>spm</c>, models trained
    /// beforehand) used at least <paramref name="minFrequency"/> times, one for both sides when <paramref name="jointVocabulary"/>.
    /// <paramref name="pairs"/> is enumerated once for BPE and twice for vocabularies when it is not a list (a corpus
    /// streamed from its file is read again rather than held).
    /// </summary>
    public static (TextPipeline Text, BpeTokenizer? Subwords) LearnText(IEnumerable<SentencePair> pairs, TextConfig text, int bpeVocabSize = 8000,
        int minFrequency = 1, bool jointVocabulary = false, SentencePiecePair? sentencePiece = null)
    {
        var normalizer = TextNormalizers.FromName(text.Normalizer);
        if (text.Tokenizer == "bpe")
        {
            var subwords = BpeTokenizer.Train(pairs.SelectMany(p => new[] { normalizer.Normalize(p.Source), normalizer.Normalize(p.Target) }),
                new BpeTrainingOptions { VocabSize = bpeVocabSize });
            return (TextPipeline.Create(text, subwords.Vocabulary, subwords.Vocabulary, subwords), subwords);
        }
        Func<SentencePair, (string[] Src, string[] Tgt)> tokens;
        if (text.Tokenizer == "spm")
        {
            var spm = sentencePiece ?? throw new ArgumentException("text config: the 'spm' tokenizer needs its SentencePiece models");
            tokens = p => (spm.Source.EncodePieces(normalizer.Normalize(p.Source)), spm.Target.EncodePieces(normalizer.Normalize(p.Target)));
        }
        else if (text.Tokenizer == "word")
            tokens = p => (WordTokenizer.Split(normalizer.Normalize(p.Source)), WordTokenizer.Split(normalizer.Normalize(p.Target)));
        else
            throw new ArgumentException($"text config: vocabularies are built from words or SentencePiece pieces here; the '{text.Tokenizer}' tokenizer brings its own");
        var tokenized = pairs is IReadOnlyCollection<SentencePair> ? pairs.Select(tokens).ToList() : pairs.Select(tokens);
        var (source, target) = Vocabularies(tokenized, minFrequency, jointVocabulary);
        return (TextPipeline.Create(text, source, target, sentencePiece: text.Tokenizer == "spm" ? sentencePiece : null), null);
    }

    /// <summary>
    /// SentencePiece data: segments the normalised sentences with the given models (trained beforehand), builds the
    /// vocabularies from the pieces <paramref name="vocabularyPairs"/> (default: the same pairs) use at least
    /// <paramref name="minFrequency"/> times — one for both sides with <paramref name="jointVocabulary"/> — and encodes
    /// the pairs with them.
    /// </summary>
    public static TranslationData WithSentencePiece(IReadOnlyList<SentencePair> pairs, TextConfig text, SentencePiecePair sentencePiece,
        int minFrequency = 1, bool jointVocabulary = false, IReadOnlyList<SentencePair>? vocabularyPairs = null) =>
        Encode(pairs, LearnText(vocabularyPairs ?? pairs, text, minFrequency: minFrequency, jointVocabulary: jointVocabulary, sentencePiece: sentencePiece).Text);

    /// <summary>Source and target vocabularies of tokenized pairs (one instance for both sides when joint).</summary>
    private static (Vocabulary Source, Vocabulary Target) Vocabularies(IEnumerable<(string[] Src, string[] Tgt)> tokens, int minFrequency, bool joint)
    {
        if (joint)
        {
            var both = Vocabulary.Build(tokens.Select(t => t.Src).Concat(tokens.Select(t => t.Tgt)), minFrequency);
            return (both, both);
        }
        return (Vocabulary.Build(tokens.Select(t => t.Src), minFrequency), Vocabulary.Build(tokens.Select(t => t.Tgt), minFrequency));
    }
}
