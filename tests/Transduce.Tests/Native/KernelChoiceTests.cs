using Transduce.Inference;
using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Native;
using Transduce.Translation;
using static TorchSharp.torch;

namespace Transduce.Tests.Native;

/// <summary>
/// Every decoding path this machine can run, chosen through <see cref="DecodingKernels"/>: each choice must compute the
/// modules' network (same logits up to float32 rounding, same greedy tokens), and must actually take the path it names.
/// </summary>
public sealed class KernelChoiceTests
{
    /// <summary>Every kernel choice worth telling apart: everything, each one off, and the two libtorch fallbacks together.</summary>
    private static readonly string[] ChoiceNames = ["auto", "modules", "no-row-step", "no-onednn", "no-row-step,no-onednn"];

    public static TheoryData<string> Choices => new(ChoiceNames);

    private static TransformerSeq2Seq Transformer(bool preNorm = true, string activation = "relu", int targetVocabulary = 50)
    {
        manual_seed(23);
        var config = new TransformerConfig
        {
            SourceVocabSize = 40, TargetVocabSize = targetVocabulary, EmbeddingSize = 32, HiddenSize = 32, Layers = 2,
            Heads = 4, FfnSize = 64, Dropout = 0, PreNorm = preNorm, AttentionBias = true, Activation = activation,
        };
        return new TransformerSeq2Seq(config);
    }

    private static readonly long[] Target = [1, 7, 12, 30, 4, 9, 22, 41, 5, 13, 2, 18];

    /// <summary>The modules' teacher-forced logits (train mode, no dropout), then eval-mode steps under <paramref name="kernels"/>.</summary>
    private static (Tensor Modules, Tensor Steps, List<TransformerState> States) Decode(TransformerSeq2Seq model, DecodingKernels kernels, Tensor source, Tensor lengths)
    {
        long rows = source.shape[0];
        var target = tensor(Target).reshape(1, Target.Length).expand(rows, Target.Length);
        Tensor reference;
        using (no_grad())
        {
            model.train();
            reference = model.call(source, lengths, target);
        }
        model.eval();
        kernels.Apply(model);
        using var mode = inference_mode();
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        var states = new List<TransformerState>();
        for (int t = 0; t < Target.Length; t++)
        {
            (var logits, state) = model.Decoder.call(target.narrow(1, t, 1), state);
            steps.Add(logits);
            states.Add(state);
        }
        return (reference, cat(steps, 1), states);
    }

