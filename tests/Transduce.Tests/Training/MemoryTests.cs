using System.Runtime.CompilerServices;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Training;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Training;

/// <summary>Counts live tensors process-wide, so it must not overlap other tests that create or dispose tensors.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LiveTensorCountCollection
{
    public const string Name = "live tensor count";

    /// <summary>
    /// The live tensor count once earlier tests' garbage is finalized: a tensor another test dropped without disposing
    /// is released by its finalizer whenever the GC runs, which would lower the count in the middle of a measurement.
    /// </summary>
    public static long SettledCount()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Tensor.TotalCount;
    }
}

[Collection(LiveTensorCountCollection.Name)]
public sealed class MemoryTests
{
    [Fact]
    public void TrainingAndDecodingLeaveNoLiveTensorsBehind()
    {
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        var pipeline = data.Text;
        var tgt = data.TargetVocabulary;
        var ids = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        manual_seed(1);
        using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, tgt));
        var options = new TrainingOptions { Epochs = 2, BatchSize = 2 };
        Trainer.Train(model, data.Pairs, ids, null, options); // warm-up: parameters' gradients now exist

        long before = LiveTensorCountCollection.SettledCount();
        Trainer.Train(model, data.Pairs, ids, null, options with { Epochs = 5 });
        var (x, len) = Batching.BuildSources([[4, 5, 6], [7]], new SpecialIds(0, 1, 2), null);
        using (x) using (len)
            for (int i = 0; i < 5; i++) GreedySearch.Decode(model, x, len, ids, [10, 10]);
        // Decoding in eval mode packs the decoder's weights once and keeps them with the model (reused by every decode);
        // leaving eval mode releases them.
        model.train();
        // The optimizer's state lived inside Train and is gone; nothing else may remain.
        Assert.Equal(before, Tensor.TotalCount);
    }

    /// <summary>A finalizable object that records whether its finalizer has run.</summary>
    private sealed class Sentinel(StrongBox<bool> finalized)
    {
        ~Sentinel() => finalized.Value = true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Abandon(StrongBox<bool> finalized) => _ = new Sentinel(finalized);

    [Fact]
    public void EachUpdateReleasesWhatTheUpdateBeforeLeftToTheFinalizer()
    {
        // TorchSharp leaves a native Scalar to the finalizer for every number given to a tensor operation; left for many
        // updates they fragment the C heap (peak RSS doubled in 200 updates of the base preset). Garbage made during
        // update k (here: a finalizable sentinel) must be finalized by the end of update k + 1.
        var data = TranslationData.Prepare(TinyModels.Pairs, new Transduce.Text.TextConfig());
        var tgt = data.TargetVocabulary;
        manual_seed(1);
        using var model = Transduce.Models.ModelRegistry.Create(TinyModels.Config(data.SourceVocabulary, tgt));
        var flags = new List<StrongBox<bool>>();
        var seen = new List<bool>();
        Trainer.Train(model, data.Pairs, new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId), null,
            new TrainingOptions { Epochs = 4, BatchSize = 2 }, onStep: p =>
            {
                if (flags.Count > 0) seen.Add(flags[^1].Value);
                var flag = new StrongBox<bool>();
                flags.Add(flag);
                Abandon(flag);
            });
        Assert.Equal(11, seen.Count);
        Assert.All(seen, Assert.True);
    }

    [Fact]
    public void SavingACheckpointLeavesNoTensorToTheFinalizer()
    {
        using var dir = new TempDir();
        using var checkpoint = Transduce.Checkpoints.Checkpoint.Load(Import.Marian.MarianFolders.Shipped);
        checkpoint.Save(dir.File("warm"));
        long before = LiveTensorCountCollection.SettledCount();
        Assert.True(GC.TryStartNoGCRegion(64_000_000));   // a tensor left to the finalizer stays counted until a GC
        try
        {
            checkpoint.Save(dir.File("saved"));
            Assert.Equal(before, Tensor.TotalCount);
        }
        finally
        {
            if (System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
        }
    }
}
