using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Inference;

/// <summary>The logit rules greedy and beam search share, one rule at a time and in their order.</summary>
public sealed class LogitsProcessorsTests
{
    private static readonly SpecialIds Ids = new(Pad: 0, Bos: 1, Eos: 2);

    private static float[][] Rows(Tensor scores) =>
        Enumerable.Range(0, (int)scores.shape[0]).Select(r => scores[r].data<float>().ToArray()).ToArray();

    [Fact]
    public void BannedTokensAreNeverChosenAndIdsOutsideTheVocabularyAreIgnored()
    {
        using var scope = NewDisposeScope();
        var scores = tensor(new float[] { 0, 1, 2, 3, 4, 5 }, [1, 6]);
        var result = Rows(new BannedTokensProcessor([5, 3, 99]).Process(scores, new SearchPosition(0, [0])))[0];
        Assert.Equal([0, 1, 2, float.NegativeInfinity, 4, float.NegativeInfinity], result);
    }

    [Fact]
    public void MinimumLengthForbidsEosUntilReachedAndLeavesFinishedRowsAlone()
    {
        using var scope = NewDisposeScope();
        var rule = new MinLengthProcessor(2, Ids.Eos);
        var scores = ones(2, 4);
        var early = Rows(rule.Process(scores, new SearchPosition(1, [0, -1])));
        Assert.Equal([1, 1, float.NegativeInfinity, 1], early[0]);
        Assert.Equal([1, 1, 1, 1], early[1]);                      // a finished greedy row is left alone
        Assert.Same(scores, rule.Process(scores, new SearchPosition(2, [0, 1]))); // nothing to do once reached
    }

    [Fact]
    public void MaximumLengthForcesEosPerSentenceAndCanScoreItZero()
    {
        using var scope = NewDisposeScope();
        var scores = tensor(new float[] { -1, -2, -3, -4, -5, -6, -7, -8, -9 }, [3, 3]);
        var rule = new MaxLengthProcessor([4, 2], Ids.Eos);
        // Rows 0 and 2 decode sentence 1 (limit 2), row 1 sentence 0 (limit 4); at step 2 only sentence 1 must end.
        var forced = Rows(rule.Process(scores, new SearchPosition(2, [1, 0, 1])));
        Assert.Equal([float.NegativeInfinity, float.NegativeInfinity, -3], forced[0]);
        Assert.Equal([-4, -5, -6], forced[1]);
        Assert.Equal([float.NegativeInfinity, float.NegativeInfinity, -9], forced[2]);
        var zero = Rows(new MaxLengthProcessor([4, 2], Ids.Eos, forcedEndScoresZero: true).Process(scores, new SearchPosition(2, [1, 0, 1])));
        Assert.Equal([float.NegativeInfinity, float.NegativeInfinity, 0], zero[0]);
        Assert.Equal([-4, -5, -6], zero[1]);
        Assert.Same(scores, rule.Process(scores, new SearchPosition(1, [1, 0, 1])));
    }

    [Fact]
    public void TheStandardListPutsTheForcedEndLastSoItWinsOverTheMinimumLength()
    {
        using var scope = NewDisposeScope();
        var rules = LogitsProcessors.Standard(new SearchOptions { MinLength = 5, BannedTokens = [3] }, Ids, [2]);
        Assert.Equal([typeof(BannedTokensProcessor), typeof(MinLengthProcessor), typeof(MaxLengthProcessor)], rules.Select(r => r.GetType())); // transformers' order
        var atLimit = Rows(rules.Apply(zeros(1, 5), new SearchPosition(2, [0])))[0];
        Assert.Equal([float.NegativeInfinity, float.NegativeInfinity, 0, float.NegativeInfinity, float.NegativeInfinity], atLimit); // <eos> alone
        var before = Rows(rules.Apply(zeros(1, 5), new SearchPosition(1, [0])))[0];
        Assert.Equal([0, 0, float.NegativeInfinity, float.NegativeInfinity, 0], before); // no <eos> yet, never token 3
        Assert.Single(LogitsProcessors.Standard(new SearchOptions(), Ids, [2])); // no minimum, nothing banned: the limit alone
    }

