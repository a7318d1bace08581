using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Text;
using Transduce.Training;

namespace Transduce.Tests.Training;

/// <summary>
/// Corpora larger than memory (issue 27): <c>prepare</c> streams the corpus (BPE on a sample, filters counted, encoding in
/// chunks into the shards), and training reads the pairs from the mapped shards, shuffled in chunks.
/// </summary>
public sealed class StreamingCorpusTests : IDisposable
{
    private readonly TempDir tmp = new();

    public void Dispose() => tmp.Dispose();

    /// <summary>A small corpus with distinct pairs (recombined sentences), as a TSV file.</summary>
    private string Corpus(int pairs, out List<SentencePair> list, int seed = 1)
    {
        var random = new Random(seed);
        var basis = TrainingRunTests.Pairs;
        list = [];
        var lines = new System.Text.StringBuilder();
        for (int i = 0; i < pairs; i++)
        {
            var a = basis[random.Next(basis.Length)];
            var b = basis[random.Next(basis.Length)];
            var pair = new SentencePair($"{a.Source} {b.Source} {i}", $"{a.Target} {b.Target} {i}", i + 1);
            list.Add(pair);
            lines.Append(pair.Source).Append('\t').Append(pair.Target).Append('\n');
        }
        return tmp.WriteText($"corpus-{pairs}-{seed}.tsv", lines.ToString());
    }

    private static RunConfig Bpe(string data, int samplePairs = 1_000_000) => TrainingRunTests.Tiny(epochs: 2) with
    {
        Text = new TextOptions { Tokenizer = TokenizerKind.Bpe, BpeVocabSize = 300, BpeSamplePairs = samplePairs },
        Data = new DataOptions { Train = data },
    };

    [Fact]
    public void StreamingPrepareWritesTheIdsTheInMemoryEncodingGives()
    {
        string data = Corpus(300, out var pairs);
        foreach (var tokenizer in new[] { TokenizerKind.Bpe, TokenizerKind.Word })
        {
            var text = Bpe(data).Text with { Tokenizer = tokenizer, MinFrequency = 2 };
            // Today's in-memory encoding of the same pairs: learn the text side from all of them, encode, filter by length
            // (at the median length, so that the filter drops about half).
            var (expected, _) = TranslationData.ForTraining(pairs, text.ToTextConfig(), text.BpeVocabSize, text.MinFrequency);
            int median = expected.Pairs.Select(p => Math.Max(p.Source.Length, p.Target.Length)).Order().ElementAt(pairs.Count / 2);
            var kept = CorpusFilters.ByLength(expected.Pairs, median, null, out var counts);
            Assert.InRange(counts.TooLong, 1, pairs.Count - 1);

            var config = Bpe(data) with { Text = text, Data = new DataOptions { Train = data, MaxLength = median } };
            string dir = tmp.File($"prepared-{tokenizer}");
            PreparationSummary summary;
            using (var run = new TrainingRun(config, dir)) summary = run.Prepare(shardPairs: 64);
            Assert.Equal((kept.Count, counts.TooLong), (summary.Pairs, summary.DroppedTooLong));
            var shards = TokenShards.Read(Path.Combine(dir, "data"));
            Assert.Equal(kept.Select(p => p.Source), shards.Select(p => p.Source));
            Assert.Equal(kept.Select(p => p.Target), shards.Select(p => p.Target));
            using var checkpoint = Checkpoint.Load(dir);
            Assert.Equal(expected.SourceVocabulary.Tokens, checkpoint.SourceVocabulary.Tokens);
            Assert.Equal(expected.TargetVocabulary.Tokens, checkpoint.TargetVocabulary.Tokens);
        }
    }

    [Fact]
    public void BpeLearnsFromAUniformSampleUnderTheSeedTheSameInPrepareAndTrain()
    {
        string data = Corpus(400, out var pairs);
        var config = Bpe(data, samplePairs: 50) with { Training = Bpe(data).Training with { MaxUpdates = 1 } };
        string prepared = tmp.File("prepared"), trained = tmp.File("trained");
        var messages = new List<string>();
        using (var run = new TrainingRun(config, prepared))
        {
            run.Message += (_, m) => messages.Add(m);
            run.Prepare();
        }
        Assert.Contains(messages, m => m.Contains("learnt from 50 of 400 pairs"));
        using (var run = new TrainingRun(config, trained)) run.Run();
        Assert.Equal(File.ReadAllBytes(Path.Combine(prepared, "bpe.json")), File.ReadAllBytes(Path.Combine(trained, "bpe.json")));

        // The sample is the reservoir's under the seed, and a smaller sample gives another model than the whole corpus.
        var sample = ReservoirSample<SentencePair>.Of(pairs, 50, config.Training.Seed);
        var normalizer = TextNormalizers.FromName(config.Text.ToTextConfig().Normalizer);
        var expected = BpeTokenizer.Train(sample.SelectMany(p => new[] { normalizer.Normalize(p.Source), normalizer.Normalize(p.Target) }),
            new BpeTrainingOptions { VocabSize = 300 });
        using var checkpoint = Checkpoint.Load(prepared);
        Assert.Equal(expected.Vocabulary.Tokens, checkpoint.SourceVocabulary.Tokens);
        Assert.Contains("\"bpe_sample_pairs\": 50", File.ReadAllText(Path.Combine(prepared, "train.json")));
    }

