using Transduce.Checkpoints;
using Transduce.Training;

namespace Transduce.Tests.Training;

/// <summary><see cref="TrainingRun.Prepare"/>: the run written down at update 0, and <see cref="TrainingRun.Resume"/> training it from its shards.</summary>
public sealed class PrepareTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-prepare-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void APreparedRunResumesFromItsShardsToTheWeightsOfAnUninterruptedRun()
    {
        // Dropout on: the generator's state after initialisation travels with the prepared run.
        var config = TrainingRunTests.Tiny(epochs: 4) with { Model = TrainingRunTests.Tiny().Model with { Dropout = 0.3 } };
        string whole = Path.Combine(dir, "whole"), prepared = Path.Combine(dir, "prepared");
        using (var run = new TrainingRun(config, whole, TrainingRunTests.Pairs)) run.Run();

        PreparationSummary summary;
        using (var run = new TrainingRun(config, prepared, TrainingRunTests.Pairs)) summary = run.Prepare(shardPairs: 5);
        Assert.Equal((TrainingRunTests.Pairs.Length, 3), (summary.Pairs, summary.Shards));
        Assert.True(File.Exists(Path.Combine(prepared, "data", "shards.json")) && File.Exists(Path.Combine(prepared, "trainer.json")));
        Assert.False(File.Exists(Path.Combine(prepared, "optimizer.bin")));
        Assert.Equal(config.ToJson(), RunConfig.Load(Path.Combine(prepared, "train.json")).ToJson());
        using (var start = Checkpoint.Load(prepared)) Assert.Equal(summary.SourceVocabularySize, start.SourceVocabulary.Count);

        // No pairs given: the run was given them in memory, but its shards hold their ids.
        var messages = new List<string>();
        using (var run = TrainingRun.Resume(prepared))
        {
            run.Message += (_, m) => messages.Add(m);
            run.Run();
        }
        Assert.Contains(messages, m => m.Contains(Path.Combine(prepared, "data")));
        Assert.DoesNotContain(messages, m => m.Contains("afresh"));   // at update 0 there are no moments to lose
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "model.safetensors")), File.ReadAllBytes(Path.Combine(prepared, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(prepared, "data", "shards.json")), "a save keeps the shards");
    }

    [Fact]
    public void ACheckpointWithoutOptimiserStateContinuesWithFreshMomentsAndSaysSo()
    {
        var config = TrainingRunTests.Tiny(epochs: 4);
        string run = Path.Combine(dir, "run");
        using (var training = new TrainingRun(config, run, TrainingRunTests.Pairs)) training.Prepare();
        using (var training = TrainingRun.Resume(run))
        {
            using var stop = new CancellationTokenSource();
            training.Progress += (_, p) => { if (p.Step == 3) stop.Cancel(); };
            Assert.Equal(TrainingStop.Cancelled, training.Run(stop.Token).Stop);
        }
        // As another trainer leaves it: weights and position, no optimiser or generator state of ours.
        File.Delete(Path.Combine(run, "optimizer.bin"));
        File.Delete(Path.Combine(run, "rng.safetensors"));
        var messages = new List<string>();
        using (var training = TrainingRun.Resume(run))
        {
            training.Message += (_, m) => messages.Add(m);
            var summary = training.Run();
            Assert.Equal(TrainingStop.Completed, summary.Stop);
            Assert.Equal(16, summary.Updates);
        }
        Assert.Contains(messages, m => m.Contains("optimizer.bin: not found — the optimiser's moments start afresh"));
    }

    [Fact]
    public void SentencePieceNeedsItsModelFileBeforeAnythingIsWritten()
    {
        var config = TrainingRunTests.Tiny() with { Text = new TextOptions { Tokenizer = TokenizerKind.Spm } };
        Assert.Contains("text.spm_model", Assert.Throws<ArgumentException>(() => config.Validate()).Message);
        string missing = Path.Combine(dir, "none.model");
        var e = Assert.Throws<FileNotFoundException>(() => new TrainingRun(config with { Text = config.Text with { SpmModel = missing } }, Path.Combine(dir, "spm")));
        Assert.Contains("none.model: SentencePiece model not found", e.Message);
        Assert.False(Directory.Exists(Path.Combine(dir, "spm")));
    }
}