    [Fact]
    public void BothSearchesHoldOffTheEndUntilTheMinimumAndTheMaximumStillWins()
    {
        var (model, data, pipeline, _) = TinyModels.Trained(epochs: 60);
        using var _m = model;
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var sources = TinyModels.Pairs.Select(p => pipeline.EncodeSource(p.Source)).ToList();
        var (x, len) = Batching.BuildSources(sources, new SpecialIds(0, 1, 2), null);
        using (x) using (len)
        {
            var plain = GreedySearch.Decode(model, x, len, ids, Enumerable.Repeat(12, sources.Count).ToArray());
            Assert.Contains(plain, o => o.Length < 6); // "va !" and friends end early on their own
            var longer = GreedySearch.Decode(model, x, len, ids, Enumerable.Repeat(12, sources.Count).ToArray(), new SearchOptions { MinLength = 6 });
            var capped = GreedySearch.Decode(model, x, len, ids, Enumerable.Repeat(4, sources.Count).ToArray(), new SearchOptions { MinLength = 6 });
            for (int i = 0; i < sources.Count; i++)
            {
                Assert.InRange(longer[i].Tokens.Length, 6, 12);
                Assert.Equal(plain[i], longer[i].Tokens.Take(plain[i].Length)); // the same choices until plain search ended
                Assert.Equal(4, capped[i].Tokens.Length);
            }
            var beams = BeamSearch.Decode(model, x, len, ids, Enumerable.Repeat(12, sources.Count).ToArray(), new BeamSearchOptions { BeamSize = 3, NBest = 3, MinLength = 6 });
            Assert.All(beams.SelectMany(n => n), h => Assert.InRange(h.Tokens.Length, 6, 12));
        }
    }

