using Transduce.Translation;
using Transduce.Architecture;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Tests.Models;

/// <summary>Properties every architecture must have, checked for each of them.</summary>
public sealed class ModelContractTests
{
    public static TheoryData<string, bool> Architectures => new()
    {
        { "gru", false }, { "bahdanau", false }, { "transformer", false }, { "transformer", true /* pre-norm, tied, shared */ },
        { "luong", false /* samples/CustomModel's, registered through the public API */ },
    };

    static ModelContractTests() => Architecture.CustomModelTests.EnsureRegistered();

    /// <summary>The Transformer variant: pre-norm, tied and shared embeddings, GELU.</summary>
    private static ModelSettings Variant(ModelSettings s) => s with { PreNorm = true, TieEmbeddings = true, ShareEmbeddings = true, Activation = "gelu" };

    private static EncoderDecoder Untrained(string architecture, bool variant, out SpecialIds ids, out int vocab)
    {
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig(), jointVocabulary: true);
        var pipeline = data.Text;
        manual_seed(7);
        var config = TinyModels.Config(data.SourceVocabulary, data.TargetVocabulary, architecture: architecture, adjust: variant ? Variant : null);
        var model = ModelRegistry.Create(config);
        model.eval();
        var t = data.TargetVocabulary;
        ids = new SpecialIds(t.PadId, t.BosId, t.EosId);
        vocab = t.Count;
        return model;
    }

    /// <summary>Feeds <paramref name="target"/> one column at a time; per step the logits and, when the model has it, the cross-attention.</summary>
    private static (Tensor Logits, Tensor? Attention) StepByStep(EncoderDecoder model, Tensor source, Tensor lengths, Tensor target, bool recomputePrefix = false)
    {
        using var decoding = model.BeginDecoding(source, lengths, recomputePrefix);
        var logits = new List<Tensor>();
        var attention = new List<Tensor>();
        for (long t = 0; t < target.shape[1]; t++)
        {
            var step = decoding.Step(target[.., t], crossAttention: true);
            logits.Add(step.Logits);
            if (step.CrossAttention is { } w) attention.Add(w);
        }
        return (stack(logits, 1), attention.Count > 0 ? stack(attention, 1) : null);
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void DecodingOneTokenAtATimeGivesTheLogitsOfTheWholePrefix(string architecture, bool variant)
    {
        using var model = Untrained(architecture, variant, out var ids, out int vocab);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var source = randint(4, vocab, [3, 6]);
        var lengths = tensor(new long[] { 6, 4, 1 });
        var target = cat([full(3, 1, ids.Bos, ScalarType.Int64), randint(4, vocab, [3, 5])], 1);
        var whole = model.call(source, lengths, target);
        var (incremental, attention) = StepByStep(model, source, lengths, target);
        Assert.Equal(whole.shape, incremental.shape);
        double diff = (whole - incremental).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"{architecture}: incremental logits differ by {diff}");
        Assert.Equal(model.HasCrossAttention, attention is not null);
        Assert.Equal(architecture != "gru", model.HasCrossAttention);
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EachStepsCrossAttentionIsWhatTheWholePrefixPassGives(string architecture, bool variant)
    {
        using var model = Untrained(architecture, variant, out var ids, out int vocab);
        if (!model.HasCrossAttention) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var source = randint(4, vocab, [3, 6]);
        var lengths = tensor(new long[] { 6, 4, 1 });
        var target = cat([full(3, 1, ids.Bos, ScalarType.Int64), randint(4, vocab, [3, 5])], 1);
        var (_, carried) = StepByStep(model, source, lengths, target);
        var (_, recomputed) = StepByStep(model, source, lengths, target, recomputePrefix: true);
        // (rows, steps, layers, heads, source): one distribution over the source per step, layer and head ...
        bool oneHead = architecture is "bahdanau" or "luong";   // one attention, however many recurrent layers
        Assert.Equal(new long[] { 3, 6, oneHead ? 1 : 2, oneHead ? 1 : 4, 6 }, carried!.shape);
        Assert.True(carried.sum(-1).allclose(ones_like(carried.sum(-1)), atol: 1e-5));
        // ... that gives padded source positions no weight, and is what teacher-forcing the whole prefix gives.
        Assert.Equal(0f, carried[2, .., .., .., TensorIndex.Slice(1, null)].abs().max().item<float>());
        double diff = (carried - recomputed!).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"{architecture}: step attention differs from the whole-prefix pass by {diff}");
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void OutputAtStepTDoesNotDependOnLaterTargetInputs(string architecture, bool variant)
    {
        using var model = Untrained(architecture, variant, out var ids, out int vocab);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var source = randint(4, vocab, [2, 5]);
        var lengths = tensor(new long[] { 5, 3 });
        var target = randint(4, vocab, [2, 6]);
        var changed = target.clone();
        changed[.., TensorIndex.Slice(3, null)] = randint(4, vocab, [2, 3]);
        var a = model.call(source, lengths, target);
        var b = model.call(source, lengths, changed);
        Assert.True(a[.., TensorIndex.Slice(0, 3)].allclose(b[.., TensorIndex.Slice(0, 3)], atol: 1e-6),
            $"{architecture}: steps 0–2 changed when only steps 3+ of the target changed");
        Assert.False(a[.., TensorIndex.Slice(3, null)].allclose(b[.., TensorIndex.Slice(3, null)], atol: 1e-6));
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void SourcePaddingIsInvisible(string architecture, bool variant)
    {
        using var model = Untrained(architecture, variant, out var ids, out int vocab);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var y = tensor(new long[] { ids.Bos, 5, 6 }, [1, 3]);
        var len = tensor(new long[] { 3 });
        var a = model.call(tensor(new long[] { 4, 5, 2 }, [1, 3]), len, y);
        var b = model.call(tensor(new long[] { 4, 5, 2, 7, 9, 4 }, [1, 6]), len, y);
        Assert.True(a.allclose(b, atol: 1e-5), $"{architecture}: padding changed the output");
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EachArchitectureOverfitsAHandfulOfPairs(string architecture, bool variant)
    {
        Func<ModelSettings, ModelSettings>? adjust = variant ? Variant : null;
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: architecture == "gru" ? 150 : 100, architecture: architecture, adjust: adjust);
        using var _m = model;
        var checkpoint = new Transduce.Checkpoints.Checkpoint
        {
            Model = model, ModelConfig = config,
            TextConfig = pipeline.Config, SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        };
        var translator = new Translator(checkpoint);
        var outputs = translator.Translate(TinyModels.Pairs.Select(p => p.Source).ToList());
        var expected = TinyModels.Pairs.Select(p => pipeline.Canonical(p.Target));
        Assert.Equal(expected, outputs);
    }
}
