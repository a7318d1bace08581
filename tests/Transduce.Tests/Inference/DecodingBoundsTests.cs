using System.Diagnostics;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Inference;

/// <summary>
/// Bounds on decoding work that hold without a server: a cancellation token stops greedy and beam search between
/// steps, the absolute output cap, and the cost estimate a service admits requests by.
/// </summary>
public sealed class DecodingBoundsTests
{
    /// <summary>An untrained GRU whose <c>&lt;eos&gt;</c> is banned: it decodes until its output limit, however long.</summary>
    private static Checkpoint EndlessCheckpoint()
    {
        var text = new Transduce.Text.TextConfig { Normalizer = "d2l" };
        var data = TranslationData.Prepare(TinyModels.Pairs, text);
        manual_seed(7);
        var config = TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary);
        var model = Transduce.Models.ModelRegistry.Create(config);
        model.eval();
        return new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = text,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
            Generation = new GenerationSettings { BannedTokens = [data.TargetVocabulary.EosId] },
        };
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void CancellationStopsARunningSearchWithinAStep(int beam)
    {
        using var checkpoint = EndlessCheckpoint();
        var tgt = checkpoint.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var (src, lengths) = Batching.BuildSources([[4, 5], [6]], new SpecialIds(0, 1, 2), null);
        using var _s = src;
        using var _l = lengths;
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        int[] endless = [10_000_000, 10_000_000];
        var clock = Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            if (beam == 1) GreedySearch.Decode(checkpoint.Model, src, lengths, ids, endless, [tgt.EosId], cancel.Token);
            else BeamSearch.Decode(checkpoint.Model, src, lengths, ids, endless, new BeamSearchOptions { BeamSize = beam, BannedTokens = [tgt.EosId] }, cancel.Token);
        });
        // Ten million steps would take hours; the search noticed the token within a step or so of 300 ms.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"stopped after {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void TranslatorStopsOnCancellationAndDecodesNothingWhenAlreadyCancelled()
    {
        using var translator = new Translator(EndlessCheckpoint());
        var options = new TranslationOptions { MaxLengthA = 1_000_000, MaxOutputTokens = 10_000_000 };
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => translator.Translate(["go ."], options, cancelled.Token));

        using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var clock = Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() => translator.TranslateHypotheses(["go .", "i lost ."], options with { Beam = 2 }, soon.Token));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
        // The translator is still usable afterwards.
        Assert.Equal(3, translator.TranslateTokens(["go ."], options with { MaxOutputTokens = 3 })[0].Length);
    }

    [Fact]
    public void OutputTokenCapBoundsEveryTranslation()
    {
        using var translator = new Translator(EndlessCheckpoint());
        // Without the cap the rule ⌈2 × (tokens + 1)⌉ + 10 would allow 16 tokens for "go ." and 18 for "i lost .".
        var options = new TranslationOptions { MaxOutputTokens = 5 };
        foreach (var tokens in translator.TranslateTokens(["go .", "i lost ."], options))
            Assert.Equal(5, tokens.Length);   // <eos> is banned: every output runs to the cap, no further
        foreach (var tokens in translator.TranslateTokens(["go ."], options with { MaxOutputTokens = null }))
            Assert.Equal(16, tokens.Length);
        Assert.Equal(5, translator.MaxOutputLength(40, options));
        Assert.Throws<ArgumentException>(() => translator.MaxOutputLength(3, options with { MaxOutputTokens = -1 }));

        // A fixed max_new_tokens (a MarianMT folder's max_length) replaces the length rule, unless the rule is to cap too.
        var fixedLimit = new TranslationOptions { MaxNewTokens = 100, MaxLengthA = 1, MaxLengthB = 2 };
        Assert.Equal(99, translator.MaxOutputLength(3, fixedLimit));
        Assert.Equal(6, translator.MaxOutputLength(3, fixedLimit with { AlwaysApplyLengthRule = true }));   // ⌈1 × 4⌉ + 2
        Assert.Equal(9, translator.TranslateTokens(["go ."], fixedLimit with { MaxNewTokens = 10, MaxLengthA = 5 })[0].Length);
        Assert.Equal(5, translator.TranslateTokens(["go ."], fixedLimit with { MaxNewTokens = 10, AlwaysApplyLengthRule = true })[0].Length);
        Assert.Equal(int.MaxValue, translator.MaxOutputLength(3, new TranslationOptions { MaxLengthA = 1e300 }));   // no overflow
    }

    [Fact]
    public void CostEstimateCountsSourceOutputLimitAndHypotheses()
    {
        using var translator = new Translator(EndlessCheckpoint());
        var options = new TranslationOptions { Beam = 3, NBest = 5, MaxOutputTokens = 12 };
        var costs = translator.EstimateCost(["Go.", "I'm home.", ""], options);
        // "go ." → 2 tokens + <eos>; output min(⌈2 × 3⌉ + 10, 12) = 12; max(beam, n-best) = 5 rows.
        Assert.Equal(new DecodingCost(2, 3, 12, 5), costs[0]);
        Assert.Equal(5 * (3 + 12 + 1), costs[0].Cost);
        Assert.Equal(new DecodingCost(3, 4, 12, 5), costs[1]);   // "i'm home ."
        Assert.Equal(new DecodingCost(0, 1, 12, 5), costs[2]);   // only <eos>
        Assert.Equal(1, translator.EstimateCost(["Go."])[0].Rows);
        Assert.Equal(16, translator.EstimateCost(["Go."])[0].MaxOutputTokens);
    }
}
