using Transduce.Checkpoints;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>Options for <see cref="Translator"/>.</summary>
public sealed record TranslationOptions
{
    /// <summary>Sentences decoded together.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Output length limit: <c>MaxLengthA × source tokens + MaxLengthB</c>.</summary>
    public double MaxLengthA { get; init; } = 2.0;

    /// <summary>Constant part of the output length limit.</summary>
    public int MaxLengthB { get; init; } = 10;
}

/// <summary>
/// Loads a checkpoint once and translates text with it (greedy decoding, batched). Calls are serialised,
/// so one instance can be shared between threads.
/// </summary>
public sealed class Translator : IDisposable
{
    private readonly Checkpoint checkpoint;
    private readonly Text.TextPipeline pipeline;
    private readonly object gate = new();

    /// <summary>Wraps a loaded checkpoint; the translator owns and disposes it.</summary>
    public Translator(Checkpoint checkpoint)
    {
        this.checkpoint = checkpoint;
        pipeline = new Text.TextPipeline(checkpoint.TextConfig);
        checkpoint.Model.eval();
    }

    /// <summary>Loads the checkpoint in <paramref name="directory"/>.</summary>
    public static Translator Load(string directory) => new(Checkpoint.Load(directory));

    /// <summary>The loaded checkpoint.</summary>
    public Checkpoint Checkpoint => checkpoint;

    /// <summary>Translates <paramref name="sentences"/>; results come back in input order.</summary>
    public IReadOnlyList<string> Translate(IReadOnlyList<string> sentences, TranslationOptions? options = null) =>
        TranslateTokens(sentences, options).Select(pipeline.Detokenize).ToList();

    /// <summary>Translates <paramref name="sentences"/> and returns output tokens; results come back in input order.</summary>
    public IReadOnlyList<string[]> TranslateTokens(IReadOnlyList<string> sentences, TranslationOptions? options = null)
    {
        options ??= new TranslationOptions();
        var srcVocab = checkpoint.SourceVocabulary;
        var tgtVocab = checkpoint.TargetVocabulary;
        var ids = new SpecialIds(tgtVocab.PadId, tgtVocab.BosId, tgtVocab.EosId);
        var srcIds = new SpecialIds(srcVocab.PadId, srcVocab.BosId, srcVocab.EosId);
        var encoded = sentences.Select(s => srcVocab.Encode(pipeline.Tokenize(s))).ToArray();
        var results = new string[sentences.Count][];
        // Sort by length so each batch pads little; write results back by original index.
        var order = Enumerable.Range(0, encoded.Length).OrderBy(i => encoded[i].Length).ToArray();
        lock (gate)
        {
            foreach (var chunk in order.Chunk(Math.Max(1, options.BatchSize)))
            {
                using var scope = NewDisposeScope();
                var (src, lengths) = Batching.BuildSources(chunk.Select(i => encoded[i]).ToList(), srcIds, checkpoint.TextConfig.MaxSteps);
                var maxLengths = chunk.Select(i => (int)Math.Ceiling(options.MaxLengthA * (encoded[i].Length + 1)) + options.MaxLengthB).ToArray();
                var outputs = GreedySearch.Decode(checkpoint.Model, src, lengths, ids, maxLengths);
                for (int k = 0; k < chunk.Length; k++)
                    results[chunk[k]] = tgtVocab.Decode(outputs[k]).ToArray();
            }
        }
        return results;
    }

    /// <inheritdoc />
    public void Dispose() => checkpoint.Dispose();
}
