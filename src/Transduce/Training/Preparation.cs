using Transduce.Checkpoints;
using Transduce.Data;

namespace Transduce.Training;

/// <summary>
/// Where a prepared run (<see cref="TrainingRun.Prepare"/>) keeps its training pairs: the encoded ids as
/// <see cref="TokenShards"/> in the run directory's <see cref="ShardsFolder"/>, which trainers in other processes
/// (PyTorch DDP under <c>torchrun</c>, see <c>python/</c>) read, and <see cref="TrainingRun.Resume"/> reads instead of the corpus.
/// </summary>
internal static class Preparation
{
    /// <summary>The sub-folder of a prepared run that holds its token shards.</summary>
    public const string ShardsFolder = "data";

    /// <summary>
    /// The training pairs of a prepared folder, or of a checkpoint trained on one (whose <see cref="ShardsFolder"/> names
    /// the shards it was trained on), read into memory; null when the folder has none (<see cref="TryOpenPairs"/>).
    /// </summary>
    /// <exception cref="InvalidDataException">The shards were encoded for other vocabularies, or do not match their manifest.</exception>
    public static IReadOnlyList<EncodedPair>? TryReadPairs(string directory, Checkpoint? checkpoint = null)
    {
        using var pairs = TryOpenPairs(directory, checkpoint);
        return pairs?.ToList();
    }

    /// <summary>
    /// The training pairs of a prepared folder, or of a checkpoint trained on one, over the mapped shard files (the caller
    /// disposes them); null when the folder has none. With <paramref name="checkpoint"/>, the shards' vocabulary sizes must
    /// be the model's.
    /// </summary>
    /// <exception cref="InvalidDataException">The shards were encoded for other vocabularies, or do not match their manifest.</exception>
    public static ShardPairs? TryOpenPairs(string directory, Checkpoint? checkpoint = null)
    {
        string shards = Path.Combine(directory, ShardsFolder);
        if (!TokenShards.Exists(shards)) return null;
        if (checkpoint is not null)
        {
            var info = TokenShards.ReadInfo(shards);
            if (info.SourceVocabularySize != checkpoint.SourceVocabulary.Count || info.TargetVocabularySize != checkpoint.TargetVocabulary.Count)
                throw new InvalidDataException(
                    $"{Path.Combine(shards, TokenShards.ManifestFile)}: the shards were encoded with vocabularies of {info.SourceVocabularySize}/{info.TargetVocabularySize} " +
                    $"tokens, the checkpoint's are {checkpoint.SourceVocabulary.Count}/{checkpoint.TargetVocabulary.Count}");
        }
        return ShardPairs.Open(shards);
    }
}
