using Transduce.Architecture;
using Transduce.Data;
using Transduce.Models;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Tests.Architecture;

public sealed class EncoderDecoderTests
{
    private sealed record SpyState(Tensor Memory) : IDecoderState
    {
        public IEnumerable<Tensor> Tensors => [Memory];
    }

    private sealed class SpyEncoder : Encoder
    {
        public int Calls;
        public SpyEncoder() : base("spy-encoder") { }
        public override EncoderOutput forward(Tensor source, Tensor validLengths)
        {
            Calls++;
            return new EncoderOutput(source.to(ScalarType.Float32).unsqueeze(-1), null);
        }
    }

    private sealed class SpyDecoder : Decoder<SpyState>
    {
        public int InitCalls, ForwardCalls;
        public SpyDecoder() : base("spy-decoder") { }
        public override SpyState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths)
        {
            InitCalls++;
            return new SpyState(encoderOutput.Outputs.sum(1));
        }
        public override SpyState SelectRows(SpyState state, Tensor batchIndices) => new(state.Memory.index_select(0, batchIndices));
        public override (Tensor Logits, SpyState State) forward(Tensor target, SpyState state)
        {
            ForwardCalls++;
            var logits = target.to(ScalarType.Float32).unsqueeze(-1).expand(-1, -1, 5) + state.Memory.unsqueeze(1);
            return (logits, state);
        }
    }

    [Fact]
    public void ForwardEncodesOnceInitialisesStateOnceAndReturnsDecoderOutput()
    {
        var encoder = new SpyEncoder();
        var decoder = new SpyDecoder();
        using var model = new EncoderDecoder<SpyState>("spy", encoder, decoder);
        using var src = tensor(new long[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        using var len = tensor(new long[] { 3, 2 });
        using var tgt = tensor(new long[] { 1, 1, 1, 1 }, [2, 2]);
        using var y = model.call(src, len, tgt);
        Assert.Equal(1, encoder.Calls);
        Assert.Equal(1, decoder.InitCalls);
        Assert.Equal(1, decoder.ForwardCalls);
        Assert.Equal(new long[] { 2, 2, 5 }, y.shape);
        Assert.Equal(1 + 6f, y[0, 0, 0].item<float>());
        Assert.Equal(1 + 15f, y[1, 1, 4].item<float>());
    }

    private static (EncoderDecoder model, Vocabulary src, Vocabulary tgt) Gru()
    {
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        var pipeline = data.Text;
        manual_seed(11);
        var model = ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary));
        model.eval();
        return (model, data.SourceVocabulary, data.TargetVocabulary);
    }

    [Fact]
    public void GruLogitsHaveBatchStepsVocabularyShape()
    {
        var (model, src, tgt) = Gru();
        using var _ = model;
        using var x = randint(4, src.Count, [3, 7]);
        using var len = tensor(new long[] { 7, 5, 1 });
        using var y = randint(4, tgt.Count, [3, 4]);
        using var logits = model.call(x, len, y);
        Assert.Equal(new long[] { 3, 4, tgt.Count }, logits.shape);
    }

    [Fact]
    public void PaddingBeyondValidLengthDoesNotChangeTheOutput()
    {
        var (model, src, tgt) = Gru();
        using var _ = model;
        using var y = tensor(new long[] { tgt.BosId, 5, 6 }, [1, 3]);
        // The same 3-token sentence, once unpadded and once padded with junk ids up to 8 steps.
        using var shortSrc = tensor(new long[] { 4, 5, 2 }, [1, 3]);
        using var longSrc = tensor(new long[] { 4, 5, 2, 7, 9, 4, 6, 8 }, [1, 8]);
        using var len = tensor(new long[] { 3 });
        using var a = model.call(shortSrc, len, y);
        using var b = model.call(longSrc, len, y);
        Assert.True(allclose(a, b, rtol: 1e-5, atol: 1e-6), "positions past the valid length leaked into the output");
    }

    [Fact]
    public void BatchingSentencesTogetherGivesTheSameLogitsAsOneByOne()
    {
        var (model, src, tgt) = Gru();
        using var _ = model;
        var pairs = new[] { new EncodedPair([4, 5, 6, 7], [4, 5]), new EncodedPair([5], [6, 7, 8]) };
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        using var both = Batching.Build(pairs, ids, null);
        using var all = model.call(both.Source, both.SourceValidLengths, both.TargetInput);
        for (int i = 0; i < pairs.Length; i++)
        {
            using var one = Batching.Build([pairs[i]], ids, null);
            using var single = model.call(one.Source, one.SourceValidLengths, one.TargetInput);
            long steps = single.shape[1];
            using var row = all[i];
            using var slice = row.narrow(0, 0, steps);
            Assert.True(allclose(slice, single[0], rtol: 1e-5, atol: 1e-6), $"row {i} differs when batched");
        }
    }
}
