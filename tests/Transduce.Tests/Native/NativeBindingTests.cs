using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Native;
using static TorchSharp.torch;

namespace Transduce.Tests.Native;

/// <summary>
/// Each native binding is probed once, and where it is missing its fallback serves: the bindings are marked unavailable
/// here (as a libtorch without them would leave them) and decoding must give the same result, with no crash and no
/// repacking per call.
/// </summary>
public sealed class NativeBindingTests
{
    [Fact]
    public void EveryBindingWorksWithThisLibtorch()
    {
        foreach (var binding in NativeBindings.All)
            Assert.True(binding.Available, $"{binding.Name}: {binding.Reason}");
    }

    [Fact]
    public void AMissingBindingWarnsOnceAndGivesItsReason()
    {
        var warnings = new List<string>();
        var before = NativeBinding.Warn;
        NativeBinding.Warn = warnings.Add;
        try
        {
            int probes = 0;
            var missing = new NativeBinding("test kernel", "no_such_symbol", "the slow path serves", () => { probes++; return "no_such_symbol not found"; });
            var throwing = new NativeBinding("throwing kernel", "x", "the slow path serves", () => throw new EntryPointNotFoundException("gone"));
            for (int i = 0; i < 3; i++)
            {
                Assert.False(missing.Available);
                Assert.False(throwing.Available);
            }
            Assert.Equal(1, probes);
            Assert.Equal("no_such_symbol not found", missing.Reason);
            Assert.Contains("gone", throwing.Reason);
            Assert.Equal(2, warnings.Count);
            Assert.Contains("test kernel (no_such_symbol) is not available: no_such_symbol not found; the slow path serves", warnings[0]);
        }
        finally
        {
            NativeBinding.Warn = before;
        }
    }

    private static TransformerSeq2Seq Model()
    {
        manual_seed(29);
        var config = new TransformerConfig
        {
            SourceVocabSize = 40, TargetVocabSize = 1200, EmbeddingSize = 32, HiddenSize = 32, Layers = 2,
            Heads = 4, FfnSize = 64, Dropout = 0, PreNorm = true, AttentionBias = true, Activation = "relu",
        };
        var model = new TransformerSeq2Seq(config);
        model.eval();
        return model;
    }

    /// <summary>Greedy tokens of a few steps over rows of a fixed source, and the logits of the first step.</summary>
    private static (long[] Tokens, Tensor Logits) Greedy(TransformerSeq2Seq model, long rows)
    {
        using var mode = inference_mode();
        manual_seed(8);
        var source = randint(4, 40, [rows, 7]);
        var lengths = full(rows, 7L, ScalarType.Int64);
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var token = full(rows, 1, 1L, ScalarType.Int64);
        var tokens = new List<long>();
        Tensor? first = null;
        for (int t = 0; t < 8; t++)
        {
            (var logits, state) = model.Decoder.call(token, state);
            first ??= logits.clone();
            token = logits.argmax(-1);
            tokens.AddRange(token.data<long>().ToArray());
        }
        return ([.. tokens], first!);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void WithoutOneDnnDecodingGivesTheSameTokens(long rows)
    {
        using var model = Model();
        var (expected, expectedLogits) = Greedy(model, rows);
        ((TransformerDecoder)model.Decoder).ComputeType = ComputeType.BFloat16; // drop the plan: the next one packs without oneDNN
        ((TransformerDecoder)model.Decoder).ComputeType = ComputeType.Float32;
        using (OneDnnKernels.Binding.Disable())
        {
            var (tokens, logits) = Greedy(model, rows);
            Assert.Equal(expected, tokens);
            Assert.True(expectedLogits.allclose(logits, rtol: 1e-4, atol: 1e-5));
            var plan = Assert.IsType<TransformerDecodePlan>(((TransformerDecoder)model.Decoder).CurrentPlan);
            Assert.False(plan.Output.UsesOneDnn);
            Assert.Equal("fallback", Capabilities.Report().Single(c => c.Name == OneDnnKernels.Binding.Name).Status);
        }
    }

    [Fact]
    public void WithoutFbgemmInt8LayersArePackedAsFloat32()
    {
        manual_seed(31);
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var w = randn(96, 64) / 8;
        var b = randn(96);
        var x = randn(5, 64);
        using var float32 = PackedLinear.Pack(ComputeType.Float32, [(w, b)]);
        using (var int8 = PackedLinear.Pack(ComputeType.Int8, [(w, b)]))
            Assert.Equal(ComputeType.Int8, int8.ComputeType);
        using (Int8Kernels.Binding.Disable())
        {
            using var fallback = PackedLinear.Pack(ComputeType.Int8, [(w, b)]);
            Assert.Equal(ComputeType.Float32, fallback.ComputeType);
            Assert.True(float32.Forward(x).allclose(fallback.Forward(x), rtol: 1e-5, atol: 1e-6));
        }
    }

    [Fact]
    public void WithoutFbgemmAnInt8ModelDecodesAsFloat32()
    {
        using var model = Model();
        var (expected, _) = Greedy(model, 1);
        using (Int8Kernels.Binding.Disable())
        {
            ((TransformerDecoder)model.Decoder).ComputeType = ComputeType.Int8;
            ((TransformerEncoder)model.Encoder).ComputeType = ComputeType.Int8;
            var (tokens, _) = Greedy(model, 1);
            Assert.Equal(expected, tokens);
        }
    }

    [Fact]
    public void WithoutVersionCountersWeightsArePackedOncePerLoad()
    {
        using var model = Model();
        var (expected, _) = Greedy(model, 2);
        var decoder = (TransformerDecoder)model.Decoder;
        var encoder = (TransformerEncoder)model.Encoder;
        decoder.ComputeType = ComputeType.BFloat16; // drop the plans made with counters
        decoder.ComputeType = ComputeType.Float32;
        model.train();
        model.eval();
        using (WeightVersions.Binding.Disable())
        {
            Assert.Null(WeightVersions.Sum(model.parameters()));
            var (tokens, _) = Greedy(model, 2);
            Assert.Equal(expected, tokens);
            var plan = decoder.CurrentPlan;
            var encoderPlan = encoder.CurrentPlan;
            Assert.NotNull(plan);
            Assert.Equal(PlanCache.UnknownVersion, plan!.Version);
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(expected, Greedy(model, 2).Tokens);
                Assert.Same(plan, decoder.CurrentPlan);   // not packed again per call
                Assert.Same(encoderPlan, encoder.CurrentPlan);
            }
            // Leaving eval mode still drops them (a reload or training in between packs afresh).
            model.train();
            model.eval();
            Greedy(model, 2);
            Assert.NotSame(plan, decoder.CurrentPlan);
        }
    }

