using Transduce.Checkpoints;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>Options for <see cref="Translator"/>.</summary>
public sealed record TranslationOptions
{
    /// <summary>Sentences decoded together at most.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>
    /// When set, a batch also holds at most this many padded source tokens (rows × longest row), so batches of short
    /// sentences are large and batches of long ones small.
    /// </summary>
    public int? BatchTokens { get; init; }

    /// <summary>Output length limit: <c>MaxLengthA × source tokens + MaxLengthB</c>.</summary>
    public double MaxLengthA { get; init; } = 2.0;

    /// <summary>Constant part of the output length limit.</summary>
    public int MaxLengthB { get; init; } = 10;

    /// <summary>Beam size: 1 (the default) decodes greedily, larger values use <see cref="BeamSearch"/>.</summary>
    public int Beam { get; init; } = 1;

    /// <summary>When set, at most this many new tokens including <c>&lt;eos&gt;</c> (transformers' <c>max_new_tokens</c>), whatever the source length.</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary>Translations returned per sentence by <see cref="Translator.TranslateNBest"/> (at most this many, best first).</summary>
    public int NBest { get; init; } = 1;

    /// <summary>The number type of the decoder's products; null uses <see cref="Translator.ComputeType"/>.</summary>
    public Models.ComputeType? ComputeType { get; init; }
}

/// <summary>
/// Loads a checkpoint once and translates text with it (greedy or beam search, batched). Calls are serialised,
/// so one instance can be shared between threads.
/// </summary>
public sealed class Translator : IDisposable
{
    private readonly Checkpoint checkpoint;
    private readonly Text.TextPipeline pipeline;
    private readonly object gate = new();
    private readonly bool owns;

    /// <summary>Wraps a loaded checkpoint; unless <paramref name="ownsCheckpoint"/> is false, the translator disposes it.</summary>
    public Translator(Checkpoint checkpoint, bool ownsCheckpoint = true)
    {
        this.checkpoint = checkpoint;
        owns = ownsCheckpoint;
        pipeline = checkpoint.CreateTextPipeline();
        checkpoint.Model.eval();
        ComputeType = checkpoint.Generation.ComputeType ?? Models.ComputeType.Float32;
    }

    /// <summary>
    /// The number type decoding uses when <see cref="TranslationOptions.ComputeType"/> is not set: the checkpoint's default
    /// (<see cref="GenerationSettings.ComputeType"/>), else float32. Reduced types (bfloat16, int8) multiply the linear
    /// layers in that type; see <see cref="Models.ComputeType"/>.
    /// </summary>
    public Models.ComputeType ComputeType { get; set; }

    /// <summary>
    /// Loads the checkpoint in <paramref name="directory"/>: a Transduce checkpoint, or a Hugging Face MarianMT (OPUS-MT)
    /// folder, which is converted in memory (<see cref="Models.Marian.MarianConvert"/>).
    /// </summary>
    public static Translator Load(string directory) =>
        new(Models.Marian.MarianConvert.IsMarianFolder(directory) ? Models.Marian.MarianConvert.ToCheckpoint(directory) : Checkpoint.Load(directory));

    /// <summary>The loaded checkpoint.</summary>
    public Checkpoint Checkpoint => checkpoint;

    /// <summary>
    /// The options this model decodes with when the caller chooses nothing: the checkpoint's beam size (a MarianMT
    /// folder's <c>num_beams</c>, as transformers' <c>generate</c> uses it) and length limit; greedy otherwise.
    /// </summary>
    public TranslationOptions DefaultOptions => new()
    {
        Beam = checkpoint.Generation.NumBeams ?? 1,
        MaxNewTokens = checkpoint.Generation.MaxNewTokens,
    };

    /// <summary>Translates <paramref name="sentences"/>; results come back in input order.</summary>
    public IReadOnlyList<string> Translate(IReadOnlyList<string> sentences, TranslationOptions? options = null) =>
        TranslateTokens(sentences, options).Select(pipeline.Detokenize).ToList();

    /// <summary>
    /// Translates <paramref name="sentences"/> on the thread pool; results come back in input order. Cancelling before
    /// the work starts skips it; a decode already running finishes (its result is then dropped).
    /// </summary>
    public Task<IReadOnlyList<string>> TranslateAsync(IReadOnlyList<string> sentences, TranslationOptions? options = null, CancellationToken cancellation = default) =>
        Task.Run(() =>
        {
            cancellation.ThrowIfCancellationRequested();
            return Translate(sentences, options);
        }, cancellation);