    [Fact]
    public void ReservoirSampleIsWholeWhenSmallDeterministicAndUniform()
    {
        Assert.Equal(Enumerable.Range(0, 10), ReservoirSample<int>.Of(Enumerable.Range(0, 10), 10, 7));
        Assert.Equal(ReservoirSample<int>.Of(Enumerable.Range(0, 1000), 10, 7), ReservoirSample<int>.Of(Enumerable.Range(0, 1000), 10, 7));
        // Each of 100 items is kept with probability 1/10: over 2,000 seeds, 200 times each (σ ≈ 13.4; ±80 is 6σ).
        var counts = new int[100];
        for (int seed = 0; seed < 2000; seed++)
            foreach (int item in ReservoirSample<int>.Of(Enumerable.Range(0, 100), 10, seed)) counts[item]++;
        Assert.All(counts, c => Assert.InRange(c, 120, 280));
    }

    [Fact]
    public void PrepareCountsWhatEachFilterDropped()
    {
        string data = tmp.WriteText("filters.tsv",
            "Go.\tVa !\n" +                                   // kept
            "OK.\tOK.\n" +                                    // identical sides
            "Go.\tVa !\n" +                                   // repeat
            "one two three four five six seven\tun\n" +      // too long (7 > 6)
            "a b c d\tx\n" +                                  // ratio 4 > 3
            "Hi.\t \n" +                                      // empty target: skipped as invalid, counted as empty
            "I lost.\tJ'ai perdu.\n");                        // kept
        var config = TrainingRunTests.Tiny() with
        {
            Data = new DataOptions { Train = data, SkipInvalid = true, DropIdentical = true, DropDuplicates = true, MaxLength = 6, MaxLengthRatio = 3 },
        };
        var messages = new List<string>();
        PreparationSummary summary;
        using (var run = new TrainingRun(config, tmp.File("run")))
        {
            run.Message += (_, m) => messages.Add(m);
            summary = run.Prepare();
        }
        Assert.Equal((6, 2), (summary.CorpusPairs, summary.Pairs));
        Assert.Equal((1, 1, 1, 1, 1), (summary.DroppedIdentical, summary.DroppedDuplicates, summary.DroppedTooLong, summary.DroppedLengthRatio, summary.DroppedEmpty));
        Assert.Contains(messages, m => m.StartsWith("filters: dropped 1 with identical sides, 1 repeated, 1 with a side over 6 tokens, 1 with a length ratio over 3, 1 with an empty side; 2 of 6 pairs left"));
    }

    [Fact]
    public void TheFingerprintOfAStreamIsTheFingerprintOfTheList()
    {
        string data = Corpus(50, out var pairs);
        var stream = ParallelCorpus.Stream(data, null);
        Assert.Equal(CorpusFingerprint.Of(pairs), CorpusFingerprint.Of(stream));
        Assert.Equal(pairs, stream.ToList());
        Assert.Equal(pairs.Take(7), ParallelCorpus.Stream(data, null, new CorpusReadOptions { MaxPairs = 7 }));
    }