    [Fact]
    public void BadOptionsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => new SearchOptions { MinLength = -1 }.Validate());
        Assert.Throws<ArgumentException>(() => new SearchOptions { BannedTokens = [-2] }.Validate());
        Assert.Throws<ArgumentException>(() => new BeamSearchOptions { BeamSize = 2, MinLength = -1 }.Validate());
    }

    private static SearchPosition At(params int[][] rows) =>
        new(rows.Max(r => r.Length), Enumerable.Range(0, rows.Length).ToArray(), rows.Select(r => (IReadOnlyList<int>)r).ToArray());

    [Fact]
    public void NoRepeatNgramBansWhatWouldRepeatAnNgramStartTokenIncluded()
    {
        using var scope = NewDisposeScope();
        var scores = zeros(2, 6);
        // input ids (start 1): 1 3 4 3 → the last id 3 was followed by 4 before: 4 is banned. Row 2: 1 5 1 → 1 was followed by 5.
        var rows = Rows(new NoRepeatNgramProcessor(2, Ids.Bos).Process(scores, new SearchPosition(3, [0, 1], [[3, 4, 3], [5, 1]])));
        Assert.Equal([0, 0, 0, 0, float.NegativeInfinity, 0], rows[0]);
        Assert.Equal([0, 0, 0, 0, 0, float.NegativeInfinity], rows[1]);
        // n = 3: the prefix (4, 3) never occurred before; (3, 4) did, followed by 3.
        Assert.Same(scores, new NoRepeatNgramProcessor(3, Ids.Bos).Process(scores, new SearchPosition(1, [0, 1], [[3], [5]])));
        var three = Rows(new NoRepeatNgramProcessor(3, Ids.Bos).Process(scores, new SearchPosition(4, [0], [[3, 4, 3, 4]])));
        Assert.Equal([0, 0, 0, float.NegativeInfinity, 0, 0], three[0]);
        // n = 1: every id seen, the start token too.
        var one = Rows(new NoRepeatNgramProcessor(1, Ids.Bos).Process(zeros(1, 6), new SearchPosition(1, [0], [[4]])));
        Assert.Equal([0, float.NegativeInfinity, 0, 0, float.NegativeInfinity, 0], one[0]);
    }

    [Fact]
    public void RepetitionPenaltyMultipliesNegativeAndDividesPositiveScoresOncePerToken()
    {
        using var scope = NewDisposeScope();
        var scores = tensor(new float[] { 2, -2, 3, -1, 4, 6 }, [1, 6]);
        // input ids 1 3 3 4: token 3 twice is penalised once; the start token 1 too; 0, 2, 5 untouched.
        var row = Rows(new RepetitionPenaltyProcessor(2.0, Ids.Bos).Process(scores, At([3, 3, 4])))[0];
        Assert.Equal([2, -4, 3, -2, 2, 6], row);
        Assert.Equal([2, -2, 3, -1, 4, 6], Rows(scores)[0]); // the input is not changed in place
    }

    [Fact]
    public void BannedSequencesBanTheirLastTokenOnlyAfterTheirPrefix()
    {
        using var scope = NewDisposeScope();
        var rule = new BannedTokensProcessor([5], [[3, 4], [1, 2], [4, 3, 3]], Ids.Bos);
        // Row 0 ends in 3: (3, 4) bans 4. Row 1 holds nothing yet: its input ids are the start token 1 alone, shorter than
        // (1, 2), which transformers then skips (a sequence longer than the context is ignored): 2 stays allowed.
        var rows = Rows(rule.Process(zeros(2, 6), new SearchPosition(1, [0, 1], [[3], []])));
        Assert.Equal([0, 0, 0, 0, float.NegativeInfinity, float.NegativeInfinity], rows[0]);
        Assert.Equal([0, 0, 0, 0, 0, float.NegativeInfinity], rows[1]);
        var later = Rows(rule.Process(zeros(1, 6), At([5, 1])))[0]; // …but after a generated 1 it applies
        Assert.Equal([0, 0, float.NegativeInfinity, 0, 0, float.NegativeInfinity], later);
        var three = Rows(rule.Process(zeros(1, 6), At([4, 3])))[0]; // (4, 3) then 3, and (3) then 4
        Assert.Equal([0, 0, 0, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity], three);
    }

    [Fact]
    public void ForcedBosLeavesOnlyItsTokenAtTheFirstPositionScoredZero()
    {
        using var scope = NewDisposeScope();
        var scores = tensor(new float[] { -1, -2, -3, -4, -5, -6 }, [2, 3]);
        var rule = new ForcedBosProcessor(1);
        var first = Rows(rule.Process(scores, new SearchPosition(0, [0, -1])));
        Assert.Equal([float.NegativeInfinity, 0, float.NegativeInfinity], first[0]);
        Assert.Equal([-4, -5, -6], first[1]); // a finished row is left alone
        Assert.Same(scores, rule.Process(scores, new SearchPosition(1, [0, 1])));
    }

    [Fact]
    public void TheFullListFollowsTransformersOrder()
    {
        var rules = LogitsProcessors.Standard(new SearchOptions
        {
            RepetitionPenalty = 1.2, NoRepeatNgramSize = 3, BannedSequences = [[3, 4]], MinLength = 2, ForcedBosToken = 4,
        }, Ids, [5]);
        Assert.Equal([typeof(RepetitionPenaltyProcessor), typeof(NoRepeatNgramProcessor), typeof(BannedTokensProcessor),
            typeof(MinLengthProcessor), typeof(ForcedBosProcessor), typeof(MaxLengthProcessor)], rules.Select(r => r.GetType()));
        Assert.Throws<ArgumentException>(() => new SearchOptions { RepetitionPenalty = 0 }.Validate());
        Assert.Throws<ArgumentException>(() => new SearchOptions { NoRepeatNgramSize = -1 }.Validate());
        Assert.Throws<ArgumentException>(() => new SearchOptions { BannedSequences = [[]] }.Validate());
    }
}