    /// <summary>
    /// Translates <paramref name="sentences"/> and returns output tokens; results come back in input order.
    /// Uses greedy search when <see cref="TranslationOptions.Beam"/> is 1 and otherwise the best hypothesis of beam search.
    /// </summary>
    public IReadOnlyList<string[]> TranslateTokens(IReadOnlyList<string> sentences, TranslationOptions? options = null)
    {
        options ??= new TranslationOptions();
        if (options.Beam < 1) throw new ArgumentException("the beam size must be at least 1", nameof(options));
        var tgtVocab = checkpoint.TargetVocabulary;
        if (options.Beam == 1)
            return Run(sentences, options, (src, lengths, ids, maxLengths) =>
                GreedySearch.Decode(checkpoint.Model, src, lengths, ids, maxLengths, checkpoint.Generation.BannedTokens)
                    .Select(o => tgtVocab.Decode(o).ToArray()).ToArray());
        var beam = BeamOptions(options.Beam, 1);
        return Run(sentences, options, (src, lengths, ids, maxLengths) =>
            BeamSearch.Decode(checkpoint.Model, src, lengths, ids, maxLengths, beam)
                .Select(n => tgtVocab.Decode(n[0].Tokens).ToArray()).ToArray());
    }

    /// <summary>
    /// Translates <paramref name="sentences"/> with beam search and returns, per sentence in input order, up to
    /// <see cref="TranslationOptions.NBest"/> distinct translations with their normalised scores
    /// (<see cref="Hypothesis.Score"/>), best first. The beam size is the larger of
    /// <see cref="TranslationOptions.Beam"/> and <see cref="TranslationOptions.NBest"/>.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<(string Text, double Score)>> TranslateNBest(IReadOnlyList<string> sentences, TranslationOptions? options = null)
    {
        options ??= new TranslationOptions();
        if (options.Beam < 1) throw new ArgumentException("the beam size must be at least 1", nameof(options));
        if (options.NBest < 1) throw new ArgumentException("n-best must be at least 1", nameof(options));
        var tgtVocab = checkpoint.TargetVocabulary;
        var beam = BeamOptions(Math.Max(options.Beam, options.NBest), options.NBest);
        return Run(sentences, options, (src, lengths, ids, maxLengths) =>
            BeamSearch.Decode(checkpoint.Model, src, lengths, ids, maxLengths, beam)
                .Select(n => (IReadOnlyList<(string, double)>)n
                    .Select(h => (pipeline.Detokenize(tgtVocab.Decode(h.Tokens).ToArray()), h.Score)).ToArray())
                .ToArray());
    }

    /// <summary>Cuts the length-sorted <paramref name="order"/> into batches by sentence count and, when asked, by padded tokens.</summary>
    private static IEnumerable<int[]> Batches(int[] order, int[][] encoded, TranslationOptions options)
    {
        int maxRows = Math.Max(1, options.BatchSize);
        var batch = new List<int>();
        int longest = 0;
        foreach (int i in order)
        {
            int length = encoded[i].Length + 1;
            int widest = Math.Max(longest, length);
            bool full = batch.Count == maxRows || (options.BatchTokens is int cap && batch.Count > 0 && widest * (batch.Count + 1) > cap);
            if (full)
            {
                yield return [.. batch];
                batch.Clear();
                widest = length;
            }
            batch.Add(i);
            longest = widest;
        }
        if (batch.Count > 0) yield return [.. batch];
    }

    /// <summary>Sources are cut to the training cut (d2l's num_steps) and to what the model can take.</summary>
    /// <summary>
    /// The most output tokens (before <c>&lt;eos&gt;</c>) a source of <paramref name="sourceTokens"/> ids may get:
    /// <c>max_new_tokens</c> when set (the options', else the checkpoint's; it counts <c>&lt;eos&gt;</c> too), otherwise
    /// ⌈<see cref="TranslationOptions.MaxLengthA"/> × (tokens + &lt;eos&gt;)⌉ + <see cref="TranslationOptions.MaxLengthB"/>;
    /// never more than the model's positions allow.
    /// </summary>
    public int MaxOutputLength(int sourceTokens, TranslationOptions? options = null)
    {
        options ??= new TranslationOptions();
        int cap = checkpoint.ModelConfig.MaxSequenceLength is int positions ? positions - 1 : int.MaxValue;
        int? fixedLimit = options.MaxNewTokens ?? checkpoint.Generation.MaxNewTokens;
        return Math.Min(cap, fixedLimit is int n ? Math.Max(0, n - 1)
            : (int)Math.Ceiling(options.MaxLengthA * (sourceTokens + 1)) + options.MaxLengthB);
    }

