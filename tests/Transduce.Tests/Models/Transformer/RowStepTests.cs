using Transduce.Models;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

/// <summary>
/// One sentence decodes through the managed row step (TransformerRowStep): the same network as the modules, so its logits
/// must equal the modules' teacher-forced ones up to float32 rounding, and its state must carry on wherever libtorch
/// takes over (beam expansion, an older state stepped again).
/// </summary>
public sealed class RowStepTests
{
    private static TransformerSeq2Seq Model(bool preNorm, bool bias, string activation, int hidden = 32, int heads = 4, int targetVocabulary = 50)
    {
        manual_seed(17);
        var config = new TransformerConfig
        {
            SourceVocabSize = 40, TargetVocabSize = targetVocabulary, EmbeddingSize = hidden, HiddenSize = hidden, Layers = 2,
            Heads = heads, FfnSize = 72, Dropout = 0, PreNorm = preNorm, AttentionBias = bias, Activation = activation,
        };
        var model = new TransformerSeq2Seq(config);
        model.eval();
        return model;
    }

    private static readonly long[] Target = [1, 7, 12, 30, 4, 9, 22, 41, 5, 13, 2, 18, 33, 6, 11, 27, 8, 19, 44, 3];

    /// <summary>The modules' teacher-forced logits (train mode, no dropout) for rows of (source, length) and <see cref="Target"/>.</summary>
    private static Tensor Reference(TransformerSeq2Seq model, Tensor source, Tensor lengths, int steps)
    {
        model.train();
        var rows = source.shape[0];
        var target = tensor(Target[..steps]).reshape(1, steps).expand(rows, steps);
        var logits = model.call(source, lengths, target);
        model.eval();
        return logits;
    }

    private static (Tensor Logits, TransformerState State) Step(TransformerSeq2Seq model, TransformerState state, long token, long rows = 1) =>
        model.Decoder.call(full(rows, 1, token, ScalarType.Int64), state);

