using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>A <see cref="TrainingRun"/> written down at update 0, for trainers in other processes.</summary>
public sealed partial class TrainingRun
{
    /// <summary>
    /// Instead of <see cref="Run"/>: does everything the run does before its first update — reads the corpus, learns the
    /// text side (vocabularies, BPE or SentencePiece), encodes the pairs, initialises the model under the seed — and writes
    /// the run directory as it stands at update 0: the checkpoint (<c>config.json</c>, vocabularies, subword models, the
    /// initial <c>model.safetensors</c>), <c>train.json</c> (this configuration), <c>trainer.json</c> (position 0) and the
    /// generator's state, plus the encoded pairs as memory-mappable token shards in <c>data/</c>. The PyTorch DDP trainer
    /// (<c>python/transduce_torch</c>, under <c>torchrun</c>) trains such a directory; <see cref="Resume"/> trains it here, to
    /// the weights <see cref="Run"/> would reach, reading the shards instead of the corpus.
    /// </summary>
    /// <param name="shardPairs">Most sentence pairs per shard file.</param>
    public PreparationSummary Prepare(int shardPairs = TokenShards.DefaultShardPairs)
    {
        if (started) throw new InvalidOperationException("a TrainingRun runs or prepares once");
        if (resuming) throw new InvalidOperationException($"{Directory}: Prepare writes a new run; this one is being resumed");
        ArgumentOutOfRangeException.ThrowIfLessThan(shardPairs, 1);
        started = true;
        if (Config.Training.Threads is int n) set_num_threads(n);
        using var prepared = PrepareNew();
        var checkpoint = prepared.Checkpoint;
        TokenShardsInfo? shards = null;
        Save(checkpoint, prepared, TrainingPosition.Start, optimizer: null, extras: dir =>
            shards = TokenShards.Write(Path.Combine(dir, Preparation.ShardsFolder), prepared.Pairs,
                checkpoint.SourceVocabulary.Count, checkpoint.TargetVocabulary.Count, shardPairs));
        long parameters = Trainer.DistinctParameters(checkpoint.Model).Sum(p => p.numel());
        Say($"prepared {prepared.CorpusName}: {shards!.Pairs:N0} pairs, {shards.SourceTokens:N0}/{shards.TargetTokens:N0} source/target tokens, " +
            $"vocab {shards.SourceVocabularySize:N0}/{shards.TargetVocabularySize:N0}, {shards.Shards.Count} shard(s), " +
            $"{checkpoint.ModelConfig.Architecture} {parameters:N0} parameters");
        return new PreparationSummary(Directory, (int)shards.Pairs, shards.SourceTokens, shards.TargetTokens,
            shards.SourceVocabularySize, shards.TargetVocabularySize, shards.Shards.Count, parameters);
    }
}

/// <summary>What <see cref="TrainingRun.Prepare"/> wrote.</summary>
/// <param name="Directory">The prepared run directory.</param>
/// <param name="Pairs">Training pairs encoded.</param>
/// <param name="SourceTokens">Source token ids in all (no end-of-sentence marks).</param>
/// <param name="TargetTokens">Target token ids in all (no end-of-sentence marks).</param>
/// <param name="SourceVocabularySize">Source vocabulary size.</param>
/// <param name="TargetVocabularySize">Target vocabulary size.</param>
/// <param name="Shards">Shard files written in <c>data/</c>.</param>
/// <param name="Parameters">The model's parameters (a tied weight counted once).</param>
public sealed record PreparationSummary(string Directory, int Pairs, long SourceTokens, long TargetTokens, int SourceVocabularySize,
    int TargetVocabularySize, int Shards, long Parameters);
