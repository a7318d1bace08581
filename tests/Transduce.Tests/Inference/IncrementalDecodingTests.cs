using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Inference;

/// <summary>Incremental decoding (carried state, cached keys/values) returns exactly what recomputing the prefix returns.</summary>
public sealed class IncrementalDecodingTests
{
    [Theory]
    [InlineData("gru")]
    [InlineData("bahdanau")]
    [InlineData("transformer")]
    public void GreedyAndBeamMatchFullPrefixRecomputation(string architecture)
    {
        var (model, data, pipeline, _) = TinyModels.Trained(epochs: 30, architecture: architecture);
        using var _m = model;
        model.eval();
        var recompute = RecomputePrefix.Of(model);
        var src = data.SourceVocabulary;
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        var sources = TinyModels.Pairs.Select(p => pipeline.EncodeSource(p.Source)).Append(src.Encode(["unseen", "words", "here"])).ToList();
        var (x, len) = Batching.BuildSources(sources, new SpecialIds(src.PadId, src.BosId, src.EosId), null);
        using (x)
        using (len)
        {
            var limits = Enumerable.Repeat(10, sources.Count).ToArray();
            Assert.Equal(GreedySearch.Decode(model, x, len, ids, limits), GreedySearch.Decode(recompute, x, len, ids, limits));

            var options = new BeamSearchOptions { BeamSize = 3, NBest = 3 };
            var fast = BeamSearch.Decode(model, x, len, ids, limits, options);
            var slow = BeamSearch.Decode(recompute, x, len, ids, limits, options);
            for (int i = 0; i < sources.Count; i++)
            {
                Assert.Equal(slow[i].Count, fast[i].Count);
                for (int k = 0; k < fast[i].Count; k++)
                {
                    Assert.Equal(slow[i][k].Tokens, fast[i][k].Tokens);
                    Assert.Equal(slow[i][k].Score, fast[i][k].Score, 1e-5);
                }
            }
        }
    }
}
