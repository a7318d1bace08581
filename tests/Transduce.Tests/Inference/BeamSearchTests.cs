using Transduce.Translation;
using Transduce.Architecture;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Tests.Inference.Beam;

/// <summary>One small trained GRU shared by the beam-search tests (training dominates their run time).</summary>
public sealed class TrainedGruFixture : IDisposable
{
    public TrainedGruFixture()
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 60);
        Translator = new Translator(new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        }); // puts the model in eval mode and owns it
        Pipeline = pipeline;
        var src = data.SourceVocabulary;
        var tgt = data.TargetVocabulary;
        SourceIds = new SpecialIds(src.PadId, src.BosId, src.EosId);
        Ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        Sources = TinyModels.Pairs.Select(p => pipeline.EncodeSource(p.Source)).ToList();
    }

    public Translator Translator { get; }
    public EncoderDecoder Model => Translator.Checkpoint.Model;
    internal TextPipeline Pipeline { get; }
    internal SpecialIds SourceIds { get; }
    internal SpecialIds Ids { get; }
    public IReadOnlyList<int[]> Sources { get; }

    public void Dispose() => Translator.Dispose();
}

// One test here counts live tensors process-wide, so the class runs apart from the parallel ones.
[Collection(Transduce.Tests.Training.LiveTensorCountCollection.Name)]
public sealed class BeamSearchTests(TrainedGruFixture f) : IClassFixture<TrainedGruFixture>
{
    private static readonly BeamSearchOptions[] Normalisations =
    [
        new() { Normalization = LengthNormalization.None },
        new() { Normalization = LengthNormalization.D2l, LengthPenalty = 0.75 },
        new() { Normalization = LengthNormalization.Gnmt, LengthPenalty = 1.0 },
    ];

    private IReadOnlyList<IReadOnlyList<Hypothesis>> Beam(IReadOnlyList<int[]> sources, int[] maxLengths, BeamSearchOptions options)
    {
        var (x, len) = Batching.BuildSources(sources, f.SourceIds, null);
        using (x) using (len) return BeamSearch.Decode(f.Model, x, len, f.Ids, maxLengths, options);
    }

    private int[][] Greedy(IReadOnlyList<int[]> sources, int[] maxLengths)
    {
        var (x, len) = Batching.BuildSources(sources, f.SourceIds, null);
        using (x) using (len) return GreedySearch.Decode(f.Model, x, len, f.Ids, maxLengths);
    }

    /// <summary>log P(output, &lt;eos&gt; | source) by teacher forcing the whole output through the model.</summary>
    private double TeacherForcedLogProbability(int[] source, int[] output)
    {
        using var scope = NewDisposeScope();
        using var grad = no_grad();
        var (x, len) = Batching.BuildSources([source], f.SourceIds, null);
        long[] input = [f.Ids.Bos, .. output.Select(t => (long)t)];
        long[] labels = [.. output.Select(t => (long)t), f.Ids.Eos];
        var logits = f.Model.call(x, len, tensor(input, [1, input.Length]));
        var logProbs = logits.to_type(ScalarType.Float64).log_softmax(-1)[0];
        var picked = logProbs.gather(1, tensor(labels).unsqueeze(1));
        return picked.sum().item<double>();
    }

    private static int[] Repeat(int value, int count) => Enumerable.Repeat(value, count).ToArray();

    [Fact]
    public void BeamOfOneDecodesExactlyAsGreedy()
    {
        var maxLengths = Repeat(12, f.Sources.Count);
        var greedy = Greedy(f.Sources, maxLengths);
        var capped = Greedy(f.Sources, Repeat(2, f.Sources.Count));
        foreach (var options in Normalisations)
        {
            var beam = Beam(f.Sources, maxLengths, options with { BeamSize = 1 });
            var beamCapped = Beam(f.Sources, Repeat(2, f.Sources.Count), options with { BeamSize = 1 });
            for (int i = 0; i < f.Sources.Count; i++)
            {
                Assert.Equal(greedy[i], Assert.Single(beam[i]).Tokens);
                Assert.Equal(capped[i], Assert.Single(beamCapped[i]).Tokens);
            }
        }
    }

    [Fact]
    public void BestHypothesisNeverScoresBelowGreedyAndLogProbabilitiesMatchTeacherForcing()
    {
        var maxLengths = Repeat(12, f.Sources.Count);
        var greedy = Greedy(f.Sources, maxLengths);
        foreach (var options in Normalisations)
        foreach (int k in new[] { 2, 4 })
        {
            var beam = Beam(f.Sources, maxLengths, options with { BeamSize = k });
            for (int i = 0; i < f.Sources.Count; i++)
            {
                Assert.True(greedy[i].Length < 12); // greedy ended with <eos>, so its score is comparable
                double greedyScore = options.Score(TeacherForcedLogProbability(f.Sources[i], greedy[i]), greedy[i].Length + 1);
                var best = beam[i][0];
                // float32 incremental vs teacher-forced logits differ by ~1e-8
                Assert.True(best.Score >= greedyScore - 1e-6, $"{options.Normalization} k={k} row {i}: beam {best.Score} < greedy {greedyScore}");
                Assert.Equal(TeacherForcedLogProbability(f.Sources[i], best.Tokens), best.LogProbability, 1e-5);
                Assert.Equal(options.Score(best.LogProbability, best.Tokens.Length + 1), best.Score, 12);
            }
        }
    }

