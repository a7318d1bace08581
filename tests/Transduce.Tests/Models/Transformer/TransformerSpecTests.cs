using System.Text.Json;
using Transduce.Models;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

/// <summary>
/// Every choice of the Transformer spec runs the same network on every path: the modules (the oracle, teacher-forced),
/// the packed batched plans (encoder and decoder) and the managed row step, in float32 and, close to it, in the reduced
/// compute types. A name no path implements is an error, never a default.
/// </summary>
public sealed class TransformerSpecTests
{
    private static TransformerConfig Base => new()
    {
        SourceVocabSize = 40, TargetVocabSize = 50, EmbeddingSize = 32, HiddenSize = 32, Layers = 2, Heads = 4, FfnSize = 48,
        Dropout = 0, AttentionBias = true,
    };

    /// <summary>Spec variants by name: each sets the fields one published family differs in.</summary>
    public static TheoryData<string> Variants => new(VariantConfigs.Keys);

    private static readonly Dictionary<string, Func<TransformerConfig, TransformerConfig>> VariantConfigs = new()
    {
        // T5-like: RMS norm without biases anywhere, unscaled attention, gated tanh-GELU, tied output rescaled by d^-1/2.
        ["t5"] = c => c with
        {
            PreNorm = true, Norm = "rms_norm", NormEpsilon = 1e-6, AttentionBias = false, FfnBias = false, ScaleAttention = false,
            Activation = "gated_gelu_tanh", OutputBias = false, TieEmbeddings = true, ShareEmbeddings = true, SourceVocabSize = 50,
            OutputScale = Math.Pow(32, -0.5), ScaleEmbedding = false, Positions = "relative", RelativeBuckets = 8, RelativeMaxDistance = 10,
        },
        // Heads of 64: the managed attention's register path, with relative biases.
        ["t5_heads_of_64"] = c => VariantConfigs!["t5"](c) with { EmbeddingSize = 128, HiddenSize = 128, Heads = 2 },
        // T5's d_kv: heads × head width (3 × 16 = 48) wider than the model (32), and more decoder blocks than encoder ones.
        ["t5_inner_width"] = c => VariantConfigs!["t5"](c) with { HeadSize = 16, Heads = 3, DecoderLayers = 3 },
        ["no_positions"] = c => c with { Positions = "none", ScaleEmbedding = false },
        // mBART-like: learned positions past an offset, an embedding norm, post-norm blocks with final norms anyway.
        ["mbart"] = c => c with { Positions = "learned", PositionOffset = 2, EmbeddingNorm = true, FinalNorm = true, Activation = "gelu_tanh" },
        ["swiglu"] = c => c with { Activation = "swiglu", PreNorm = true },
        ["gated_relu"] = c => c with { Activation = "gated_relu" },
        // Exact-erf GELU has no managed form: the row step steps aside and the batched plan decodes the one row.
        ["gated_gelu"] = c => c with { Activation = "gated_gelu", PreNorm = true, Norm = "rms_norm" },
        ["halves"] = c => c with { PositionalLayout = "halves", FinalNorm = false, PreNorm = true, ScaleEmbedding = false, OutputScale = 0.5 },
        // M2M100 / NLLB: fairseq's sinusoid table read past the padding id, pre-norm with final norms, no output bias.
        ["m2m100"] = c => c with { PositionalLayout = "fairseq", PositionOffset = 2, PreNorm = true, FinalNorm = true, OutputBias = false, AttentionBias = true, TieEmbeddings = true },
    };