    [Fact]
    public void WithoutAutocastBfloat16TrainingStopsWithAnErrorAndFloat32Runs()
    {
        using (Autocast.Binding.Disable())
        {
            Assert.False(Autocast.IsAvailable);
            Assert.False(Autocast.IsActive);
            using (Autocast.Enter(ScalarType.Float32)) { }
            var error = Assert.Throws<NotSupportedException>(() => Autocast.Enter(ScalarType.BFloat16));
            Assert.Contains("autocast", error.Message);
        }
        using (Autocast.Enter(ScalarType.BFloat16))
            Assert.True(Autocast.IsActive);
    }

    [Fact]
    public void WithoutMalloptFreedMemoryIsLeftToTheCLibrary()
    {
        using (NativeMemory.Binding.Disable())
        {
            Assert.False(NativeMemory.KeepFreedMemory());
            NativeMemory.ReleaseFreedMemory(); // does nothing, does not throw
            Assert.Equal("fallback", Capabilities.Report().Single(c => c.Name == NativeMemory.Binding.Name).Status);
        }
    }

    [Fact]
    public void TheReportNamesEveryKernelAndWhatAChoiceSwitchesOff()
    {
        var auto = Capabilities.Report();
        foreach (string name in NativeBindings.All.Select(b => b.Name).Concat(["packed decoding", "managed row step", "managed panels", "cpu Avx2", "cpu Avx512F", "Vector512 accelerated", "libtorch", "TorchSharp", "threads"]))
            Assert.Contains(auto, c => c.Name == name);
        Assert.Equal("in use", auto.Single(c => c.Name == OneDnnKernels.Binding.Name).Status);
        Assert.Equal(RowLinear.Supported ? "in use" : "fallback", auto.Single(c => c.Name == "managed panels").Status);
        Assert.Equal(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "yes" : "no", auto.Single(c => c.Name == "Vector512 accelerated").Status);
        var off = Capabilities.Report(DecodingKernels.Parse("no-onednn,no-row-step"));
        Assert.Equal("off", off.Single(c => c.Name == OneDnnKernels.Binding.Name).Status);
        Assert.Equal("off", off.Single(c => c.Name == "managed row step").Status);
        var modules = Capabilities.Report(DecodingKernels.Parse("modules"));
        Assert.Equal("off", modules.Single(c => c.Name == "packed decoding").Status);
    }
}