    [Fact]
    public void ShardPairsReadIdsOnDemandAndKnowTheirLengths()
    {
        var pairs = Enumerable.Range(0, 23).Select(i => new EncodedPair(Enumerable.Range(1, i % 5).ToArray(), Enumerable.Range(2, i % 7 + 1).ToArray())).ToList();
        string dir = tmp.File("shards");
        TokenShards.Write(dir, pairs, 20, 20, shardPairs: 4);
        using var mapped = ShardPairs.Open(dir);
        Assert.Equal(23, mapped.Count);
        for (int i = 0; i < pairs.Count; i++)
        {
            Assert.Equal((pairs[i].Source.Length, pairs[i].Target.Length), (mapped.SourceLength(i), mapped.TargetLength(i)));
            Assert.Equal(pairs[i].Source, mapped[i].Source);
            Assert.Equal(pairs[i].Target, mapped[i].Target);
        }
        // Lengths are kept in 16 bits; a longer side is read from the offsets.
        string longDir = tmp.File("long");
        TokenShards.Write(longDir, [new EncodedPair(new int[70_000], [1]), new EncodedPair([1, 2], new int[65_535])], 20, 20);
        using (var longPairs = ShardPairs.Open(longDir))
            Assert.Equal((70_000, 1, 2, 65_535), (longPairs.SourceLength(0), longPairs.TargetLength(0), longPairs.SourceLength(1), longPairs.TargetLength(1)));
        var specials = new SpecialIds(0, 1, 2);
        var (source, target) = Batching.FramedLengths(mapped, specials, 4);
        Assert.Equal(pairs.Select(p => Batching.Frame(p.Source, specials, 4).Length), source);
        Assert.Equal(pairs.Select(p => Batching.Frame(p.Target, specials, 4).Length), target);
    }

