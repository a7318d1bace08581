using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Inference;

public sealed class GreedySearchTests
{
    [Fact]
    public void EachSentenceStopsAtItsOwnEosAndBatchingChangesNothing()
    {
        var (model, data, pipeline, _) = TinyModels.Trained(epochs: 60);
        using var _m = model;
        var src = data.SourceVocabulary;
        var tgt = data.TargetVocabulary;
        var srcIds = new SpecialIds(src.PadId, src.BosId, src.EosId);
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var sources = TinyModels.Pairs.Select(p => pipeline.EncodeSource(p.Source)).ToList();

        var (x, len) = Batching.BuildSources(sources, srcIds, null);
        int[][] batched;
        using (x) using (len) batched = GreedySearch.Decode(model, x, len, ids, Enumerable.Repeat(12, sources.Count).ToArray());
        for (int i = 0; i < sources.Count; i++)
        {
            var (xi, li) = Batching.BuildSources([sources[i]], srcIds, null);
            using (xi) using (li)
                Assert.Equal(GreedySearch.Decode(model, xi, li, ids, [12])[0], batched[i]);
            Assert.DoesNotContain(ids.Eos, batched[i]);
            Assert.DoesNotContain(ids.Bos, batched[i]);
        }
    }

    [Fact]
    public void MaxLengthCapsEveryRow()
    {
        manual_seed(1);
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary));
        model.eval();
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var (x, len) = Batching.BuildSources([[4, 5], [6], [7, 8, 9]], new SpecialIds(0, 1, 2), null);
        using (x) using (len)
        {
            // With <eos> banned only the caps can end a row: each row is exactly as long as its cap.
            var capped = GreedySearch.Decode(model, x, len, ids, [3, 1, 0], [ids.Eos]);
            Assert.Equal([3, 1, 0], capped.Select(o => o.Length));
            // Allowed to end, a row stops at its own <eos> or its cap, whichever comes first.
            var free = GreedySearch.Decode(model, x, len, ids, [3, 1, 0]);
            for (int i = 0; i < free.Length; i++)
            {
                Assert.True(free[i].Length <= capped[i].Length);
                Assert.Equal(capped[i].Take(free[i].Length), free[i]);
            }
        }
    }

    [Theory]
    [InlineData("transformer")]
    [InlineData("bahdanau")]
    public void RowsThatFinishLeaveTheBatchWithoutChangingAnyOutputOrAttention(string architecture)
    {
        // Caps end the rows at different steps, so finished rows are dropped from the decoder batch mid-way; every
        // sentence must still get what it gets decoded alone, tokens and cross-attention alike.
        manual_seed(4);
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary, architecture: architecture));
        model.eval();
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var srcIds = new SpecialIds(0, 1, 2);
        int[][] sources = [[4, 5], [6], [7, 8, 9], [5, 4, 6, 7], [9], [8, 8]];
        int[] caps = [6, 0, 3, 9, 1, 4];
        var options = new SearchOptions { BannedTokens = [ids.Eos], CrossAttention = true };
        var (x, len) = Batching.BuildSources(sources, srcIds, null);
        using (x) using (len)
        {
            var batched = GreedySearch.Decode(model, x, len, ids, caps, options);
            Assert.Equal(caps, batched.Select(h => h.Tokens.Length));
            for (int i = 0; i < sources.Length; i++)
            {
                var (xi, li) = Batching.BuildSources([sources[i]], srcIds, null);
                using (xi) using (li)
                {
                    var alone = GreedySearch.Decode(model, xi, li, ids, [caps[i]], options)[0];
                    Assert.Equal(alone.Tokens, batched[i].Tokens);
                    Assert.NotNull(batched[i].CrossAttention);
                    var (a, b) = (alone.CrossAttention!, batched[i].CrossAttention!);
                    Assert.Equal(a.Count, b.Count);
                    for (int layer = 0; layer < a.Count; layer++)
                    {
                        Assert.Equal(a[layer].Length, b[layer].Length);
                        var flatA = a[layer].Cast<float>().ToArray();
                        var flatB = b[layer].Cast<float>().ToArray();
                        for (int k = 0; k < flatA.Length; k++)
                            Assert.True(Math.Abs(flatA[k] - flatB[k]) <= 1e-5, $"sentence {i}, layer {layer}: attention differs");
                    }
                }
            }
        }
    }
}
