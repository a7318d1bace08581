using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Evaluation;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Translation;

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

    /// <summary>
    /// Text put before every source sentence before it is tokenized: a T5 / Flan-T5 task prefix such as
    /// <c>"translate English to German: "</c> (null: none, or the <see cref="Task"/>'s). Attention maps and token views
    /// show the prefixed source. When both are set, this prefix wins over the task's.
    /// </summary>
    public string? Prefix { get; init; }

    /// <summary>
    /// A task of the model (a T5 folder's <c>task_specific_params</c>, e.g. <c>summarization</c> or
    /// <c>translation_en_to_de</c>; see <see cref="Translator.Tasks"/>), as a transformers pipeline built for that task
    /// applies it: its prefix goes before every source (unless <see cref="Prefix"/> is set, which wins) and its decoding
    /// settings — output limit, minimum length, no-repeat n-gram size, repetition penalty, length penalty, early stopping —
    /// replace the checkpoint's wherever these options leave them unset. The beam size is <see cref="Beam"/>, as always:
    /// <see cref="Translator.TaskOptions"/> gives options with the task's. Null: no task. An unknown task is an
    /// <see cref="ArgumentException"/> naming the model's tasks.
    /// </summary>
    public string? Task { get; init; }

    /// <summary>
    /// When set, an absolute cap on output tokens (before <c>&lt;eos&gt;</c>) per sentence, applied on top of every other
    /// limit: a bound on the work one sentence can cause whatever its length or the checkpoint's settings.
    /// </summary>
    public int? MaxOutputTokens { get; init; }

    /// <summary>
    /// When true, <see cref="MaxLengthA"/> and <see cref="MaxLengthB"/> bound the output even where a
    /// <c>max_new_tokens</c> limit applies (the smaller wins): a service's rule that a short sentence cannot cause a
    /// long decode, whatever the model's own settings (a MarianMT folder's <c>max_length</c> is 512).
    /// </summary>
    public bool AlwaysApplyLengthRule { get; init; }

    /// <summary>
    /// When set, no <c>&lt;eos&gt;</c> before an output holds this many tokens (transformers' <c>min_new_tokens</c>); null
    /// uses the model's setting (a Hugging Face folder's <c>min_length</c> − 1 or <c>min_new_tokens</c>, else 0). The output
    /// limit still ends an output.
    /// </summary>
    public int? MinLength { get; init; }

    /// <summary>
    /// When set, no n-gram of this many tokens occurs twice in an output (transformers' <c>no_repeat_ngram_size</c>; 0 turns
    /// the rule off); null uses the model's setting.
    /// </summary>
    public int? NoRepeatNgramSize { get; init; }

    /// <summary>
    /// When set, transformers' <c>repetition_penalty</c> (1 turns it off; above 1 discourages tokens already in the output:
    /// a negative score is multiplied by it, a positive one divided — logits in greedy search, log-probabilities in beam
    /// search); null uses the model's setting.
    /// </summary>
    public double? RepetitionPenalty { get; init; }

    /// <summary>
    /// When set, the target token id every output starts with (transformers' <c>forced_bos_token_id</c>, e.g. NLLB's
    /// target-language token chosen per call); null uses the model's setting.
    /// </summary>
    internal int? ForcedBosTokenId { get; init; }

    /// <summary>
    /// The source language of a multilingual model (NLLB: <c>eng_Latn</c>; M2M100: <c>en</c>): its token starts each source;
    /// null uses the model's default. A model without languages refuses it; an unknown code is an error naming close ones.
    /// </summary>
    public string? SourceLanguage { get; init; }

    /// <summary>
    /// The target language of a multilingual model: decoding starts with its token (transformers' <c>forced_bos_token_id</c>);
    /// null uses the model's default. A model without languages refuses it; an unknown code is an error naming close ones.
    /// </summary>
    public string? TargetLanguage { get; init; }

    /// <summary>Translations returned per sentence by <see cref="Translator.TranslateNBest"/> (at most this many, best first).</summary>
    public int NBest { get; init; } = 1;

    /// <summary>The number type of the model's linear layers in decoding (encoder and decoder); null uses <see cref="Translator.ComputeType"/>.</summary>
    public Models.ComputeType? ComputeType { get; init; }

    /// <summary>
    /// Which decoding kernels may run (see <see cref="Models.DecodingKernels"/>); null uses <see cref="Translator.Kernels"/>.
    /// A choice other than the last one's repacks the model's weights for it.
    /// </summary>
    public Models.DecodingKernels? Kernels { get; init; }

    /// <summary>
    /// When true, decoding first makes the process keep the native memory libtorch frees for reuse (process-wide, for the
    /// rest of the process; Linux with glibc only): a beam search's per-step buffers (128 rows × 17.6k words in float64
    /// is 18 MB) are otherwise mapped and faulted in afresh at every step, which cost a third of the step time. The process
    /// then holds its peak native footprint. Off by default: a library should not change its host's allocator unasked
    /// (the command line and the service opt in).
    /// </summary>
    public bool KeepFreedMemory { get; init; }
}

