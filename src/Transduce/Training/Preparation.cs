using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Models;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>How a run learns its text side from its training pairs (see <see cref="Preparation.Begin"/>).</summary>
public sealed record TextLearning
{
    /// <summary>BPE vocabulary size (tokenizer <c>bpe</c>: a joint model trained on both sides).</summary>
    public int BpeVocabSize { get; init; } = 8000;

    /// <summary>Minimum token frequency of word and SentencePiece vocabularies.</summary>
    public int MinFrequency { get; init; } = 1;

    /// <summary>One vocabulary for both sides (word and SentencePiece; BPE always has one).</summary>
    public bool JointVocabulary { get; init; }

    /// <summary>Pairs to build word or SentencePiece vocabularies from, when not the training pairs (d2l: train + validation).</summary>
    public IReadOnlyList<SentencePair>? VocabularyPairs { get; init; }

    /// <summary>Tokenizer <c>spm</c>: the SentencePiece models (trained beforehand, e.g. with <c>spm_train</c>); the vocabularies hold the pieces the data uses.</summary>
    public SentencePiecePair? SentencePiece { get; init; }
}

/// <summary>
/// The start of a training run, computed once and written down so that trainers in other processes (PyTorch DDP under
/// <c>torchrun</c>, see <c>python/</c>) train on exactly what <see cref="Trainer"/> would: a checkpoint folder with the
/// learnt text side, the model initialised under the run's seed, and the encoded training pairs as <see cref="TokenShards"/>
/// in its <see cref="ShardsFolder"/>.
/// </summary>
public static class Preparation
{
    /// <summary>The sub-folder of a prepared checkpoint that holds its token shards.</summary>
    public const string ShardsFolder = "data";

    /// <summary>
    /// What a run has before its first update: the text side learnt from <paramref name="pairs"/> (word vocabularies,
    /// a trained joint BPE model, or the given SentencePiece models with vocabularies of their pieces), the encoded pairs,
    /// and the model of <paramref name="model"/> (its vocabulary sizes and pad id filled in) initialised after
    /// <c>manual_seed(<paramref name="seed"/>)</c>. The global random generator is left where training continues from.
    /// </summary>
    /// <param name="pairs">Training pairs.</param>
    /// <param name="text">Normaliser, tokenizer and length cut.</param>
    /// <param name="model">Architecture and sizes; vocabulary sizes are taken from the learnt vocabularies.</param>
    /// <param name="seed">Seed of the initialisation (and of the dropout masks that follow).</param>
    /// <param name="learning">How vocabularies and subwords are learnt.</param>
    public static (Checkpoint Start, IReadOnlyList<EncodedPair> Pairs) Begin(IReadOnlyList<SentencePair> pairs, TextConfig text, ModelConfig model,
        int seed, TextLearning? learning = null)
    {
        learning ??= new TextLearning();
        TranslationData data;
        BpeTokenizer? subwords = null;
        if (text.Tokenizer == "spm")
        {
            var spm = learning.SentencePiece ?? throw new ArgumentException("the 'spm' tokenizer needs its SentencePiece models");
            data = TranslationData.Prepare(pairs, new TextPipeline(text, sentencePiece: spm), learning.MinFrequency,
                vocabularyPairs: learning.VocabularyPairs, jointVocabulary: learning.JointVocabulary);
        }
        else
        {
            (data, subwords) = TranslationData.ForTraining(pairs, text, learning.BpeVocabSize, learning.MinFrequency, learning.JointVocabulary, learning.VocabularyPairs);
        }
        var src = data.SourceVocabulary;
        var tgt = data.TargetVocabulary;
        var config = model with { SourceVocabSize = src.Count, TargetVocabSize = tgt.Count, PadId = tgt.PadId };
        manual_seed(seed);
        var start = new Checkpoint
        {
            Model = ModelFactory.Create(config), ModelConfig = config, TextConfig = text,
            SourceVocabulary = src, TargetVocabulary = tgt, Subwords = subwords,
            SentencePiece = text.Tokenizer == "spm" ? learning.SentencePiece : null,
        };
        return (start, data.Pairs);
    }

    /// <summary>
    /// Writes a prepared run into <paramref name="directory"/>, atomically as every checkpoint: <paramref name="start"/>
    /// (config.json, model.safetensors, vocabularies, subword models) and <paramref name="pairs"/> as token shards in
    /// <see cref="ShardsFolder"/>. The folder loads as a checkpoint (its model untrained, or as trained so far).
    /// </summary>
    /// <param name="directory">The folder to write.</param>
    /// <param name="start">The model and text side the pairs were encoded with.</param>
    /// <param name="pairs">Encoded training pairs, in corpus order.</param>
    /// <param name="shardPairs">Most pairs per shard file.</param>
    /// <param name="writeExtras">Writes further files (the run configuration, training state) before the folder is renamed into place.</param>
    public static TokenShardsInfo Write(string directory, Checkpoint start, IEnumerable<EncodedPair> pairs, int shardPairs = TokenShards.DefaultShardPairs,
        Action<string>? writeExtras = null)
    {
        TokenShardsInfo? info = null;
        start.Save(directory, dir =>
        {
            info = TokenShards.Write(Path.Combine(dir, ShardsFolder), pairs, start.SourceVocabulary.Count, start.TargetVocabulary.Count, shardPairs);
            writeExtras?.Invoke(dir);
        });
        return info!;
    }

    /// <summary>
    /// The training pairs of a prepared folder, or of a checkpoint trained on one (whose <see cref="ShardsFolder"/> names
    /// the shards it was trained on); null when the folder has none.
    /// </summary>
    public static IReadOnlyList<EncodedPair>? TryReadPairs(string directory)
    {
        string shards = Path.Combine(directory, ShardsFolder);
        return TokenShards.Exists(shards) ? TokenShards.Read(shards) : null;
    }
}