    [Fact]
    public void NBestListsAreSortedDistinctAndConsistent()
    {
        foreach (var options in Normalisations)
        {
            var o = options with { BeamSize = 5, NBest = 5 };
            var results = Beam(f.Sources, Repeat(10, f.Sources.Count), o);
            for (int i = 0; i < f.Sources.Count; i++)
            {
                var list = results[i];
                Assert.InRange(list.Count, 2, 5);
                for (int j = 1; j < list.Count; j++) Assert.True(list[j - 1].Score >= list[j].Score);
                Assert.Equal(list.Count, list.Select(h => string.Join(' ', h.Tokens)).Distinct().Count());
                foreach (var h in list)
                {
                    Assert.DoesNotContain(f.Ids.Eos, h.Tokens);
                    Assert.DoesNotContain(f.Ids.Bos, h.Tokens);
                    Assert.True(h.LogProbability <= 0);
                    Assert.Equal(o.Score(h.LogProbability, h.Tokens.Length + 1), h.Score, 12);
                }
                // n-best extends 1-best: the top hypothesis does not depend on how many are returned.
                var single = Beam([f.Sources[i]], [10], o with { NBest = 1 })[0];
                Assert.Equal(list[0].Tokens, Assert.Single(single).Tokens);
            }
        }
    }

    [Fact]
    public void BatchedResultsEqualOneByOne()
    {
        int[] maxLengths = [12, 3, 8, 1, 12, 5];
        foreach (var options in Normalisations)
        {
            var o = options with { BeamSize = 3, NBest = 3 };
            var batched = Beam(f.Sources, maxLengths, o);
            Assert.Equal(f.Sources.Count, batched.Count);
            for (int i = 0; i < f.Sources.Count; i++)
            {
                var alone = Beam([f.Sources[i]], [maxLengths[i]], o)[0];
                Assert.Equal(alone.Count, batched[i].Count);
                for (int j = 0; j < alone.Count; j++)
                {
                    Assert.Equal(alone[j].Tokens, batched[i][j].Tokens);
                    Assert.Equal(alone[j].Score, batched[i][j].Score, 1e-5);
                    Assert.Equal(alone[j].LogProbability, batched[i][j].LogProbability, 1e-5);
                }
            }
        }
    }

    [Fact]
    public void MaxLengthsAreRespectedPerRow()
    {
        // An untrained model rarely picks <eos>, so the caps are what stops it.
        manual_seed(7);
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        var pipeline = data.Text;
        using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary));
        model.eval();
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        int[] maxLengths = [4, 1, 0, 6];
        var (x, len) = Batching.BuildSources([[4, 5], [6], [7, 8, 9], [5]], new SpecialIds(0, 1, 2), null);
        using (x) using (len)
        {
            var options = new BeamSearchOptions { BeamSize = 3, NBest = 3, Normalization = LengthNormalization.None };
            var results = BeamSearch.Decode(model, x, len, ids, maxLengths, options);
            for (int i = 0; i < maxLengths.Length; i++)
            {
                Assert.NotEmpty(results[i]);
                Assert.All(results[i], h => Assert.InRange(h.Tokens.Length, 0, maxLengths[i]));
            }
            Assert.Empty(Assert.Single(results[2]).Tokens); // a cap of 0 leaves only "<eos>"
        }
    }

    [Fact]
    public void DecodingLeavesNoLiveTensorsBehind()
    {
        var options = new BeamSearchOptions { BeamSize = 4, NBest = 2 };
        Beam(f.Sources, Repeat(10, f.Sources.Count), options); // warm-up
        long before = Transduce.Tests.Training.LiveTensorCountCollection.SettledCount();
        for (int i = 0; i < 3; i++)
        {
            Beam(f.Sources, Repeat(10, f.Sources.Count), options);
            Beam(f.Sources.Take(2).ToList(), [3, 0], options with { Normalization = LengthNormalization.None });
        }
        Assert.Equal(before, Tensor.TotalCount);
    }

    [Fact]
    public void TranslatorUsesBeamAndReturnsNBest()
    {
        var sentences = TinyModels.Pairs.Select(p => p.Source).ToList();
        var greedy = f.Translator.TranslateIds(sentences);
        var beamOne = f.Translator.TranslateNBest(sentences, new TranslationOptions { BatchSize = 4 });
        var beam = f.Translator.TranslateIds(sentences, new TranslationOptions { Beam = 4, BatchSize = 4 });
        var nBest = f.Translator.TranslateNBest(sentences, new TranslationOptions { Beam = 4, NBest = 3, BatchSize = 4 });
        Assert.Equal(sentences.Count, beam.Count);
        for (int i = 0; i < sentences.Count; i++)
        {
            Assert.Equal(f.Pipeline.Decode(greedy[i]), Assert.Single(beamOne[i]).Text);
            Assert.Equal(f.Pipeline.Decode(beam[i]), nBest[i][0].Text);
            Assert.InRange(nBest[i].Count, 1, 3);
            for (int j = 1; j < nBest[i].Count; j++) Assert.True(nBest[i][j - 1].Score >= nBest[i][j].Score);
        }
        Assert.Throws<ArgumentException>(() => f.Translator.TranslateTokens(sentences, new TranslationOptions { Beam = 0 }));
    }
}
