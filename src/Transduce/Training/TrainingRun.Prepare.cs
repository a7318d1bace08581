using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>A <see cref="TrainingRun"/> written down at update 0, for trainers in other processes.</summary>
public sealed partial class TrainingRun
{
    /// <summary>
    /// Instead of <see cref="Run"/>: does everything the run does before its first update — reads the corpus, learns the
    /// text side (vocabularies, BPE or SentencePiece), encodes the pairs, initialises the model under the seed — and writes
    /// the run directory as it stands at update 0: the checkpoint (<c>config.json</c>, vocabularies, subword models, the
    /// initial <c>model.safetensors</c>), <c>train.json</c> (this configuration), <c>trainer.json</c> (position 0) and the
    /// generator's state, plus the encoded pairs as memory-mappable token shards in <c>data/</c>. The PyTorch DDP trainer
    /// (<c>python/transduce_torch</c>, under <c>torchrun</c>) trains such a directory; <see cref="Resume"/> trains it here, to
    /// the weights <see cref="Run"/> would reach, reading the mapped shards instead of the corpus.
    /// <para>
    /// The corpus streams through, never held: a first pass hashes it (the corpus fingerprint), applies the text filters
    /// (a bit a pair remembers what they dropped) and samples the pairs BPE learns from (<see cref="TextOptions.BpeSamplePairs"/>);
    /// word and SentencePiece vocabularies count the pairs in passes of their own; the last pass encodes the pairs in
    /// chunks on the run's threads, applies the length filters and writes the shards. Memory is the BPE sample, the
    /// duplicate filter's hashes (8 bytes a distinct pair) and one chunk.
    /// </para>
    /// </summary>
    /// <param name="shardPairs">Most sentence pairs per shard file.</param>
    public PreparationSummary Prepare(int shardPairs = TokenShards.DefaultShardPairs)
    {
        if (started) throw new InvalidOperationException("a TrainingRun runs or prepares once");
        if (resuming) throw new InvalidOperationException($"{Directory}: Prepare writes a new run; this one is being resumed");
        ArgumentOutOfRangeException.ThrowIfLessThan(shardPairs, 1);
        started = true;
        if (Config.Training.Threads is int n) set_num_threads(n);
        var (prepared, summary) = PrepareStreamed(shardPairs, readValidation: false);
        using (prepared)
        {
            Save(prepared.Checkpoint, prepared, TrainingPosition.Start, optimizer: null);
            return summary;
        }
    }

