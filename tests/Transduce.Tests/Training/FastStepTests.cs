using Transduce.Data;
using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;
using Transduce.Training;
using static TorchSharp.torch;

namespace Transduce.Tests.Training;

/// <summary>Issue 27's faster training step: each piece against the reference path it replaces, on tiny models.</summary>
public sealed class FastStepTests
{
    private static (float Loss, Tensor Gradient) LossAndGradient(Tensor logits, Tensor labels, double epsilon, int accumulate, bool fused,
        long chunk = Seq2SeqLoss.FusedChunkValues)
    {
        using var leaf = logits.detach().requires_grad_(true);
        float loss = Seq2SeqLoss.Backward(leaf, labels, 0, epsilon, accumulate, fused, chunk);
        return (loss, leaf.grad!.to_type(ScalarType.Float32).detach().clone());
    }

    [Theory]
    [InlineData(0.0, 1, false)]
    [InlineData(0.1, 1, false)]
    [InlineData(0.1, 3, false)]
    [InlineData(0.1, 1, true)]
    [InlineData(0.0, 2, true)]
    public void FusedLossGivesAutogradsLossAndGradient(double epsilon, int accumulate, bool bf16)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        // 70 rows of 4,000 classes: several chunks (65 rows each), the last one short; a third of the labels padding.
        var logits = randn(7, 10, 4000).mul_(3);
        if (bf16) logits = logits.to_type(ScalarType.BFloat16);
        var labels = randint(1, 4000, [7, 10]).masked_fill(rand(7, 10).lt(0.33), 0);
        var (fusedLoss, fusedGradient) = LossAndGradient(logits, labels, epsilon, accumulate, fused: true, chunk: 65 * 4000);
        var (loss, gradient) = LossAndGradient(logits, labels, epsilon, accumulate, fused: false);
        Assert.Equal(loss, fusedLoss, 1e-5 * Math.Abs(loss));
        // bfloat16 gradients are rounded once on either path; float32 ones agree to rounding.
        double tolerance = bf16 ? 1e-2 : 1e-5;
        Assert.True(fusedGradient.allclose(gradient, rtol: tolerance, atol: 1e-9), $"largest difference {(fusedGradient - gradient).abs().max().item<float>()}");
        // Padding gets no gradient; the gradient of a row sums to zero (softmax minus a distribution).
        using var padRows = labels.reshape(-1).eq(0);
        Assert.Equal(0f, fusedGradient.reshape(-1, 4000)[padRows].abs().max().item<float>());
        if (!bf16) Assert.True(fusedGradient.sum([-1L]).abs().max().item<float>() < 1e-7);
    }

    [Fact]
    public void FusedLossTakesAutogradsPathForClassesAModelCannotProduce()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        var logits = randn(2, 3, 9);
        logits[.., .., 3] = tensor(float.NegativeInfinity);
        var labels = tensor(new long[] { 1, 2, 0, 4, 5, 6 }, [2, 3]);
        var (fusedLoss, fusedGradient) = LossAndGradient(logits, labels, 0.1, 1, fused: true);
        var (loss, gradient) = LossAndGradient(logits, labels, 0.1, 1, fused: false);
        Assert.True(float.IsFinite(fusedLoss));
        Assert.Equal(loss, fusedLoss);
        Assert.Equal(0f, (fusedGradient - gradient).abs().max().item<float>());
    }

    [Fact]
    public void FusedLossKeepsNothingOfItsArithmeticInTheGraph()
    {
        // Computed under grad mode, the chunks' arithmetic was recorded and its saved tensors outlived every call: about
        // three logits' worth per call (3.2 MB logits here: some 1.5 GB over these calls; 200 MB an update at the preset).
        manual_seed(3);
        using var output = nn.Linear(16, 8000);
        void Step()
        {
            using var scope = NewDisposeScope();
            var logits = output.call(randn(1, 100, 16));
            Seq2SeqLoss.Backward(logits, randint(1, 8000, [1, 100]), 0, 0.1, 1, fused: true);
            output.zero_grad();
        }
        for (int i = 0; i < 20; i++) Step();
        long before = Environment.WorkingSet;
        for (int i = 0; i < 150; i++) Step();
        double grownMb = (Environment.WorkingSet - before) / 1e6;
        Assert.True(grownMb < 200, $"the process grew by {grownMb:N0} MB over 150 fused losses");
    }

    private static TransformerConfig Tiny => new()
    {
        SourceVocabSize = 30, TargetVocabSize = 30, EmbeddingSize = 16, HiddenSize = 16, Heads = 2,
        FfnSize = 32, Layers = 2, Dropout = 0, TieEmbeddings = true, ShareEmbeddings = true, PreNorm = true,
    };

    private static readonly List<EncodedPair> Pairs =
    [
        new([4, 5, 6], [7, 8]), new([9, 10], [11, 12, 13]), new([14, 15, 16, 17], [18, 19]), new([20, 21], [22, 23, 24, 25]),
        new([26, 5], [27, 28]), new([6, 7, 8], [9]),
    ];

    private static TrainingOptions Options(TrainingKernels kernels) => new()
    {
        Epochs = 3, BatchSize = 2, LearningRate = 0.01, GradientClip = 0.05, LabelSmoothing = 0.1, Seed = 4,
        KeepFreedMemory = false, Kernels = kernels,
    };

    private static float[] Train(TrainingKernels kernels, TrainingOptions? options = null, TrainingResume? resume = null,
        Action<TrainingSnapshot>? onSave = null)
    {
        manual_seed(9);
        using var created = ModelRegistry.Create(Tiny);
        Trainer.Train(created, Pairs, new SpecialIds(0, 1, 2), null, options ?? Options(kernels), onSave: onSave, resume: resume);
        return created.parameters().SelectMany(p => p.detach().data<float>().ToArray()).ToArray();
    }

    private static double Diff(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs(p.First - p.Second));

    [Fact]
    public void FlatAdamMakesTorchSharpsUpdatesWithClipping()
    {
        // 9 updates with a clip threshold small enough that every one is clipped, label smoothing, a tied embedding.
        var reference = Train(TrainingKernels.None);
        var flat = Train(TrainingKernels.FlatAdam);
        var both = Train(TrainingKernels.Fast);
        var unclipped = Train(TrainingKernels.FlatAdam, Options(TrainingKernels.FlatAdam) with { GradientClip = 0 });
        Assert.True(Diff(reference, flat) < 1e-5, $"flat Adam differs from TorchSharp's by {Diff(reference, flat)}");
        Assert.True(Diff(reference, both) < 1e-4, $"the fast step differs from the reference by {Diff(reference, both)}");
        Assert.True(Diff(reference, unclipped) > 1e-3, "clipping changed nothing: the test does not see it");
    }

    [Fact]
    public void FlatAdamUsesOneBufferAndKeepsTheTie()
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        using var model = ModelRegistry.Create(Tiny);
        var parameters = Trainer.DistinctParameters(model);
        using var optimizer = optim.Adam(parameters, lr: 0.01);
        using var flat = FlatAdam.TryCreate(optimizer, parameters);
        Assert.NotNull(flat);
        Assert.Equal(parameters.Sum(p => p.numel()), flat.Count);
        var named = model.named_parameters().ToDictionary(n => n.name, n => n.parameter);
        // The tied projection still is the embedding: one storage, one offset.
        static (IntPtr, long) Where(Tensor p) { using var s = p.storage<float>(); return (s.data_ptr(), p.storage_offset()); }
        Assert.Equal(Where(named[named.Keys.First(k => k.EndsWith("embedding.weight"))]), Where(named["decoder.dense.weight"]));
        Assert.Single(parameters.Select(p => Where(p).Item1).Distinct());
    }

    [Fact]
    public void FlatAdamStateSavesAndResumesInTheOptimisersFormat()
    {
        // Stop after the first epoch and save the optimiser as the run does; continue from it with either optimiser.
        var options = Options(TrainingKernels.Fast);
        byte[]? saved = null;
        TrainingPosition? at = null;
        var whole = Train(TrainingKernels.Fast);
        Train(TrainingKernels.Fast, options with { Epochs = 1 }, onSave: s =>
        {
            using var stream = new MemoryStream();
            using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) s.Optimizer.save_state_dict(writer);
            saved = stream.ToArray();
            at = s.Position;
        });
        Assert.NotNull(saved);
        var firstEpoch = Train(TrainingKernels.Fast, options with { Epochs = 1 });
        TrainingResume Resume() => new(at!, o =>
        {
            using var reader = new BinaryReader(new MemoryStream(saved!));
            o.load_state_dict(reader);
        });
        // The resumed runs start from the first epoch's weights, as a checkpoint would give them.
        float[] Continue(TrainingKernels kernels)
        {
            manual_seed(9);
            using var model = ModelRegistry.Create(Tiny);
            using (no_grad())
            {
                int offset = 0;
                foreach (var p in model.parameters())
                {
                    int n = (int)p.numel();
                    p.copy_(tensor(firstEpoch.AsSpan(offset, n).ToArray()).reshape(p.shape));
                    offset += n;
                }
            }
            Trainer.Train(model, Pairs, new SpecialIds(0, 1, 2), null, Options(kernels), resume: Resume());
            return model.parameters().SelectMany(p => p.detach().data<float>().ToArray()).ToArray();
        }
        var resumed = Continue(TrainingKernels.Fast);
        var resumedByTorchSharp = Continue(TrainingKernels.FusedLoss);
        Assert.Equal(whole, resumed);
        Assert.True(Diff(whole, resumedByTorchSharp) < 1e-5, $"TorchSharp's Adam resumed from the flat state differs by {Diff(whole, resumedByTorchSharp)}");
    }
}