    private static void AssertClose(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.allclose(actual, rtol: 1e-4, atol: 1e-5), $"max difference {(expected - actual).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(true, false, "relu", 32, 4, 50)]
    [InlineData(false, true, "swish", 32, 4, 50)]
    [InlineData(true, true, "gelu_tanh", 36, 4, 50)]    // head size 9: the vector loops' scalar tails
    [InlineData(false, false, "relu", 64, 2, 300)]     // outputs past one panel of 128
    public void RowStepsEqualTheModules(bool preNorm, bool bias, string activation, int hidden, int heads, int vocabulary)
    {
        using var model = Model(preNorm, bias, activation, hidden, heads, vocabulary);
        using var grad = inference_mode();
        manual_seed(3);
        // A padded source row: the row step must attend over its first 5 positions only. 20 steps grow the cache past 16.
        var source = randint(4, 40, [1, 7]);
        var lengths = tensor(new long[] { 5 });
        var reference = Reference(model, source, lengths, Target.Length);
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        foreach (long token in Target)
        {
            (var logits, state) = Step(model, state, token);
            Assert.True(state.ManagedStep); // the row step ran
            Assert.All(state.SelfKeys, k => Assert.Null(k));
            steps.Add(logits);
        }
        AssertClose(reference, cat(steps, 1));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Float32PanelsMultiplyAnOutputLayerPastMaxOutputBytesSplitOverTheThreads(int threads)
    {
        // An output layer past MaxOutputBytes (32 × 140,000 float32 = 17.9 MB) but within MaxFloat32PanelBytes: the panels
        // multiply it, split over libtorch's intra-op threads by the step's team, with the modules' logits.
        const int vocabulary = 140_000;
        Assert.True(32L * vocabulary * sizeof(float) > TransformerRowStep.MaxOutputBytes);
        int before = get_num_threads();
        try
        {
            set_num_threads(threads);
            using var model = Model(true, true, "relu", hidden: 32, heads: 4, targetVocabulary: vocabulary);
            using var grad = inference_mode();
            manual_seed(8);
            var source = randint(4, 40, [1, 6]);
            var lengths = tensor(new long[] { 6 });
            var reference = Reference(model, source, lengths, 4);
            var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
            var steps = new List<Tensor>();
            foreach (long token in Target[..4])
            {
                (var logits, state) = Step(model, state, token);
                Assert.True(state.ManagedStep);
                steps.Add(logits);
            }
            AssertClose(reference, cat(steps, 1));
            var plan = (TransformerDecodePlan)((TransformerDecoder)model.Decoder).CurrentPlan!;
            var row = plan.RowStep(() => throw new InvalidOperationException("the row step should exist already"));
            Assert.Equal(RowLinear.Supported, row!.ManagedOutput);
            Assert.Equal(RowLinear.Supported ? threads : 1, row.ProductThreads);
            Assert.True(32L * vocabulary * sizeof(float) <= TransformerRowStep.MaxFloat32PanelBytes);
        }
        finally
        {
            set_num_threads(before);
        }
    }

    [Fact]
    public void CrossAttentionWeightsEqualTheLibtorchSteps()
    {
        using var model = Model(true, true, "relu");
        using var grad = inference_mode();
        manual_seed(4);
        var source = randint(4, 40, [1, 6]);
        var lengths = tensor(new long[] { 4 });
        // The same sentence twice takes libtorch's packed path; alone it takes the row step.
        var pair = model.Decoder.InitState(model.Encoder.call(source.expand(2, 6), lengths.expand(2)), lengths.expand(2));
        var single = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        foreach (long token in Target[..5])
        {
            (var pairLogits, pair) = Step(model, pair, token, rows: 2);
            (var rowLogits, single) = Step(model, single, token);
            Assert.True(single.ManagedStep);
            Assert.False(pair.ManagedStep);
            AssertClose(pairLogits.narrow(0, 0, 1), rowLogits);
            Assert.Equal(pair.CrossAttention.Count, single.CrossAttention.Count);
            for (int layer = 0; layer < pair.CrossAttention.Count; layer++)
                AssertClose(pair.CrossAttention[layer].narrow(0, 0, 1), single.CrossAttention[layer]);
        }
    }

    [Theory]
    [InlineData(ComputeType.BFloat16)]
    [InlineData(ComputeType.Int8)]
    public void ReducedTypesTakeTheRowStepAndMatchTheBatchedPlan(ComputeType type)
    {
        // One sentence decodes as it does in a batch: bfloat16 panels round inputs, weights and outputs as oneDNN's bfloat16
        // products do; int8 multiplies through the plan's own packed layers; the rest is float32 either way.
        using var model = Model(true, true, "relu", hidden: 64, heads: 2, targetVocabulary: 300);
        ComputeTypes.Apply(model, type);
        using var grad = inference_mode();
        manual_seed(7);
        var source = randint(4, 40, [1, 6]);
        var lengths = tensor(new long[] { 6 });
        var pair = model.Decoder.InitState(model.Encoder.call(source.expand(2, 6), lengths.expand(2)), lengths.expand(2));
        var single = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        foreach (long token in Target[..6])
        {
            (var pairLogits, pair) = Step(model, pair, token, rows: 2);
            (var rowLogits, single) = Step(model, single, token);
            Assert.True(single.ManagedStep);
            double error = (pairLogits.narrow(0, 0, 1) - rowLogits).abs().max().item<float>();
            double range = pairLogits.abs().max().item<float>();
            Assert.True(error <= 0.02 * range, $"max difference {error} against logits up to {range}");
        }
    }

    [Fact]
    public void ExpandingToABeamHandsTheCacheToLibtorch()
    {
        using var model = Model(false, true, "relu");
        using var grad = inference_mode();
        manual_seed(5);
        var source = randint(4, 40, [1, 6]);
        var lengths = tensor(new long[] { 6 });
        var reference = Reference(model, source.expand(3, 6), lengths.expand(3), 8);
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        for (int t = 0; t < 4; t++)
        {
            (var logits, state) = Step(model, state, Target[t]);
            steps.Add(logits.expand(3, 1, -1));
        }
        // Keeping the single row (a beam of one) keeps the state; three rows select the cache's rows.
        Assert.Same(state, model.Decoder.SelectRows(state, tensor(new long[] { 0 })));
        state = model.Decoder.SelectRows(state, tensor(new long[] { 0, 0, 0 }));
        Assert.False(state.ManagedStep);
        for (int i = 0; i < state.SelfKeys.Length; i++)
        {
            using var keys = state.PastKeys(i);
            Assert.Equal([3L, 4, 4, 8], keys.shape);
        }
        for (int t = 4; t < 8; t++)
        {
            (var logits, state) = Step(model, state, Target[t], rows: 3);
            steps.Add(logits);
        }
        AssertClose(reference, cat(steps, 1));
    }

    [Fact]
    public void SteppingAnOlderStateAgainBranches()
    {
        using var model = Model(true, false, "relu");
        using var grad = inference_mode();
        manual_seed(6);
        var source = randint(4, 40, [1, 5]);
        var lengths = tensor(new long[] { 5 });
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        (_, state) = Step(model, state, Target[0]);
        (_, var branchPoint) = Step(model, state, Target[1]);
        (var first, _) = Step(model, branchPoint, Target[2]);
        (_, var further) = Step(model, branchPoint, 44);   // another continuation of the same prefix…
        (var again, _) = Step(model, branchPoint, Target[2]); // …does not disturb this one
        AssertClose(first, again);
        var reference = Reference(model, source, lengths, 3).narrow(1, 2, 1);
        AssertClose(reference, first);
        Assert.Equal(3, further.Steps);
    }

    [Fact]
    public void ATokenOutsideTheVocabularyIsRefused()
    {
        using var model = Model(true, false, "relu");
        using var grad = inference_mode();
        var source = randint(4, 40, [1, 5]);
        var lengths = tensor(new long[] { 5 });
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Step(model, state, 50));
        Assert.Contains("vocabulary of 50", error.Message);
    }

    [Fact]
    public void AnExactGeluDecoderKeepsLibtorch()
    {
        // libtorch's erf GELU has no managed twin here: one sentence then decodes through the packed libtorch path.
        using var model = Model(true, true, "gelu");
        using var grad = inference_mode();
        var source = randint(4, 40, [1, 5]);
        var lengths = tensor(new long[] { 5 });
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        (_, state) = Step(model, state, Target[0]);
        Assert.False(state.ManagedStep);
        Assert.NotNull(state.SelfKeys[0]);
    }
}