    /// <summary>
    /// The streaming preparation (<see cref="Prepare"/>): the corpus or corpora read in passes, never held, the text side
    /// learnt, the model built (or loaded from <c>init</c>), the pairs encoded into the token shards of the run directory's
    /// <c>data/</c>, which the pairs returned map. The caller saves the run directory (the save carries <c>data/</c> into it).
    /// </summary>
    private (Prepared Prepared, PreparationSummary Summary) PrepareStreamed(int shardPairs, bool readValidation)
    {
        var data = Config.Data;
        var sources = StreamCorpora();
        string corpusName = string.Join(" + ", sources.Select(c => c.Name));
        var filter = new CorpusFilter(data.DropIdentical, data.DropDuplicates, data.MaxLength, data.MaxLengthRatio);
        bool learnsBpe = Config.Init is null && Config.Text.Tokenizer == TokenizerKind.Bpe;
        var clock = System.Diagnostics.Stopwatch.StartNew();

        // Pass 1: the fingerprint, the text filters (a bit a pair: dropped), the BPE sample.
        var dropped = new List<ulong>();
        var firsts = new int[sources.Count];   // global number of each corpus's first pair
        var sample = learnsBpe ? new ReservoirSample<SentencePair>(Config.Text.BpeSamplePairs, Config.Training.Seed) : null;
        CorpusFingerprint fingerprint;
        using (var hash = new CorpusFingerprint.Builder())
        {
            int i = 0;
            for (int k = 0; k < sources.Count; k++)
            {
                firsts[k] = i;
                foreach (var pair in sources[k].Pairs)
                {
                    CollectEvery(i);
                    hash.Add(pair);
                    if (i % 64 == 0) dropped.Add(0);
                    if (!filter.KeepText(pair)) dropped[^1] |= 1UL << (i % 64);
                    else sample?.Add(pair);
                    i = checked(i + 1);
                }
                if (sources[k].Stream is { Skipped.SkippedLines: > 0 } s)
                    Warning?.Invoke(this, $"skipped {s.Skipped.SkippedLines} malformed line(s) of {sources[k].Name}; first: {s.Skipped.SkipReasons.FirstOrDefault()}");
            }
            fingerprint = hash.Build();
        }
        filter.TextDone();
        IEnumerable<SentencePair> Kept(int k) =>
            sources[k].Pairs.Where((_, i) => (dropped[(firsts[k] + i) / 64] & (1UL << ((firsts[k] + i) % 64))) == 0);
        var validation = readValidation ? ReadValidation() : null;

        Checkpoint checkpoint;
        if (Config.Init is { } init)
        {
            checkpoint = LoadInit(init);
        }
        else
        {
            var text = Config.Text.ToTextConfig();
            var sentencePiece = Config.Text.Tokenizer == TokenizerKind.Spm ? ReadSentencePiece(Config.Text) : null;
            var vocabularyPairs = data.VocabularyPairs is int vp && data.MaxPairs is not null
                ? sources.SelectMany(c => c.All.Take(vp)) : Enumerable.Range(0, sources.Count).SelectMany(Kept);
            var (pipeline, subwords) = TranslationData.LearnText(sample?.Items ?? vocabularyPairs, text, Config.Text.BpeVocabSize,
                Config.Text.MinFrequency, Config.Model.ShareEmbeddings, sentencePiece);
            if (subwords is not null)
                Say($"bpe: {subwords.Vocabulary.Count:N0} pieces (joint) learnt from {sample!.Items.Count:N0} of {sample.Seen:N0} pairs in {clock.Elapsed.TotalSeconds:F1}s");
            sample = null;   // the sample's strings may go before the pairs are encoded
            checkpoint = NewModel(text, pipeline.Source.Vocabulary, pipeline.Target.Vocabulary, subwords, sentencePiece);
        }
        try
        {
            // Pass 2: encode in chunks, filter by length, write the shards.
            string folder = Path.Combine(Directory, Preparation.ShardsFolder);
            var textPipeline = checkpoint.CreateTextPipeline();
            var context = EncodingContext(checkpoint);
            var kept = new int[sources.Count];
            int written = 0;
            IEnumerable<EncodedPair> Counted(IEnumerable<EncodedPair> pairs, int k)
            {
                foreach (var pair in pairs)
                {
                    CollectEvery(written++);
                    kept[k]++;
                    yield return pair;
                }
            }
            TokenShardsInfo info;
            try
            {
                var encoded = Enumerable.Range(0, sources.Count).SelectMany(k => Counted(
                    TranslationData.EncodeStream(Kept(k), textPipeline, checkpoint.PairEncoding, context, threads: get_num_threads()).Where(filter.KeepLength), k));
                info = TokenShards.Write(folder, encoded, checkpoint.SourceVocabulary.Count, checkpoint.TargetVocabulary.Count, shardPairs,
                    data.Corpora is null ? null : () => kept);
                if (info.Pairs == 0)
                    throw new ArgumentException($"the filters dropped every training pair ({filter.Counts().Total:N0}): loosen 'data.max_length' / 'data.max_length_ratio'");
            }
            catch
            {
                if (System.IO.Directory.Exists(folder)) System.IO.Directory.Delete(folder, recursive: true);
                throw;
            }
            var counts = filter.Counts(sources.Sum(c => c.Stream?.EmptySides ?? 0));
            Say($"filters: dropped {counts.Describe(data.MaxLength, data.MaxLengthRatio)}; {info.Pairs:N0} of {fingerprint.Pairs:N0} pairs left" +
                (data.Corpora is null ? "" : $" ({string.Join(", ", kept.Select((n, k) => $"{sources[k].Name}: {n:N0} × {data.Corpora[k].Weight.ToString(System.Globalization.CultureInfo.InvariantCulture)}"))})"));
            long parameters = Trainer.DistinctParameters(checkpoint.Model).Sum(p => p.numel());
            Say($"prepared {corpusName}: {info.Pairs:N0} pairs, {info.SourceTokens:N0}/{info.TargetTokens:N0} source/target tokens, " +
                $"vocab {info.SourceVocabularySize:N0}/{info.TargetVocabularySize:N0}, {info.Shards.Count} shard(s), " +
                $"{checkpoint.ModelConfig.Architecture} {parameters:N0} parameters, {clock.Elapsed.TotalSeconds:F1}s");
            var prepared = new Prepared(checkpoint, ShardPairs.Open(folder), corpusName, fingerprint, validation, null);
            return (prepared, new PreparationSummary(Directory, (int)info.Pairs, info.SourceTokens, info.TargetTokens,
                info.SourceVocabularySize, info.TargetVocabularySize, info.Shards.Count, parameters)
            {
                CorpusPairs = fingerprint.Pairs, DroppedIdentical = counts.Identical, DroppedDuplicates = counts.Duplicates,
                DroppedTooLong = counts.TooLong, DroppedLengthRatio = counts.Ratio, DroppedEmpty = counts.Empty,
            });
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>Pairs between two collections of the streaming passes (<see cref="CollectEvery"/>).</summary>
    private const int CollectPairs = 1 << 20;

    /// <summary>
    /// Every <see cref="CollectPairs"/> pairs of a streaming pass, a full compacting collection that hands freed memory
    /// back to the system. Each chunk of pairs lives long enough to be promoted to the oldest generation, so garbage
    /// there grows with the corpus until the collector's own schedule reaches it (3.6 GB at 20 million pairs before this):
    /// the passes' memory is bounded by what they hold, not by what they read.
    /// </summary>
    private static void CollectEvery(int pairs)
    {
        if (pairs > 0 && pairs % CollectPairs == 0) GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>
    /// The corpus, or each of <c>data.corpora</c>, as a stream read again at each enumeration (or the pairs given in
    /// memory): <c>All</c> read as far as <c>data.max_pairs</c> and <c>data.vocabulary_pairs</c> need, <c>Pairs</c> its first
    /// <c>data.max_pairs</c>; the file stream, when there is one, counts what it skipped.
    /// </summary>
    private List<(IEnumerable<SentencePair> All, IEnumerable<SentencePair> Pairs, string Name, ParallelCorpus.CorpusStream? Stream)> StreamCorpora()
    {
        var data = Config.Data;
        IEnumerable<SentencePair> Cut(IEnumerable<SentencePair> all) => data.MaxPairs is int take ? all.Take(take) : all;
        if (givenPairs is not null) return [(givenPairs, Cut(givenPairs), "pairs given in memory", null)];
        int? readPairs = data.MaxPairs is int tp ? Math.Max(tp, data.VocabularyPairs ?? 0) : null;
        var options = new CorpusReadOptions { SkipInvalid = data.SkipInvalid, MaxPairs = readPairs };
        if (data.Corpora is { } corpora)
            return [.. corpora.Select(c => ParallelCorpus.Stream(LocateCorpus(c.Path!), null, options))
                .Select(s => ((IEnumerable<SentencePair>)s, Cut(s), s.Path, (ParallelCorpus.CorpusStream?)s))];
        string source = data.Train ?? throw new ArgumentException("'data.train': no training data (a corpus file, a folder, or a known corpus name such as fra-eng)");
        var stream = data.Target is { } target
            ? ParallelCorpus.Stream(source, target, options)
            : ParallelCorpus.Stream(LocateCorpus(source), null, options);
        string name = data.Target is { } t ? $"{Path.GetFileName(source)} + {Path.GetFileName(t)}" : stream.Path;
        return [(stream, Cut(stream), name, stream)];
    }

    /// <summary>The weights of <c>data.corpora</c> over the prepared pairs, whose manifest counts each corpus's pairs; null for one corpus.</summary>
    private CorpusWeights? Weights(IReadOnlyList<EncodedPair> pairs)
    {
        if (Config.Data.Corpora is not { } corpora) return null;
        string manifest = Path.Combine(Directory, Preparation.ShardsFolder, TokenShards.ManifestFile);
        if (pairs is not ShardPairs { Info.Corpora: { } counts } || counts.Count != corpora.Count)
            throw new InvalidDataException($"{manifest}: 'data.corpora' names {corpora.Count} corpora, the shards do not count the pairs of each (prepare the run again)");
        return new CorpusWeights(counts, [.. corpora.Select(c => c.Weight)]);
    }
}

/// <summary>What <see cref="TrainingRun.Prepare"/> wrote.</summary>
/// <param name="Directory">The prepared run directory.</param>
/// <param name="Pairs">Training pairs encoded.</param>
/// <param name="SourceTokens">Source token ids in all (no end-of-sentence marks).</param>
/// <param name="TargetTokens">Target token ids in all (no end-of-sentence marks).</param>
/// <param name="SourceVocabularySize">Source vocabulary size.</param>
/// <param name="TargetVocabularySize">Target vocabulary size.</param>
/// <param name="Shards">Shard files written in <c>data/</c>.</param>
/// <param name="Parameters">The model's parameters (a tied weight counted once).</param>
public sealed record PreparationSummary(string Directory, int Pairs, long SourceTokens, long TargetTokens, int SourceVocabularySize,
    int TargetVocabularySize, int Shards, long Parameters)
{
    /// <summary>Pairs read from the corpus (after <c>data.max_pairs</c>), before the filters.</summary>
    public int CorpusPairs { get; init; }

    /// <summary>Pairs <c>data.drop_identical</c> dropped (source and target the same text).</summary>
    public int DroppedIdentical { get; init; }

    /// <summary>Pairs <c>data.drop_duplicates</c> dropped (repeats of an earlier pair).</summary>
    public int DroppedDuplicates { get; init; }

    /// <summary>Pairs <c>data.max_length</c> dropped (a side over that many tokens).</summary>
    public int DroppedTooLong { get; init; }

    /// <summary>Pairs <c>data.max_length_ratio</c> dropped.</summary>
    public int DroppedLengthRatio { get; init; }

    /// <summary>Pairs with an empty side: lines skipped as empty (<c>data.skip_invalid</c>) and pairs a side of which encodes to no token.</summary>
    public int DroppedEmpty { get; init; }
}