    private static TransformerSeq2Seq Model(string variant)
    {
        manual_seed(23);
        var model = new TransformerSeq2Seq(VariantConfigs[variant](Base));
        if (variant.StartsWith("t5") || variant == "gated_gelu")
        {
            // RMS norms start at γ = 1: give them other values so that a path that skipped γ would show.
            using var grad = no_grad();
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith("norm.weight")) p.uniform_(0.5, 1.5);
        }
        return model;
    }

    private static readonly long[] Target = [1, 7, 12, 30, 4, 9, 22, 41, 5, 13, 2, 18];

    private static Tensor TeacherForced(TransformerSeq2Seq model, Tensor source, Tensor lengths)
    {
        model.train();
        var rows = source.shape[0];
        var target = tensor(Target).reshape(1, -1).expand(rows, -1);
        var logits = model.call(source, lengths, target);
        model.eval();
        return logits;
    }

    private static Tensor Stepped(TransformerSeq2Seq model, Tensor source, Tensor lengths, Action<TransformerState>? check = null)
    {
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        var steps = new List<Tensor>();
        foreach (long token in Target)
        {
            (var logits, state) = model.Decoder.call(full(source.shape[0], 1, token, ScalarType.Int64), state);
            check?.Invoke(state);
            steps.Add(logits);
        }
        return cat(steps, 1);
    }

    private static void AssertClose(Tensor expected, Tensor actual, double tolerance, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.allclose(actual, rtol: tolerance, atol: tolerance * 0.1),
            $"{what}: max difference {(expected - actual).abs().max().item<float>()}");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void PackedStepsAndTheRowStepEqualTheModules(string variant)
    {
        using var model = Model(variant);
        using var inference = inference_mode();
        manual_seed(5);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 7, 5, 2 });
        var reference = TeacherForced(model, source, lengths);
        AssertClose(reference, Stepped(model, source, lengths, s => Assert.False(s.ManagedStep)), 1e-4, "packed batch of 3");

        // One sentence: the managed row step, where the activation has a managed form.
        bool managed = FeedForwardKinds.Parse(((TransformerConfig)VariantConfigs[variant](Base)).Activation).Function().HasManagedForm();
        var one = source.narrow(0, 1, 1);
        var oneLength = lengths.narrow(0, 1, 1);
        AssertClose(TeacherForced(model, one, oneLength), Stepped(model, one, oneLength, s => Assert.Equal(managed, s.ManagedStep)), 1e-4, "one row");

        // The encoder's packed plan against its modules.
        var packed = model.Encoder.call(source, lengths).Outputs;
        model.train();
        var modules = model.Encoder.call(source, lengths).Outputs;
        model.eval();
        AssertClose(modules, packed, 1e-4, "encoder");
    }

    [Theory]
    [InlineData("t5", ComputeType.BFloat16)]
    [InlineData("t5", ComputeType.Int8)]
    [InlineData("t5_inner_width", ComputeType.BFloat16)]
    [InlineData("t5_inner_width", ComputeType.Int8)]
    [InlineData("mbart", ComputeType.BFloat16)]
    [InlineData("m2m100", ComputeType.BFloat16)]
    [InlineData("swiglu", ComputeType.Int8)]
    public void ReducedTypesStayCloseOnEverySpec(string variant, ComputeType type)
    {
        using var model = Model(variant);
        using var inference = inference_mode();
        manual_seed(6);
        var source = randint(4, 40, [2, 6]);
        var lengths = tensor(new long[] { 6, 3 });
        var reference = TeacherForced(model, source, lengths);
        ComputeTypes.Apply(model, type);
        var reduced = Stepped(model, source, lengths);
        Assert.False(reference.allclose(reduced, rtol: 1e-6, atol: 1e-7), "the reduced type did not run");
        AssertClose(reference, reduced, 0.15, type.Name());
        var oneReduced = Stepped(model, source.narrow(0, 0, 1), lengths.narrow(0, 0, 1));
        AssertClose(reference.narrow(0, 0, 1), oneReduced, 0.15, $"{type.Name()}, one row");
    }

    // Where the bucket changes, for distances −300 … 300 (key − query) with 32 buckets and a maximum distance of 128:
    // computed with PyTorch 1.13 in float32 from the T5 paper's bucketing as transformers implements it. The asymmetry at
    // ±90 is float32 rounding, which the buckets must reproduce.
    private static readonly (int Distance, int Bucket)[] Bidirectional =
        [(-300, 15), (-90, 14), (-63, 13), (-45, 12), (-31, 11), (-22, 10), (-15, 9), (-11, 8), (-7, 7), (-6, 6), (-5, 5), (-4, 4), (-3, 3),
         (-2, 2), (-1, 1), (0, 0), (1, 17), (2, 18), (3, 19), (4, 20), (5, 21), (6, 22), (7, 23), (8, 24), (12, 25), (16, 26), (23, 27),
         (32, 28), (46, 29), (64, 30), (91, 31)];

    private static readonly (int Distance, int Bucket)[] Causal =
        [(-300, 31), (-112, 30), (-98, 29), (-86, 28), (-76, 27), (-66, 26), (-58, 25), (-51, 24), (-45, 23), (-39, 22), (-34, 21), (-30, 20),
         (-26, 19), (-23, 18), (-20, 17), (-18, 16), (-15, 15), (-14, 14), (-13, 13), (-12, 12), (-11, 11), (-10, 10), (-9, 9), (-8, 8),
         (-7, 7), (-6, 6), (-5, 5), (-4, 4), (-3, 3), (-2, 2), (-1, 1), (0, 0)];

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RelativeBucketsFallWhereTheReferencePutsThem(bool bidirectional)
    {
        using var scope = NewDisposeScope();
        var buckets = RelativePositionBias.Buckets(arange(-300, 301, ScalarType.Int64), 32, 128, bidirectional).data<long>().ToArray();
        var changes = new List<(int, int)> { (-300, (int)buckets[0]) };
        for (int i = 1; i < buckets.Length; i++)
            if (buckets[i] != buckets[i - 1]) changes.Add((i - 300, (int)buckets[i]));
        Assert.Equal(bidirectional ? Bidirectional : Causal, changes);
    }

    [Fact]
    public void GatedFeedForwardAndRmsNormFollowTheirFormulas()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var spec = VariantConfigs["t5"](Base).ToSpec();
        var ffn = new PositionWiseFfn(spec);
        var x = randn(3, 32);
        var (w1, b1) = ffn.First;
        var (v, _) = ffn.Up!.Value;
        var (w2, _) = ffn.Second;
        Assert.Null(b1); // T5: no biases
        var inner = x.matmul(w1.t());
        var gelu = inner * 0.5 * (((inner + inner.pow(3) * 0.044715) * Math.Sqrt(2 / Math.PI)).tanh() + 1);
        var expected = (gelu * x.matmul(v.t())).matmul(w2.t());
        Assert.True(expected.allclose(ffn.call(x), rtol: 1e-5, atol: 1e-6));

        var norm = new RmsNorm(32, 1e-6);
        using (no_grad()) norm.Weight.uniform_(0.5, 1.5);
        var rms = x / (x.square().mean([-1L], keepdim: true) + 1e-6).sqrt() * norm.Weight;
        Assert.True(rms.allclose(norm.call(x), rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void AnUnknownNameIsAnErrorNeverADefault()
    {
        var error = Assert.Throws<ArgumentException>(() => (Base with { Activation = "gelu_fast" }).Validate());
        Assert.Contains("'activation' 'gelu_fast'", error.Message);
        Assert.Contains("swiglu", error.Message);
        Assert.Throws<ArgumentException>(() => (Base with { Norm = "batch_norm" }).Validate());
        Assert.Throws<ArgumentException>(() => (Base with { Positions = "rotary" }).Validate());
        Assert.Throws<ArgumentException>(() => (Base with { NormEpsilon = 0 }).Validate());
        Assert.Throws<ArgumentException>(() => (Base with { OutputScale = double.NaN }).Validate());
        // A config.json with an unknown activation is refused when the model is built, not decoded as relu.
        var json = Base.ToJson();
        json["activation"] = "mish";
        var read = JsonSerializer.Deserialize<ModelConfig>(json.ToJsonString(), ModelConfig.Json)!;
        Assert.Throws<ArgumentException>(() => ModelRegistry.Create(read));
    }

    [Fact]
    public void EveryKindHasOneNameAndTheDefaultsKeepTodaysModel()
    {
        Assert.Equal(Enum.GetValues<FeedForwardKind>().Length, FeedForwardKinds.Names.Count);
        foreach (var kind in Enum.GetValues<FeedForwardKind>())
            Assert.Equal(kind, FeedForwardKinds.Parse(kind.Name()));
        // A config written before the spec (no new keys) reads as the model it always was.
        var spec = new TransformerConfig { SourceVocabSize = 9, TargetVocabSize = 9, PreNorm = true }.ToSpec();
        Assert.Equal((NormKind.LayerNorm, 1e-5, true, true, true, true, PositionKind.Sinusoidal, 0, FeedForwardKind.Relu, true, 1.0, false),
            (spec.Norm, spec.NormEpsilon, spec.FinalEncoderNorm, spec.FinalDecoderNorm, spec.ScaleAttention, spec.OutputBias, spec.Positions,
                spec.PositionOffset, spec.FeedForward, spec.FeedForwardBias, spec.OutputScale, spec.EmbeddingNorm));
        Assert.Equal(Math.Sqrt(256), spec.EmbeddingScale);
    }

    [Fact]
    public void TheDefaultModelKeepsItsCheckpointNamesAndShapes()
    {
        // Checkpoints written before the spec must load: the state dict of today's Transformer is unchanged.
        using var model = new TransformerSeq2Seq(new TransformerConfig
        {
            SourceVocabSize = 7, TargetVocabSize = 9, EmbeddingSize = 8, HiddenSize = 8, Layers = 1, Heads = 2, FfnSize = 12, MaxPositions = 20,
        });
        var entries = model.state_dict().Select(kv => $"{kv.Key} [{string.Join(",", kv.Value.shape)}]").Order(StringComparer.Ordinal).ToList();
        string[] expected =
        [
            "decoder.blocks.0.CrossAttention.W_k.weight [8,8]", "decoder.blocks.0.CrossAttention.W_o.weight [8,8]",
            "decoder.blocks.0.CrossAttention.W_q.weight [8,8]", "decoder.blocks.0.CrossAttention.W_v.weight [8,8]",
            "decoder.blocks.0.SelfAttention.W_k.weight [8,8]", "decoder.blocks.0.SelfAttention.W_o.weight [8,8]",
            "decoder.blocks.0.SelfAttention.W_q.weight [8,8]", "decoder.blocks.0.SelfAttention.W_v.weight [8,8]",
            "decoder.blocks.0.addNorm1.norm.bias [8]", "decoder.blocks.0.addNorm1.norm.weight [8]",
            "decoder.blocks.0.addNorm2.norm.bias [8]", "decoder.blocks.0.addNorm2.norm.weight [8]",
            "decoder.blocks.0.addNorm3.norm.bias [8]", "decoder.blocks.0.addNorm3.norm.weight [8]",
            "decoder.blocks.0.ffn.dense1.bias [12]", "decoder.blocks.0.ffn.dense1.weight [12,8]",
            "decoder.blocks.0.ffn.dense2.bias [8]", "decoder.blocks.0.ffn.dense2.weight [8,12]",
            "decoder.dense.bias [9]", "decoder.dense.weight [9,8]", "decoder.embedding.weight [9,8]", "decoder.positions.table [1,20,8]",
            "encoder.blocks.0.addNorm1.norm.bias [8]", "encoder.blocks.0.addNorm1.norm.weight [8]",
            "encoder.blocks.0.addNorm2.norm.bias [8]", "encoder.blocks.0.addNorm2.norm.weight [8]",
            "encoder.blocks.0.attention.W_k.weight [8,8]", "encoder.blocks.0.attention.W_o.weight [8,8]",
            "encoder.blocks.0.attention.W_q.weight [8,8]", "encoder.blocks.0.attention.W_v.weight [8,8]",
            "encoder.blocks.0.ffn.dense1.bias [12]", "encoder.blocks.0.ffn.dense1.weight [12,8]",
            "encoder.blocks.0.ffn.dense2.bias [8]", "encoder.blocks.0.ffn.dense2.weight [8,12]",
            "encoder.embedding.weight [7,8]", "encoder.positions.table [1,20,8]",
        ];
        Assert.Equal(expected, entries);
    }
}