    private int? MaxSourceSteps => Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength);

    private BeamSearchOptions BeamOptions(int beamSize, int nBest) => new()
    {
        BeamSize = beamSize, NBest = nBest,
        Normalization = checkpoint.Generation.LengthNormalization,
        LengthPenalty = checkpoint.Generation.LengthPenalty,
        BannedTokens = checkpoint.Generation.BannedTokens,
        EarlyStopping = checkpoint.Generation.EarlyStopping,
    };

    /// <summary>
    /// Encodes <paramref name="sentences"/>, decodes them in length-sorted batches with <paramref name="decode"/>
    /// (source ids, source lengths, target special ids, per-row maximum output lengths → one result per row),
    /// and returns the results in input order.
    /// </summary>
    private T[] Run<T>(IReadOnlyList<string> sentences, TranslationOptions options, Func<Tensor, Tensor, SpecialIds, int[], IReadOnlyList<T>> decode)
    {
        var srcVocab = checkpoint.SourceVocabulary;
        var tgtVocab = checkpoint.TargetVocabulary;
        var ids = new SpecialIds(tgtVocab.PadId, tgtVocab.BosId, tgtVocab.EosId);
        var srcIds = new SpecialIds(srcVocab.PadId, srcVocab.BosId, srcVocab.EosId);
        var encoded = sentences.Select(s => srcVocab.Encode(pipeline.TokenizeSource(s))).ToArray();
        var results = new T[sentences.Count];
        // Sort by length so each batch pads little; write results back by original index.
        var order = Enumerable.Range(0, encoded.Length).OrderBy(i => encoded[i].Length).ToArray();
        lock (gate)
        {
            Models.ComputeTypes.Apply(checkpoint.Model, options.ComputeType ?? ComputeType);
            foreach (var chunk in Batches(order, encoded, options))
            {
                using var scope = NewDisposeScope();
                var (src, lengths) = Batching.BuildSources(chunk.Select(i => encoded[i]).ToList(), srcIds, MaxSourceSteps);
                var maxLengths = chunk.Select(i => MaxOutputLength(encoded[i].Length, options)).ToArray();
                var outputs = decode(src, lengths, ids, maxLengths);
                for (int k = 0; k < chunk.Length; k++)
                    results[chunk[k]] = outputs[k];
            }
        }
        return results;
    }

    /// <summary>
    /// Translates one sentence and returns the decoder's cross-attention over the source for that translation,
    /// or null when the architecture has no attention (the plain GRU).
    /// </summary>
    public (string Translation, AttentionMap? Attention) TranslateWithAttention(string sentence, TranslationOptions? options = null)
    {
        var tokens = TranslateTokens([sentence], options)[0];
        var srcVocab = checkpoint.SourceVocabulary;
        var tgtVocab = checkpoint.TargetVocabulary;
        var sourceTokens = pipeline.TokenizeSource(sentence);
        var sourceIds = srcVocab.Encode(sourceTokens);
        var outputIds = tgtVocab.Encode(tokens);
        lock (gate)
        {
            var (src, lengths) = Batching.BuildSources([sourceIds], new SpecialIds(srcVocab.PadId, srcVocab.BosId, srcVocab.EosId), MaxSourceSteps);
            using (src)
            using (lengths)
            {
                var weights = AttentionProbe.CrossAttention(checkpoint.Model, src, lengths, outputIds, new SpecialIds(tgtVocab.PadId, tgtVocab.BosId, tgtVocab.EosId));
                string text = pipeline.Detokenize(tokens);
                if (weights is null) return (text, null);
                var shownSource = Batching.WithEos(sourceIds, srcVocab.EosId, MaxSourceSteps).Select(id => srcVocab[id]).ToList();
                // Unknown source words show as typed, not as <unk>.
                for (int i = 0; i < Math.Min(sourceTokens.Length, shownSource.Count); i++) shownSource[i] = sourceTokens[i];
                var shownTarget = tokens.Append(Text.Vocabulary.EosToken).ToList();
                return (text, new AttentionMap(shownSource, shownTarget, weights));
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (owns) checkpoint.Dispose();
    }
}
