using Transduce.Architecture;
using Transduce.Inference;
using Transduce.Text;
using static TorchSharp.torch;
using static Transduce.Tests.Inference.EarlyStoppingTests;

namespace Transduce.Tests.Inference;

/// <summary>
/// <see cref="LengthLimitRule"/>: how greedy and beam search end an output at its length limit, on a language model whose
/// next-token probabilities are written down by hand (<see cref="EarlyStoppingTests.ScriptedDecoder"/>), so that every
/// expected output and score is worked out on paper.
/// </summary>
public sealed class LengthLimitTests
{
    /// <summary>
    /// From nothing: a .5, b .4, eos .1; after [a]: eos .6, a .3, b .05; after [b]: a .5, b .4, eos .05; anything else:
    /// a .6, b .3, eos .05. The rest goes to pad and bos, which are banned.
    /// </summary>
    private static double[] Script(IReadOnlyList<int> generated) => string.Join(' ', generated) switch
    {
        "" => Probabilities(eos: .1, a: .5, b: .4),
        "3" => Probabilities(eos: .6, a: .3, b: .05),
        "4" => Probabilities(eos: .05, a: .5, b: .4),
        _ => Probabilities(eos: .05, a: .6, b: .3),
    };

    private static (T Result, int Steps) Run<T>(int maxLength, Func<EncoderDecoder, Tensor, Tensor, int[], T> search)
    {
        var decoder = new ScriptedDecoder(Script);
        using var model = new EncoderDecoder<PrefixState>("scripted", new NullEncoder(), decoder);
        using var source = zeros([1, 1], ScalarType.Int64);
        using var lengths = ones([1], ScalarType.Int64);
        return (search(model, source, lengths, [maxLength]), decoder.Steps);
    }

    private static (Hypothesis Output, int Steps) Greedy(LengthLimitRule rule, int maxLength) =>
        Run(maxLength, (model, source, lengths, max) => GreedySearch.Decode(model, source, lengths, new SpecialIds(Pad, Bos, Eos), max,
            new SearchOptions { BannedTokens = [Pad, Bos], LengthLimit = rule })[0]);

    private static (IReadOnlyList<Hypothesis> Outputs, int Steps) Beam(LengthLimitRule rule, int maxLength, EarlyStopping early = EarlyStopping.Heuristic) =>
        Run(maxLength, (model, source, lengths, max) => BeamSearch.Decode(model, source, lengths, new SpecialIds(Pad, Bos, Eos), max,
            new BeamSearchOptions
            {
                BeamSize = 2, NBest = 2, Normalization = LengthNormalization.HuggingFace, LengthPenalty = 1.0, BannedTokens = [Pad, Bos],
                EarlyStopping = early, LengthLimit = rule,
            })[0]);

    private static void AssertGreedy(LengthLimitRule rule, int maxLength, int[] tokens, int steps)
    {
        var (output, taken) = Greedy(rule, maxLength);
        Assert.Equal(tokens, output.Tokens);
        Assert.Equal(steps, taken);
    }

    [Fact]
    public void GreedyStopsAfterTheLimitsTokensWithoutAForcedEnd()
    {
        // Greedy picks a, then eos (.6): [a] either way when the limit leaves room for it.
        Assert.Equal([A], Greedy(LengthLimitRule.Stop, 2).Output.Tokens);
        Assert.Equal([A], Greedy(LengthLimitRule.ForcedEnd, 2).Output.Tokens);
        // A limit of one token: Stop keeps [a] after one step; ForcedEnd forces eos at the second step, also [a].
        AssertGreedy(LengthLimitRule.Stop, 1, [A], 1);
        AssertGreedy(LengthLimitRule.ForcedEnd, 1, [A], 2);
        // No step at all under Stop with a limit of 0; ForcedEnd still takes the one step that writes the end.
        AssertGreedy(LengthLimitRule.Stop, 0, [], 0);
        AssertGreedy(LengthLimitRule.ForcedEnd, 0, [], 1);
    }

    [Fact]
    public void BeamFinishesTheBestCandidatesOfTheLastStepScoredAtTheLimit()
    {
        // Step 1: [a] ln .5 = −0.693, [b] ln .4 = −0.916, [eos] −2.303 ranks third (≥ k = 2): dropped.
        // Step 2 is the last (limit 2): the best four are [a eos] −1.204, [b a] −1.609, [b b] −1.833, [a a] −1.897; the
        // first k = 2 finish, eos or not, divided by the generated length 2: [a] −0.602 and [b a] −0.805.
        var (outputs, steps) = Beam(LengthLimitRule.Stop, 2);
        Assert.Equal(2, steps);
        Assert.Equal([[A], [B, A]], outputs.Select(h => h.Tokens));
        Assert.Equal((Math.Log(.5) + Math.Log(.6)) / 2, outputs[0].Score, 6);
        Assert.Equal((Math.Log(.4) + Math.Log(.5)) / 2, outputs[1].Score, 6);
        Assert.Equal(Math.Log(.4) + Math.Log(.5), outputs[1].LogProbability, 6);
        // Each early_stopping rule gives the same here: nothing runs past the limit.
        foreach (var rule in new[] { EarlyStopping.WhenFull, EarlyStopping.Never })
            Assert.Equal([[A], [B, A]], Beam(LengthLimitRule.Stop, 2, rule).Outputs.Select(h => h.Tokens));
    }

    [Fact]
    public void AForcedEndScoresAnotherHypothesisBest()
    {
        // ForcedEnd with the same limit of 2 output tokens: after step 2 only [a] has finished (−0.602); [b a] and [b b]
        // run on, and step 3 forces eos, which transformers' ForcedEOSTokenLogitsProcessor scores 0: [b a] becomes
        // −1.609 / 3 = −0.536 and wins — the difference the rule makes for a folder with forced_eos_token_id.
        var (outputs, steps) = Beam(LengthLimitRule.ForcedEnd, 2);
        Assert.Equal(3, steps);
        Assert.Equal([[B, A], [A]], outputs.Select(h => h.Tokens));
        Assert.Equal((Math.Log(.4) + Math.Log(.5)) / 3, outputs[0].Score, 6);
    }

    [Fact]
    public void ALimitOfNothingUnderStopIsTheEmptyOutputWithoutAStep()
    {
        var (outputs, steps) = Beam(LengthLimitRule.Stop, 0);
        Assert.Equal(0, steps);
        Assert.Equal([[]], outputs.Select(h => h.Tokens));
    }
}