/// <summary>
/// Loads a checkpoint once and translates text with it (greedy or beam search, batched). Calls are serialised,
/// so one instance can be shared between threads. Asked to (<see cref="TranslationOptions.KeepFreedMemory"/>), it keeps
/// the native memory libtorch frees for reuse, as training does.
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
    /// The decoding kernels used when <see cref="TranslationOptions.Kernels"/> is not set: <see cref="Models.DecodingKernels.Auto"/>
    /// unless changed.
    /// </summary>
    public Models.DecodingKernels Kernels { get; set; } = Models.DecodingKernels.Auto;

    /// <summary>
    /// Loads the checkpoint in <paramref name="directory"/>: a Transduce checkpoint, or a Hugging Face MarianMT (OPUS-MT)
    /// folder, which is converted in memory (see <see cref="Checkpoint.Load"/>).
    /// </summary>
    /// <exception cref="DllNotFoundException">The application has no libtorch package (the message names the one to add).</exception>
    public static Translator Load(string directory) => new(Checkpoint.Load(directory));

    /// <summary>
    /// Corpus BLEU of <paramref name="translations"/> against <paramref name="references"/>, as <c>evaluate</c> and
    /// validation score them: sacreBLEU 13a on natural (cased, detokenised) output, otherwise on the model's normalised
    /// tokens with the references normalised the same way.
    /// </summary>
    public BleuScore Score(IReadOnlyList<string> translations, IEnumerable<string> references) =>
        TranslationBleu.Score(pipeline, translations, references);

    /// <summary>True when the model writes natural text (subwords, no normaliser), scored with sacreBLEU's 13a tokenizer.</summary>
    public bool ProducesNaturalText => pipeline.ProducesNaturalText;

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

    /// <summary>
    /// The tasks this model was trained for, in the order its folder lists them (a T5 folder's <c>task_specific_params</c>,
    /// e.g. t5-base's <c>summarization</c>, <c>translation_en_to_de</c>); empty for most models.
    /// </summary>
    public IReadOnlyList<string> Tasks => [.. checkpoint.Tasks.Keys];

    /// <summary>
    /// The options this model decodes <paramref name="task"/> with when the caller chooses nothing else, as a transformers
    /// pipeline built for that task does: <see cref="DefaultOptions"/> with <see cref="TranslationOptions.Task"/> set and the
    /// task's beam size and length limit. An unknown task is an <see cref="ArgumentException"/> naming the model's tasks.
    /// </summary>
    public TranslationOptions TaskOptions(string task)
    {
        var settings = TaskOf(task)!;
        return DefaultOptions with { Task = task, Beam = settings.Generation.NumBeams ?? 1, MaxNewTokens = settings.Generation.MaxNewTokens };
    }

    /// <summary>The settings of <paramref name="task"/>, or null for none; an unknown task fails naming the known ones.</summary>
    private Inference.TaskSettings? TaskOf(string? task)
    {
        if (task is null) return null;
        if (checkpoint.Tasks.TryGetValue(task, out var settings)) return settings;
        throw new ArgumentException(checkpoint.Tasks.Count == 0
            ? $"unknown task '{task}': this model has no tasks"
            : $"unknown task '{task}': this model's tasks are {string.Join(", ", checkpoint.Tasks.Keys.Select(k => $"'{k}'"))}", "options");
    }

    /// <summary>The decoding settings <paramref name="options"/> start from: their task's, else the checkpoint's.</summary>
    private GenerationSettings BaseGeneration(TranslationOptions? options) => TaskOf(options?.Task)?.Generation ?? checkpoint.Generation;

    /// <summary>The text put before each source: the options' prefix, else their task's (null: none).</summary>
    private string? PrefixOf(TranslationOptions? options) => options?.Prefix ?? TaskOf(options?.Task)?.Prefix;

    /// <summary>
    /// Translates <paramref name="sentences"/>; results come back in input order. <paramref name="cancellation"/> is
    /// checked between batches and between decoding steps (then <see cref="OperationCanceledException"/>).
    /// </summary>
    public IReadOnlyList<string> Translate(IReadOnlyList<string> sentences, TranslationOptions? options = null, CancellationToken cancellation = default) =>
        TranslateIds(sentences, options, cancellation).Select(DecodeText).ToList();

    /// <summary>
    /// Translates <paramref name="sentences"/> on the thread pool; results come back in input order. Cancelling skips
    /// work not yet started and stops a decode that is running within one step.
    /// </summary>
    public Task<IReadOnlyList<string>> TranslateAsync(IReadOnlyList<string> sentences, TranslationOptions? options = null, CancellationToken cancellation = default) =>
        Task.Run(() =>
        {
            cancellation.ThrowIfCancellationRequested();
            return Translate(sentences, options, cancellation);
        }, cancellation);

    /// <summary>
    /// Translates a stream of sentences a batch (<see cref="TranslationOptions.BatchSize"/>) at a time and yields each
    /// translation, in input order, as soon as its batch is done. <paramref name="cancellation"/> is checked between
    /// batches (a batch already decoding finishes first). The input is read lazily: a file of any size streams through.
    /// </summary>
    public async IAsyncEnumerable<string> TranslateStreamAsync(IEnumerable<string> sentences, TranslationOptions? options = null,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation = default)
    {
        int size = Math.Max(1, options?.BatchSize ?? new TranslationOptions().BatchSize);
        var batch = new List<string>(size);
        foreach (string sentence in sentences)
        {
            batch.Add(sentence);
            if (batch.Count < size) continue;
            foreach (string translation in await TranslateAsync([.. batch], options, cancellation).ConfigureAwait(false)) yield return translation;
            batch.Clear();
        }
        if (batch.Count > 0)
            foreach (string translation in await TranslateAsync([.. batch], options, cancellation).ConfigureAwait(false)) yield return translation;
    }

    /// <summary>
    /// Translates <paramref name="sentences"/> and returns output tokens (for display); results come back in input order.
    /// Uses greedy search when <see cref="TranslationOptions.Beam"/> is 1 and otherwise the best hypothesis of beam search.
    /// <paramref name="cancellation"/> is checked between batches and between decoding steps.
    /// </summary>
    public IReadOnlyList<string[]> TranslateTokens(IReadOnlyList<string> sentences, TranslationOptions? options = null, CancellationToken cancellation = default) =>
        TranslateIds(sentences, options, cancellation).Select(ids => checkpoint.TargetVocabulary.Decode(ids).ToArray()).ToList();

    /// <summary>
    /// Translates <paramref name="sentences"/> and returns the output ids (without <c>&lt;bos&gt;</c> and <c>&lt;eos&gt;</c>)
    /// in input order: greedy search when <see cref="TranslationOptions.Beam"/> is 1, otherwise the best hypothesis of beam search.
    /// </summary>
    internal IReadOnlyList<int[]> TranslateIds(IReadOnlyList<string> sentences, TranslationOptions? options = null, CancellationToken cancellation = default) =>
        Search(Encode(sentences, options), options, nBest: null, crossAttention: false, cancellation).Select(n => n.Count > 0 ? n[0].Tokens : []).ToList();

    /// <summary>
    /// Translates <paramref name="sentences"/> with beam search and returns, per sentence in input order, up to
    /// <see cref="TranslationOptions.NBest"/> distinct translations with their normalised scores
    /// (<see cref="Hypothesis.Score"/>), best first. The beam size is the larger of
    /// <see cref="TranslationOptions.Beam"/> and <see cref="TranslationOptions.NBest"/>.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<(string Text, double Score)>> TranslateNBest(IReadOnlyList<string> sentences, TranslationOptions? options = null,
        CancellationToken cancellation = default) =>
        TranslateHypotheses(sentences, options, cancellation)
            .Select(n => (IReadOnlyList<(string, double)>)n.Select(h => (h.Text, h.Score)).ToArray())
            .ToArray();

    /// <summary>
    /// As <see cref="TranslateNBest"/>, with each translation's output tokens and, when <paramref name="crossAttention"/>
    /// asks for it and the model attends over the source, the cross-attention of the decoding that produced it
    /// (<see cref="TranslationHypothesis.Attention"/>). <paramref name="cancellation"/> is checked between batches and between steps.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<TranslationHypothesis>> TranslateHypotheses(IReadOnlyList<string> sentences, TranslationOptions? options = null,
        CancellationToken cancellation = default, bool crossAttention = false)
    {
        options ??= new TranslationOptions();
        if (options.NBest < 1) throw new ArgumentException("n-best must be at least 1", nameof(options));
        var encoded = Encode(sentences, options);
        return Search(encoded, options, options.NBest, crossAttention, cancellation)
            .Select((n, i) => (IReadOnlyList<TranslationHypothesis>)n.Select(h =>
                new TranslationHypothesis(DecodeText(h.Tokens), h.Score, checkpoint.TargetVocabulary.Decode(h.Tokens).ToArray())
                {
                    Attention = h.CrossAttention is { } weights ? Map(encoded[i], PrefixOf(options) + sentences[i], h.Tokens, weights) : null,
                }).ToArray())
            .ToArray();
    }

    /// <summary>
    /// Translates one sentence and returns, with the translation, the cross-attention the decoder paid while producing it
    /// (from the search itself), or null when the architecture has no attention over the source (the plain GRU).
    /// </summary>
    public (string Translation, AttentionMap? Attention) TranslateWithAttention(string sentence, TranslationOptions? options = null)
    {
        string source = PrefixOf(options) + sentence;
        int[] sourceIds = EncodeSource(sentence, options);
        var best = Search([sourceIds], options, nBest: null, crossAttention: true, default)[0] is { Count: > 0 } found ? found[0] : new Hypothesis([], 0, 0);
        string text = DecodeText(best.Tokens);
        return (text, best.CrossAttention is { } weights ? Map(sourceIds, source, best.Tokens, weights) : null);
    }

    /// <summary>
    /// The most work decoding each of <paramref name="sentences"/> with <paramref name="options"/> can take, known
    /// before decoding (it only tokenizes): the source positions the encoder sees, the output limit
    /// (<see cref="MaxOutputLength"/>) and the hypotheses kept per sentence (the larger of
    /// <see cref="TranslationOptions.Beam"/> and <see cref="TranslationOptions.NBest"/>). A service admits or refuses
    /// requests by it (<see cref="DecodingCost.Cost"/>).
    /// </summary>
    internal IReadOnlyList<DecodingCost> EstimateCost(IReadOnlyList<string> sentences, TranslationOptions? options = null)
    {
        options ??= new TranslationOptions();
        int rows = Math.Max(1, Math.Max(options.Beam, options.NBest));
        int? maxSteps = MaxSourceSteps;
        var costs = new DecodingCost[sentences.Count];
        for (int i = 0; i < costs.Length; i++)
        {
            int tokens = EncodeSource(sentences[i], options).Length;
            int positions = maxSteps is int m ? Math.Min(tokens + 1, m) : tokens + 1;
            costs[i] = new DecodingCost(tokens, Math.Max(1, positions), MaxOutputLength(tokens, options), rows);
        }
        return costs;
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

    /// <summary>
    /// The most output tokens (before <c>&lt;eos&gt;</c>) a source of <paramref name="sourceTokens"/> ids may get:
    /// <c>max_new_tokens</c> when set (the options', else their task's or the checkpoint's; it counts <c>&lt;eos&gt;</c> too), otherwise
    /// ⌈<see cref="TranslationOptions.MaxLengthA"/> × (tokens + &lt;eos&gt;)⌉ + <see cref="TranslationOptions.MaxLengthB"/>
    /// (with <see cref="TranslationOptions.AlwaysApplyLengthRule"/>, the smaller of the two); never more than the model's
    /// positions allow nor than <see cref="TranslationOptions.MaxOutputTokens"/>.
    /// </summary>
    public int MaxOutputLength(int sourceTokens, TranslationOptions? options = null)
    {
        options ??= new TranslationOptions();
        int cap = checkpoint.ModelConfig.MaxSequenceLength is int positions ? positions - 1 : int.MaxValue;
        if (options.MaxOutputTokens is int absolute)
        {
            if (absolute < 0) throw new ArgumentException("the output token cap must not be negative", nameof(options));
            cap = Math.Min(cap, absolute);
        }
        int? fixedLimit = options.MaxNewTokens ?? BaseGeneration(options).MaxNewTokens;
        double rule = Math.Ceiling(options.MaxLengthA * (sourceTokens + 1)) + options.MaxLengthB;
        int byRule = rule >= int.MaxValue ? int.MaxValue : (int)rule;
        // max_new_tokens counts the <eos> a forced end writes; an output that stops at the limit may hold them all.
        int limit = fixedLimit is int n ? Math.Max(0, BaseGeneration(options).LengthLimit == LengthLimitRule.Stop ? n : n - 1) : byRule;
        if (options.AlwaysApplyLengthRule) limit = Math.Min(limit, byRule);
        return Math.Min(cap, limit);
    }

    /// <summary>Sources are cut to the training cut (d2l's num_steps) and to what the model can take.</summary>
    private int? MaxSourceSteps => Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength);

    private int[][] Encode(IReadOnlyList<string> sentences, TranslationOptions? options) => sentences.Select(s => EncodeSource(s, options)).ToArray();

    /// <summary>
    /// The source ids of <paramref name="sentence"/> after the prefix (the options', else their task's) as the model's family
    /// frames a source (its pair encoding, as in training): with the source language's token for a multilingual model.
    /// </summary>
    internal int[] EncodeSource(string sentence, TranslationOptions? options)
    {
        string? prefix = PrefixOf(options);
        if (checkpoint.Languages is not { } languages)
        {
            if (options?.SourceLanguage is not null || options?.TargetLanguage is not null)
                throw new ArgumentException("this model has no languages to choose: leave out the source and target language", nameof(options));
            return pipeline.EncodeSource(prefix is not null ? prefix + sentence : sentence);
        }
        languages.SourceId(options?.SourceLanguage); // an unknown or missing language fails here, naming close codes
        var context = new PairEncodingContext(SourceLanguage: options?.SourceLanguage ?? languages.DefaultSource,
            SourcePrefix: prefix, SourceLanguageIds: languages.Source);
        return checkpoint.PairEncoding.Source(pipeline, sentence, context);
    }

    /// <summary>Output text without the tokens that are never text (a multilingual model's language codes).</summary>
    private string DecodeText(IEnumerable<int> ids) =>
        pipeline.Decode(checkpoint.Languages is { } languages ? ids.Where(id => !languages.TargetSpecials.Contains(id)) : ids);

    /// <summary>
    /// Decodes <paramref name="encoded"/> sources in length-sorted batches and returns, per source in input order, its
    /// hypotheses best first: greedy search's one when the beam is 1 and no n-best list is asked for, else beam search's
    /// (of the larger of the beam and <paramref name="nBest"/>). <paramref name="cancellation"/> is checked between batches
    /// and between decoding steps.
    /// </summary>
    private IReadOnlyList<Hypothesis>[] Search(int[][] encoded, TranslationOptions? options, int? nBest, bool crossAttention, CancellationToken cancellation)
    {
        options ??= new TranslationOptions();
        if (options.Beam is < 1 or > BeamSearchOptions.MaxBeamSize)
            throw new ArgumentException($"the beam size must be between 1 and {BeamSearchOptions.MaxBeamSize} (got {options.Beam})", nameof(options));
        var model = checkpoint.Model;
        var baseline = BaseGeneration(options); // the task's settings, else the checkpoint's
        var generation = baseline with
        {
            MinLength = options.MinLength ?? baseline.MinLength,
            NoRepeatNgramSize = options.NoRepeatNgramSize ?? baseline.NoRepeatNgramSize,
            RepetitionPenalty = options.RepetitionPenalty ?? baseline.RepetitionPenalty,
            ForcedBosTokenId = options.ForcedBosTokenId
                ?? (checkpoint.Languages is { } languages ? languages.TargetId(options.TargetLanguage) : (int?)null)
                ?? baseline.ForcedBosTokenId,
        };
        var greedy = generation.Greedy(crossAttention);
        var beam = generation.Beam(Math.Max(options.Beam, nBest ?? 1), nBest ?? 1, crossAttention);
        greedy.Validate(); // options out of range fail before any work, naming the option
        beam.Validate();
        var srcVocab = checkpoint.SourceVocabulary;
        var tgtVocab = checkpoint.TargetVocabulary;
        // Decoding starts and ends with the ids training used (the family's pair encoding: decoder start, end).
        var ids = checkpoint.PairEncoding.Ids(tgtVocab);
        var srcIds = new SpecialIds(srcVocab.PadId, srcVocab.BosId, srcVocab.EosId, ids.AppendEos);
        var results = new IReadOnlyList<Hypothesis>[encoded.Length];
        // Sort by length so each batch pads little; write results back by original index.
        var order = Enumerable.Range(0, encoded.Length).OrderBy(i => encoded[i].Length).ToArray();
        lock (gate)
        {
            if (options.KeepFreedMemory) Native.NativeMemory.KeepFreedMemory();
            Models.ComputeTypes.Apply(model, options.ComputeType ?? ComputeType);
            (options.Kernels ?? Kernels).Apply(model);
            foreach (var chunk in Batches(order, encoded, options))
            {
                cancellation.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var (src, lengths) = Batching.BuildSources(chunk.Select(i => encoded[i]).ToList(), srcIds, MaxSourceSteps);
                var maxLengths = chunk.Select(i => MaxOutputLength(encoded[i].Length, options)).ToArray();
                var outputs = nBest is null && options.Beam == 1
                    ? GreedySearch.Decode(model, src, lengths, ids, maxLengths, greedy, cancellation).Select(h => (IReadOnlyList<Hypothesis>)[h]).ToArray()
                    : BeamSearch.Decode(model, src, lengths, ids, maxLengths, beam, cancellation);
                for (int k = 0; k < chunk.Length; k++)
                    results[chunk[k]] = outputs[k];
            }
        }
        return results;
    }

    /// <summary>The attention map of an output of <paramref name="sentence"/>, its tokens shown as typed (unknown words too).</summary>
    private AttentionMap Map(int[] sourceIds, string sentence, int[] outputIds, IReadOnlyList<float[,,]> weights)
    {
        var srcVocab = checkpoint.SourceVocabulary;
        var tgtVocab = checkpoint.TargetVocabulary;
        var sourceTokens = pipeline.SourceTokens(sentence);
        var framing = checkpoint.PairEncoding.Ids(checkpoint.TargetVocabulary) with { Eos = srcVocab.EosId };
        var shownSource = Batching.Frame(sourceIds, framing, MaxSourceSteps).Select(id => srcVocab[id]).ToList();
        // Unknown source words show as typed, not as <unk>.
        for (int i = 0; i < Math.Min(sourceTokens.Count, shownSource.Count); i++) shownSource[i] = sourceTokens[i].Value;
        // One row per decoding step: the tokens, and <eos> unless the output stopped at its limit without it (LengthLimitRule.Stop).
        var shownTarget = outputIds.Select(id => tgtVocab[id]).ToList();
        if (weights.Count > 0 && weights[0].GetLength(1) > outputIds.Length) shownTarget.Add(Text.Vocabulary.EosToken);
        return new AttentionMap(shownSource, shownTarget, weights);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (owns) checkpoint.Dispose();
    }
}
