using Transduce.Models;
using Transduce.Native;
using Transduce.Models.Gru;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

/// <summary>
/// The Transformer decodes in eval mode through packed weights (TransformerDecodePlan): the same network as its modules,
/// so step-by-step logits must equal the modules' teacher-forced ones — exactly up to float32 rounding, and close in the
/// reduced compute types.
/// </summary>
public sealed class PackedDecodingTests
{
    private static TransformerSeq2Seq Model(bool preNorm, bool bias, string activation, int hidden = 32, int heads = 4)
    {
        manual_seed(11);
        var config = new TransformerConfig
        {
            SourceVocabSize = 40, TargetVocabSize = 50, EmbeddingSize = hidden, HiddenSize = hidden, Layers = 2,
            Heads = heads, FfnSize = 64, Dropout = 0, PreNorm = preNorm, AttentionBias = bias, Activation = activation,
        };
        return new TransformerSeq2Seq(config);
    }

    /// <summary>Teacher-forced logits from the modules (train mode, no dropout) and step-by-step logits from the packed path.</summary>
    private static (Tensor Modules, Tensor Packed) Logits(TransformerSeq2Seq model, ComputeType type)
    {
        using var grad = no_grad();
        manual_seed(3);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 7, 5, 2 });
        var target = randint(4, 50, [3, 6]);
        model.train();
        var reference = model.call(source, lengths, target);
        model.eval();
        ((TransformerDecoder)model.Decoder).ComputeType = type;
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        for (long t = 0; t < target.shape[1]; t++)
        {
            var (logits, next) = model.Decoder.call(target.narrow(1, t, 1), state);
            steps.Add(logits);
            state = next;
        }
        return (reference, cat(steps, 1));
    }

    [Theory]
    [InlineData(ComputeType.BFloat16)]
    [InlineData(ComputeType.Int8)]
    public void TheEncoderRunsInTheReducedTypeToo(ComputeType type)
    {
        using var model = Model(preNorm: false, bias: true, activation: "relu");
        using var grad = no_grad();
        manual_seed(3);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 7, 5, 2 });
        model.eval();
        var float32 = model.Encoder.call(source, lengths).Outputs;
        ComputeTypes.Apply(model, type);
        var reduced = model.Encoder.call(source, lengths).Outputs;
        Assert.False(float32.allclose(reduced, rtol: 1e-6, atol: 1e-7), "the encoder gave float32's exact output: the reduced type did not run");
        Assert.True(float32.allclose(reduced, rtol: 0.1, atol: 0.1), $"max difference {(float32 - reduced).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(false, false, "relu")]
    [InlineData(true, true, "swish")]
    public void EvalEncoderOutputsEqualTheModules(bool preNorm, bool bias, string activation)
    {
        // Wide enough that the encoder's products run through oneDNN (36 rows × 128 → 384 and up).
        manual_seed(13);
        var config = new TransformerConfig
        {
            SourceVocabSize = 40, TargetVocabSize = 50, EmbeddingSize = 128, HiddenSize = 128, Layers = 2,
            Heads = 4, FfnSize = 256, Dropout = 0, PreNorm = preNorm, AttentionBias = bias, Activation = activation,
        };
        using var model = new TransformerSeq2Seq(config);
        using var grad = no_grad();
        var source = randint(4, 40, [3, 12]);
        var lengths = tensor(new long[] { 12, 9, 1 });
        model.train();
        var modules = model.Encoder.call(source, lengths).Outputs;
        model.eval();
        var packed = model.Encoder.call(source, lengths).Outputs;
        Assert.Equal(modules.shape, packed.shape);
        Assert.True(modules.allclose(packed, rtol: 1e-4, atol: 1e-5), $"max difference {(modules - packed).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(false, false, "relu")]
    [InlineData(true, true, "gelu")]
    [InlineData(false, true, "swish")]
    [InlineData(false, true, "gelu_tanh")]
    [InlineData(true, false, "relu", 128, 2)] // heads of 64: the managed attention's register path
    public void Float32StepsEqualTheModules(bool preNorm, bool bias, string activation, int hidden = 32, int heads = 4)
    {
        using var model = Model(preNorm, bias, activation, hidden, heads);
        var (modules, packed) = Logits(model, ComputeType.Float32);
        Assert.True(modules.allclose(packed, rtol: 1e-4, atol: 1e-5), $"max difference {(modules - packed).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(ComputeType.BFloat16)]
    [InlineData(ComputeType.Int8)]
    public void ReducedTypesStayClose(ComputeType type)
    {
        using var model = Model(true, true, "relu");
        var (modules, packed) = Logits(model, type);
        double error = (modules - packed).abs().max().item<float>();
        double range = modules.abs().max().item<float>();
        Assert.True(error < 0.05 * range, $"max difference {error} against logits up to {range}");
        Assert.False(modules.allclose(packed, rtol: 1e-6, atol: 1e-7), "the reduced type gave float32's exact logits: it did not run");
        // Most arg-maxes survive the rounding.
        double agree = modules.argmax(-1).eq(packed.argmax(-1)).to_type(ScalarType.Float32).mean().item<float>();
        Assert.True(agree >= 0.8, $"only {agree:P0} of the arg-maxes agree");
    }

    [Fact]
    public void TheKeyValueCacheGrowsAndBranchesLikeTheModules()
    {
        // 40 steps outgrow the preallocated capacity twice; a second continuation of an older state must not see the
        // positions the first one wrote into the shared buffers.
        using var model = Model(true, true, "relu");
        using var grad = no_grad();
        manual_seed(8);
        var source = randint(4, 40, [2, 6]);
        var lengths = tensor(new long[] { 6, 4 });
        var target = randint(4, 50, [2, 41]);
        model.train();
        var reference = model.call(source, lengths, target);
        model.eval();
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        TransformerState? older = null;
        for (long t = 0; t < 40; t++)
        {
            if (t == 36) older = state;
            var (logits, next) = model.Decoder.call(target.narrow(1, t, 1), state);
            steps.Add(logits);
            state = next;
        }
        Assert.NotNull(state.Cache);
        Assert.True(state.Cache!.Capacity >= 40);
        // Another token at position 36, from the older state (the buffers have not grown since): a branch of its own…
        model.Decoder.call(target.narrow(1, 36, 1).add(1).remainder(50), older!);
        // …which leaves the newest state's position 36 alone.
        (var last, _) = model.Decoder.call(target.narrow(1, 40, 1), state);
        steps.Add(last);
        var all = cat(steps, 1);
        Assert.True(reference.allclose(all, rtol: 1e-4, atol: 1e-5), $"max difference {(reference - all).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(32, 4)]
    [InlineData(128, 2)] // heads of 64: the managed attention's register path
    public void ABfloat16PlanCachesKeysAndValuesInBfloat16WithoutChangingTheLogits(int hidden, int heads)
    {
        // The bfloat16 products' outputs are bfloat16 numbers, so caching them in bfloat16 loses nothing: the logits must
        // be those of the same step from a state whose cross-attention keys and values are float32 copies (the managed
        // attention's float32 loop instead of its bfloat16 one).
        using var model = Model(true, true, "relu", hidden, heads);
        using var grad = no_grad();
        model.eval();
        ((TransformerDecoder)model.Decoder).ComputeType = ComputeType.BFloat16;
        manual_seed(12);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 7, 5, 2 });
        var target = randint(4, 50, [3, 5]);
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        Assert.All(state.CrossKeys, k => Assert.Equal(ScalarType.BFloat16, k.dtype));
        for (long t = 0; t < target.shape[1]; t++)
        {
            // The same step from a float32 copy of the state.
            var float32 = state with
            {
                CrossKeys = state.CrossKeys.Select(k => k.to_type(ScalarType.Float32)).ToArray(),
                CrossValues = state.CrossValues.Select(v => v.to_type(ScalarType.Float32)).ToArray(),
                SelfKeys = state.SelfKeys.Select(k => k?.to_type(ScalarType.Float32)).ToArray(),
                SelfValues = state.SelfValues.Select(v => v?.to_type(ScalarType.Float32)).ToArray(),
                Cache = null,
            };
            var (expected, _) = model.Decoder.call(target.narrow(1, t, 1), float32);
            (var logits, state) = model.Decoder.call(target.narrow(1, t, 1), state);
            Assert.Equal(ScalarType.BFloat16, state.Cache!.Keys[0].dtype);
            Assert.True(expected.allclose(logits, rtol: 1e-4, atol: 1e-4), $"step {t}: max difference {(expected - logits).abs().max().item<float>()}");
        }
        // A bfloat16 state continues in the modules (train mode) in float32, for as many steps as it likes.
        model.train();
        using (var scope = NewDisposeScope())
        {
            var (continued, next) = model.Decoder.call(target.narrow(1, 0, 1), state);
            Assert.Equal(ScalarType.Float32, continued.dtype);
            (continued, _) = model.Decoder.call(target.narrow(1, 1, 1), next);
            Assert.Equal([3L, 1, 50], continued.shape);
        }
    }

    [Fact]
    public void WeightVersionsAreReadAndBumpedByInPlaceChanges()
    {
        using var w = zeros(4);
        long? before = WeightVersions.Sum([w]);
        Assert.NotNull(before);
        using (no_grad()) w.add_(1);
        Assert.Equal(before + 1, WeightVersions.Sum([w]));
    }

    [Fact]
    public void AModelMadeUnderInferenceModeDecodes()
    {
        // Its weights are inference tensors, which have no version counter: reading one used to end the process.
        TransformerSeq2Seq model;
        Tensor inferenceWeight;
        using (inference_mode())
        {
            model = Model(preNorm: false, bias: true, activation: "relu");
            inferenceWeight = zeros(3);
        }
        using (model)
        using (inferenceWeight)
        {
            Assert.Equal(WeightVersions.Sum([]), WeightVersions.Sum([inferenceWeight]));
            model.eval();
            using var grad = no_grad();
            var source = randint(4, 40, [2, 5]);
            var lengths = tensor(new long[] { 5, 3 });
            var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
            var (logits, _) = model.Decoder.call(full(2, 1, 1, ScalarType.Int64), state);
            Assert.Equal([2L, 1, 50], logits.shape);
        }
    }

    [Fact]
    public void WeightsChangedInEvalModeArePackedAgain()
    {
        using var model = Model(true, true, "relu");
        var (_, before) = Logits(model, ComputeType.Float32);
        using (no_grad())
            foreach (var p in model.Decoder.parameters()) p.mul_(1.5);
        // Logits() switches to train and back, which drops the packed weights anyway: go around it.
        using var grad = no_grad();
        manual_seed(3);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 7, 5, 2 });
        var target = randint(4, 50, [3, 6]);
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var (logits, _) = model.Decoder.call(target.narrow(1, 0, 1), state);
        Assert.False(logits.allclose(before.narrow(1, 0, 1)), "stale packed weights were used after the weights changed");
        model.train();
        var reference = model.call(source, lengths, target).narrow(1, 0, 1);
        Assert.True(reference.allclose(logits, rtol: 1e-4, atol: 1e-5));
    }
}

/// <summary>
/// The GRU decoder's packed eval-mode step computes libtorch's GRU cell: the same logits and hidden state, under every
/// kernel choice (DecodingKernels: the modules themselves, no oneDNN products, ...).
/// </summary>
public sealed class PackedGruDecodingTests
{
    [Theory]
    [InlineData(ComputeType.Float32, 1e-5, 40, "auto")]
    [InlineData(ComputeType.Float32, 1e-5, 12000, "auto")] // an output layer large enough for oneDNN's inner product at every row count
    [InlineData(ComputeType.Float32, 1e-5, 1200, "modules")]
    [InlineData(ComputeType.Float32, 1e-5, 1200, "no-row-step")]
    [InlineData(ComputeType.Float32, 1e-5, 1200, "no-onednn")]
    [InlineData(ComputeType.Float32, 1e-5, 1200, "no-row-step,no-onednn")]
    [InlineData(ComputeType.Int8, 0.05, 40, "auto")]
    public void StepsEqualTheModules(ComputeType type, double tolerance, int targetVocabulary, string choice)
    {
        var kernels = DecodingKernels.Parse(choice);
        manual_seed(5);
        var config = new GruConfig { SourceVocabSize = 30, TargetVocabSize = targetVocabulary, EmbeddingSize = 16, HiddenSize = 24, Layers = 2, Dropout = 0 };
        using var model = new GruSeq2Seq(config);
        using var grad = no_grad();
        var source = randint(4, 30, [2, 5]);
        var lengths = tensor(new long[] { 5, 3 });
        var target = randint(4, 40, [2, 4]);
        model.train();
        var reference = model.call(source, lengths, target);
        model.eval();
        kernels.Apply(model);
        var decoder = (GruDecoder)model.Decoder;
        decoder.ComputeType = type;
        var state = decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        for (long t = 0; t < target.shape[1]; t++)
        {
            var (logits, next) = decoder.call(target.narrow(1, t, 1), state);
            steps.Add(logits);
            state = next;
        }
        var packed = cat(steps, 1);
        double error = (reference - packed).abs().max().item<float>();
        double range = reference.abs().max().item<float>();
        Assert.True(error <= tolerance * Math.Max(1, range), $"max difference {error} (logits up to {range})");
        Assert.Equal(kernels.Packed, decoder.CurrentPlan is not null);
    }

    [Theory]
    [InlineData(16, 24, 1)]
    [InlineData(64, 128, 2)]   // wide enough for oneDNN's products over every position
    public void EvalEncoderEqualsThePackedSequenceGru(int embedding, int hiddenSize, int layers)
    {
        manual_seed(6);
        var config = new GruConfig { SourceVocabSize = 30, TargetVocabSize = 40, EmbeddingSize = embedding, HiddenSize = hiddenSize, Layers = layers, Dropout = 0 };
        using var model = new GruSeq2Seq(config);
        using var grad = no_grad();
        var source = randint(4, 30, [4, 9]);
        var lengths = tensor(new long[] { 3, 9, 1, 6 }); // unsorted, one of a single token; 4 rows: the packed path
        model.train();
        var modules = model.Encoder.call(source, lengths);
        model.eval();
        var packed = model.Encoder.call(source, lengths);
        Assert.True(modules.Outputs.allclose(packed.Outputs, rtol: 1e-4, atol: 1e-5), $"outputs: max difference {(modules.Outputs - packed.Outputs).abs().max().item<float>()}");
        Assert.True(modules.FinalState!.allclose(packed.FinalState!, rtol: 1e-4, atol: 1e-5), $"final state: max difference {(modules.FinalState! - packed.FinalState!).abs().max().item<float>()}");
        Assert.Equal(0f, packed.Outputs[2, 1..].abs().max().item<float>()); // past a sentence's end: zeros
    }

    [Theory]
    [InlineData("gru")]
    [InlineData("transformer")]
    public void AnEvalModePassWithGradientsReachesEveryWeight(string architecture)
    {
        // Packed weights are detached copies: with gradients on, eval mode must run the modules so weights get gradients.
        manual_seed(2);
        var data = Transduce.Data.TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        using var model = ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary, architecture: architecture));
        model.eval();
        using var source = randint(4, data.SourceVocabulary.Count, [2, 5]);
        using var lengths = tensor(new long[] { 5, 3 });
        using var target = randint(4, data.TargetVocabulary.Count, [2, 4]);
        using var loss = model.call(source, lengths, target).square().sum();
        loss.backward();
        var missing = model.named_parameters().Where(p => p.parameter.grad is null || p.parameter.grad.abs().sum().item<float>() == 0)
            .Select(p => p.name).ToList();
        Assert.Empty(missing);
    }
}