    private static void AssertClose(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.allclose(actual, rtol: 1e-4, atol: 1e-5), $"max difference {(expected - actual).abs().max().item<float>()}");
    }

    private static IEnumerable<PackedLinear> Layers(TransformerDecodePlan plan) =>
        plan.Blocks.SelectMany(b => new[] { b.SelfQkv, b.SelfOut, b.CrossQuery, b.CrossKeyValue, b.CrossOut, b.Ffn1, b.Ffn2 }).Append(plan.Output);

    /// <summary>What the packed decoder holds after a decoding under <paramref name="kernels"/>: no plan for the modules, oneDNN only where allowed.</summary>
    private static void AssertPlanFollows(TransformerSeq2Seq model, DecodingKernels kernels)
    {
        var decoder = (TransformerDecoder)model.Decoder;
        var encoder = (TransformerEncoder)model.Encoder;
        if (!kernels.Packed)
        {
            Assert.Null(decoder.CurrentPlan);
            Assert.Null(encoder.CurrentPlan);
            return;
        }
        var plan = Assert.IsType<TransformerDecodePlan>(decoder.CurrentPlan);
        Assert.NotNull(encoder.CurrentPlan);
        bool oneDnn = kernels.OneDnn && OneDnnKernels.Available;
        Assert.All(Layers(plan), layer => Assert.Equal(oneDnn, layer.UsesOneDnn));
    }

    [Theory]
    [MemberData(nameof(Choices))]
    public void OneSentenceStepsEqualTheModulesUnderEveryChoice(string choice)
    {
        var kernels = DecodingKernels.Parse(choice);
        using var model = Transformer();
        manual_seed(3);
        var source = randint(4, 40, [1, 7]);
        var lengths = tensor(new long[] { 5 });
        var (modules, steps, states) = Decode(model, kernels, source, lengths);
        AssertClose(modules, steps);
        AssertPlanFollows(model, kernels);
        // The managed row step runs exactly when it is allowed (and the CPU has 256-bit vectors or wider).
        bool rowStep = kernels.Packed && kernels.RowStep && RowKernels.Supported;
        Assert.All(states, s => Assert.Equal(rowStep, s.ManagedStep));
        if (rowStep)
        {
            // Its products: managed panels with AVX-512, the plan's packed layers without (DOTNET_EnableAVX512=0 runs that).
            var plan = (TransformerDecodePlan)((TransformerDecoder)model.Decoder).CurrentPlan!;
            var step = plan.RowStep(() => throw new InvalidOperationException("the row step should exist already"));
            Assert.NotNull(step);
            Assert.Equal(RowLinear.Supported, step!.ManagedProducts);
        }
    }

    [Theory]
    [InlineData(ComputeType.BFloat16, "auto", 1)]
    [InlineData(ComputeType.BFloat16, "no-onednn", 1)]
    [InlineData(ComputeType.BFloat16, "no-row-step", 1)]
    [InlineData(ComputeType.BFloat16, "no-onednn", 3)]
    [InlineData(ComputeType.Int8, "auto", 1)]
    [InlineData(ComputeType.Int8, "no-row-step", 3)]
    public void ReducedTypesStayCloseToTheModulesUnderEveryChoice(ComputeType type, string choice, int rows)
    {
        var kernels = DecodingKernels.Parse(choice);
        using var model = Transformer();
        ((TransformerDecoder)model.Decoder).ComputeType = type;
        ((TransformerEncoder)model.Encoder).ComputeType = type;
        manual_seed(6);
        var source = randint(4, 40, [rows, 7]);
        var lengths = full(rows, 7L, ScalarType.Int64);
        var (modules, steps, states) = Decode(model, kernels, source, lengths);
        double error = (modules - steps).abs().max().item<float>();
        double range = modules.abs().max().item<float>();
        Assert.True(error < 0.05 * range, $"max difference {error} against logits up to {range}");
        Assert.False(modules.allclose(steps, rtol: 1e-6, atol: 1e-7), "the reduced type gave float32's exact logits: it did not run");
        double agree = modules.argmax(-1).eq(steps.argmax(-1)).to_type(ScalarType.Float32).mean().item<float>();
        Assert.True(agree >= 0.8, $"only {agree:P0} of the arg-maxes agree");
        var plan = Assert.IsType<TransformerDecodePlan>(((TransformerDecoder)model.Decoder).CurrentPlan);
        Assert.Equal(type, plan.ComputeType);
        if (type == ComputeType.BFloat16)
            Assert.All(Layers(plan), layer => Assert.Equal(kernels.OneDnn && OneDnnKernels.Available, layer.UsesOneDnn));
        Assert.All(states, s => Assert.Equal(rows == 1 && kernels.RowStep && RowKernels.Supported, s.ManagedStep));
    }

    [Theory]
    [MemberData(nameof(Choices))]
    public void BatchedStepsEqualTheModulesUnderEveryChoice(string choice)
    {
        var kernels = DecodingKernels.Parse(choice);
        using var model = Transformer(preNorm: false, activation: "swish", targetVocabulary: 1200);
        manual_seed(4);
        var source = randint(4, 40, [3, 9]);
        var lengths = tensor(new long[] { 9, 6, 2 });
        var (modules, steps, states) = Decode(model, kernels, source, lengths);
        AssertClose(modules, steps);
        AssertPlanFollows(model, kernels);
        Assert.All(states, s => Assert.False(s.ManagedStep));
    }

    [Fact]
    public void TranslatorGivesTheSameTokensUnderEveryChoiceAndRepacksOnAChange()
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 60, architecture: "transformer");
        using var translator = new Translator(new Transduce.Checkpoints.Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config, SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        });
        string[] sentences = [.. TinyModels.Pairs.Select(p => p.Source)];
        var expected = translator.TranslateTokens(sentences, new TranslationOptions { Kernels = DecodingKernels.Auto with { Packed = false }, KeepFreedMemory = true });
        Assert.Equal(NativeMemory.Binding.Available, NativeMemory.Kept); // the option was applied
        var decoder = model.modules().OfType<TransformerDecoder>().Single();
        IPackedPlan? last = null;
        foreach (string choice in ChoiceNames)
        {
            var kernels = DecodingKernels.Parse(choice);
            foreach (int batch in new[] { 1, 64 })
            {
                var tokens = translator.TranslateTokens(sentences, new TranslationOptions { Kernels = kernels, BatchSize = batch });
                Assert.Equal(expected, tokens);
            }
            if (kernels.Packed)
            {
                Assert.NotNull(decoder.CurrentPlan);
                Assert.NotSame(last, decoder.CurrentPlan); // a different choice is packed afresh, never served a stale plan
            }
            last = decoder.CurrentPlan;
        }
        // The translator's own default applies when the call chooses nothing.
        translator.Kernels = DecodingKernels.Parse("modules");
        translator.TranslateTokens(sentences);
        Assert.Null(decoder.CurrentPlan);
    }

    [Fact]
    public void TheServiceCarriesItsKernelsAndMemoryChoiceIntoEachDecoding()
    {
        var defaults = new Transduce.Serving.ServeOptions().Decoding(1, 1);
        Assert.Equal(DecodingKernels.Auto, defaults.Kernels);
        Assert.False(defaults.KeepFreedMemory);
        Assert.False(new TranslationOptions().KeepFreedMemory); // opt-in: a library leaves its host's allocator alone unasked
        var chosen = new Transduce.Serving.ServeOptions { Kernels = DecodingKernels.Parse("no-onednn"), KeepFreedMemory = true }.Decoding(4, 2);
        Assert.Equal(DecodingKernels.Parse("no-onednn"), chosen.Kernels);
        Assert.True(chosen.KeepFreedMemory);
    }

    [Fact]
    public void KernelsParseAndNameRoundTrip()
    {
        Assert.Equal(DecodingKernels.Auto, DecodingKernels.Parse("auto"));
        Assert.Equal("auto", DecodingKernels.Auto.Name);
        var both = DecodingKernels.Parse("no-onednn, NO-ROW-STEP");
        Assert.Equal(new DecodingKernels { OneDnn = false, RowStep = false }, both);
        Assert.Equal("no-row-step,no-onednn", both.Name);
        Assert.Equal(both, DecodingKernels.Parse(both.Name));
        Assert.False(DecodingKernels.Parse("modules").Packed);
        var error = Assert.Throws<ArgumentException>(() => DecodingKernels.Parse("fast"));
        Assert.Contains("no-onednn", error.Message);
    }
}