    [Fact]
    public void AHostileShardIsOneLineNamingTheFile()
    {
        string dir = tmp.File("bad");
        TokenShards.Write(dir, [new EncodedPair([3], [4]), new EncodedPair([5, 6], [7])], 20, 20);
        string manifest = Path.Combine(dir, TokenShards.ManifestFile);
        // Ids beyond the vocabulary the manifest claims: refused when the pair is read, naming the shard.
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"source_vocab_size\": 20", "\"source_vocab_size\": 6"));
        using (var mapped = ShardPairs.Open(dir))
        {
            Assert.Equal([3], mapped[0].Source);
            var e = Assert.Throws<InvalidDataException>(() => mapped[1]);
            Assert.Contains("shard-00000.safetensors: source id 6 is outside the source vocabulary (size 6)", e.Message);
        }
        // Offsets that fall: refused when the shards are opened.
        string shard = Path.Combine(dir, "shard-00000.safetensors");
        using (var ids = TorchSharp.torch.tensor(new[] { 3, 5, 6 }))
        using (var offsets = TorchSharp.torch.tensor(new long[] { 0, 2, 1 }))
        using (var tids = TorchSharp.torch.tensor(new[] { 4, 7 }))
        using (var toffsets = TorchSharp.torch.tensor(new long[] { 0, 1, 2 }))
            Transduce.IO.Safetensors.Save(shard, new Dictionary<string, TorchSharp.torch.Tensor>
                { ["source_ids"] = ids, ["source_offsets"] = offsets, ["target_ids"] = tids, ["target_offsets"] = toffsets });
        var bad = Assert.Throws<InvalidDataException>(() => ShardPairs.Open(dir));
        Assert.Contains("must run from 0 to the 3 ids", bad.Message);
        using (var ids = TorchSharp.torch.tensor(new[] { 3, 5, 6 }))
        using (var offsets = TorchSharp.torch.tensor(new long[] { 0, 3, 3 }))
        using (var tids = TorchSharp.torch.tensor(new[] { 4, 7 }))
        using (var toffsets = TorchSharp.torch.tensor(new long[] { 0, 2, 1 }))
            Transduce.IO.Safetensors.Save(shard, new Dictionary<string, TorchSharp.torch.Tensor>
                { ["source_ids"] = ids, ["source_offsets"] = offsets, ["target_ids"] = tids, ["target_offsets"] = toffsets });
        Assert.Contains("must run from 0 to the 2 ids", Assert.Throws<InvalidDataException>(() => ShardPairs.Open(dir)).Message);
    }

    [Fact]
    public void ChunkedOrderIsAPermutationReadAWindowAtATimeAndTheMemoryOrderWhenItFitsOneWindow()
    {
        Assert.Equal(Batching.EpochOrder(1000, 5, 2), Batching.ChunkedEpochOrder(1000, 5, 2, chunkPairs: 100, windowChunks: 10));
        var order = Batching.ChunkedEpochOrder(1000, 5, 2, chunkPairs: 50, windowChunks: 3);
        Assert.Equal(Enumerable.Range(0, 1000), order.Order());
        Assert.Equal(order, Batching.ChunkedEpochOrder(1000, 5, 2, chunkPairs: 50, windowChunks: 3));
        Assert.NotEqual(order, Batching.ChunkedEpochOrder(1000, 5, 3, chunkPairs: 50, windowChunks: 3));
        // Every window of 150 positions draws on at most 3 chunks; the windows are shuffled inside (not in corpus order).
        foreach (var window in order.Chunk(150))
        {
            Assert.InRange(window.Select(i => i / 50).Distinct().Count(), 1, 3);
            Assert.NotEqual(window.Order(), window);
        }
    }

    [Fact]
    public void ShardBackedTrainingOfALargerCorpusResumesInTheSameOrder()
    {
        // A prepared run trains from its mapped shards; cut short and resumed, it reaches the weights of an uninterrupted one.
        string data = Corpus(120, out _);
        var config = TrainingRunTests.Tiny(epochs: 2) with { Data = new DataOptions { Train = data } };
        string whole = tmp.File("whole"), cut = tmp.File("cut");
        using (var run = new TrainingRun(config, whole)) run.Prepare(shardPairs: 50);
        using (var run = TrainingRun.Resume(whole)) run.Run();
        using (var run = new TrainingRun(config, cut)) run.Prepare(shardPairs: 50);
        using (var run = TrainingRun.Resume(cut))
        {
            using var stop = new CancellationTokenSource();
            run.Progress += (_, p) => { if (p.Step == 13) stop.Cancel(); };
            Assert.Equal(TrainingStop.Cancelled, run.Run(stop.Token).Stop);
        }
        using (var run = TrainingRun.Resume(cut)) run.Run();
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "model.safetensors")), File.ReadAllBytes(Path.Combine(cut, "model.safetensors")));
    }

    [Fact]
    public void WeightsRepeatAndSampleEachCorpusPerEpochUnderTheSeed()
    {
        var weights = new CorpusWeights([100, 0, 200, 50], [2, 1, 0.25, 1]);
        var order = Batching.EpochOrder(350, 9, 1, weights: weights);
        var counts = order.GroupBy(i => i).ToDictionary(g => g.Key, g => g.Count());
        Assert.All(Enumerable.Range(0, 100), i => Assert.Equal(2, counts[i]));
        Assert.All(Enumerable.Range(300, 50), i => Assert.Equal(1, counts[i]));
        Assert.All(counts.Where(c => c.Key is >= 100 and < 300), c => Assert.Equal(1, c.Value));
        int sampled = counts.Keys.Count(i => i is >= 100 and < 300);
        Assert.InRange(sampled, 20, 80);   // 50 expected, σ ≈ 6.1
        Assert.Equal(order, Batching.EpochOrder(350, 9, 1, weights: weights));
        Assert.NotEqual(order.Where(i => i is >= 100 and < 300).Order(), Batching.EpochOrder(350, 9, 2, weights: weights).Where(i => i is >= 100 and < 300).Order());
        // Over 40 epochs a pair of weight 0.25 is seen 10 times on average.
        double seen = Enumerable.Range(1, 40).Sum(e => Batching.EpochOrder(350, 9, e, weights: weights).Count(i => i is >= 100 and < 300)) / 200.0;
        Assert.InRange(seen, 8.5, 11.5);
        // Weight 1 everywhere is the unweighted order; the chunked order samples the same way.
        Assert.Equal(Batching.EpochOrder(350, 9, 3), Batching.EpochOrder(350, 9, 3, weights: new CorpusWeights([150, 200], [1, 1])));
        var chunked = Batching.ChunkedEpochOrder(350, 9, 1, chunkPairs: 40, windowChunks: 2, weights: weights);
        Assert.All(Enumerable.Range(0, 100), i => Assert.Equal(2, chunked.Count(j => j == i)));
        Assert.All(Enumerable.Range(300, 50), i => Assert.Equal(1, chunked.Count(j => j == i)));
    }

    [Fact]
    public void TrainOnWeightedCorporaPreparesThemIntoShardsAndSeesEachAsOftenAsItsWeight()
    {
        string first = Corpus(30, out _, seed: 1), second = Corpus(20, out _, seed: 2);
        var config = TrainingRunTests.Tiny(epochs: 2) with
        {
            Data = new DataOptions { Corpora = [new CorpusSource { Path = first }, new CorpusSource { Path = second, Weight = 2 }] },
        };
        string dir = tmp.File("weighted");
        var messages = new List<string>();
        TrainingSummary summary;
        using (var run = new TrainingRun(config, dir))
        {
            run.Message += (_, m) => messages.Add(m);
            summary = run.Run();
        }
        var info = TokenShards.ReadInfo(Path.Combine(dir, "data"));
        Assert.Equal([30, 20], info.Corpora);
        // 30 + 2 × 20 = 70 pairs an epoch in batches of 3: 24 updates an epoch.
        Assert.Equal(2 * 24, summary.Updates);
        Assert.Contains(messages, m => m.Contains("pairs left (") && m.Contains(": 20 × 2)"));
        Assert.Contains(Path.GetFullPath(first), File.ReadAllText(Path.Combine(dir, "train.json")));
        // Resumed (here: continued for more epochs) it keeps its weights from train.json and reads the shards.
        using (var run = TrainingRun.Resume(dir)) Assert.Equal(summary.Updates, run.Run().Updates);
    }

    [Fact]
    public void TrainStreamsACorpusPastItsSizeBoundToTheWeightsItGivesInMemory()
    {
        // The bound lowered to nothing: this corpus file streams into data/ and trains from the mapped shards.
        string corpus = Corpus(40, out _);
        var config = Bpe(corpus);
        string inMemory = tmp.File("in-memory"), streamed = tmp.File("streamed");
        TrainingSummary a, b;
        using (var run = new TrainingRun(config, inMemory)) a = run.Run();
        var messages = new List<string>();
        using (var run = new TrainingRun(config, streamed) { StreamAboveBytes = 0 })
        {
            run.Message += (_, m) => messages.Add(m);
            b = run.Run();
        }
        Assert.False(File.Exists(Path.Combine(inMemory, "data", TokenShards.ManifestFile)));
        Assert.Equal(40, TokenShards.ReadInfo(Path.Combine(streamed, "data")).Pairs);
        Assert.Contains(messages, m => m.StartsWith("prepared ", StringComparison.Ordinal));
        Assert.Equal(a.Updates, b.Updates);
        Assert.Equal(File.ReadAllBytes(Path.Combine(inMemory, Checkpoint.WeightsFile)), File.ReadAllBytes(Path.Combine(streamed, Checkpoint.WeightsFile)));
    }

    [Theory]
    [InlineData("data:\n  corpora:\n    - { path: a.tsv, wieght: 2 }\n", "unknown key 'data.corpora[0].wieght'")]
    [InlineData("data:\n  corpora:\n    - { path: a.tsv, weight: heavy }\n", "data.corpora[0].weight")]
    [InlineData("data:\n  corpora: a.tsv\n", "data.corpora")]
    [InlineData("data:\n  corpora:\n    - [a.tsv, 2]\n", "data.corpora[0]")]
    public void AMistypedCorporaEntryIsOneLineNamingTheFileAndTheField(string yaml, string expected)
    {
        string path = tmp.WriteText("run.yaml", yaml);
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ACorporaEntryOutOfRangeIsOneLineNamingTheField()
    {
        RunConfig With(params CorpusSource[] corpora) => TrainingRunTests.Tiny() with { Data = new DataOptions { Corpora = corpora } };
        string Refused(RunConfig config) => Assert.Throws<ArgumentException>(config.Validate).Message;
        Assert.Equal("'data.corpora[1].weight' must be a number in (0, 1000] (got -1)", Refused(With(new() { Path = "a" }, new() { Path = "b", Weight = -1 })));
        Assert.Equal("'data.corpora[0].weight' must be a number in (0, 1000] (got NaN)", Refused(With(new CorpusSource { Path = "a", Weight = double.NaN })));
        Assert.Equal("'data.corpora[0].weight' must be a number in (0, 1000] (got 1000000)", Refused(With(new CorpusSource { Path = "a", Weight = 1e6 })));
        Assert.Equal("'data.corpora[0].path' must name a corpus file, folder or known corpus", Refused(With(new CorpusSource { Weight = 2 })));
        Assert.Equal("'data.corpora[0]' must be a mapping with 'path' and 'weight' (got null)", Refused(With([null!])));
        Assert.StartsWith("'data.corpora' lists no corpus", Refused(With()));
        Assert.StartsWith("'data.corpora' lists 257 corpora; at most 256", Refused(With([.. Enumerable.Repeat(new CorpusSource { Path = "a" }, 257)])));
        Assert.StartsWith("'data.corpora' replaces 'data.train'", Refused(With(new CorpusSource { Path = "a" }) with { Data = new DataOptions { Train = "x", Corpora = [new() { Path = "a" }] } }));
        var missing = With(new CorpusSource { Path = tmp.File("none.tsv") });
        string dir = tmp.File("missing");
        using var run = new TrainingRun(missing, dir);
        Assert.Contains("none.tsv: no such file or folder", Assert.Throws<FileNotFoundException>(() => run.Run()).Message);
    }
}
