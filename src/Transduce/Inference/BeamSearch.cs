using Transduce.Architecture;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Inference;

/// <summary>
/// Batched beam search (d2l §10.8) over any <see cref="EncoderDecoder"/>: every sentence keeps
/// its own <see cref="BeamSearchOptions.BeamSize"/> hypotheses, laid out as consecutive rows of one
/// (sentences × beam) decoding (<see cref="EncoderDecoder.BeginDecoding"/>); each step feeds only the last token of
/// every hypothesis, and <see cref="IncrementalDecoding.SelectRows"/> expands the encoded batch to beam rows once and
/// reorders it whenever the beams are re-ranked. Sentences that are done leave the batch.
/// </summary>
/// <remarks>
/// <para><b>Step.</b> Candidates are scored by cumulative log-probability (log-softmax of the logits); per
/// sentence the best <c>2k</c> of the <c>k × V</c> continuations are visited in order (equal scores: lower beam, then lower
/// token first), computed in managed code (<see cref="BeamScores"/>). An <c>&lt;eos&gt;</c>
/// candidate among the first <c>k</c> becomes a finished hypothesis (an <c>&lt;eos&gt;</c> ranked lower is dropped);
/// the first <c>k</c> other candidates become the next beams. At a sentence's length limit <c>m</c>
/// (<see cref="SearchOptions.LengthLimit"/>): under <see cref="LengthLimitRule.ForcedEnd"/>, when its hypotheses already
/// hold <c>m</c> tokens, <c>&lt;eos&gt;</c> is forced (every other token gets probability 0), so every finished
/// hypothesis ends in a scored <c>&lt;eos&gt;</c> and has <c>L = tokens + 1</c>; under <see cref="LengthLimitRule.Stop"/>
/// (transformers without <c>forced_eos_token_id</c>), the step that brings them to <c>m</c> generated tokens is the last:
/// every one of the first <c>k</c> candidates finishes there, ended by <c>&lt;eos&gt;</c> or not, with <c>L = m</c>. The
/// logit rules (<see cref="LogitsProcessors.Standard"/>, shared with greedy search) apply to the log-probabilities.</para>
/// <para><b>Stopping.</b> A sentence is done when it has no live beam left, or when
/// (a) it has at least <see cref="BeamSearchOptions.NBest"/> finished hypotheses and the n-th best
/// finished score is ≥ an upper bound on the score of anything a live beam can still become: the best live
/// log-probability <c>s</c> itself without length normalisation (log-probabilities only fall as a hypothesis
/// grows), and <c>s / lp(n)</c> with it, <c>n</c> the most tokens a hypothesis can generate
/// (<see cref="SearchOptions.GeneratedLimit"/>; the score cannot rise above this because
/// <c>s ≤ 0</c> and <c>lp</c> grows with length). This rule is exact: no later hypothesis could enter the n-best list;
/// or, only when lengths are normalised, (b) it has <see cref="BeamSearchOptions.BeamSize"/> finished
/// hypotheses — the heuristic of fairseq and of Hugging Face's <c>early_stopping=True</c>, which may miss
/// a longer hypothesis that normalisation would have preferred.</para>
/// <para><b>Hugging Face.</b> With <see cref="LengthNormalization.HuggingFace"/> the rule is transformers'
/// <c>early_stopping</c> (<see cref="BeamSearchOptions.EarlyStopping"/>: (b) alone for <c>True</c>, its heuristic for
/// <c>False</c> and <c>"never"</c>), for every <c>α</c>, and a forced <c>&lt;eos&gt;</c> scores log-probability 0.
/// Banned tokens (<see cref="SearchOptions.BannedTokens"/>) are removed after the log-softmax in every mode.</para>
/// </remarks>
internal static class BeamSearch
{
    /// <summary>
    /// Decodes a batch. Returns, per source row, at most <see cref="BeamSearchOptions.NBest"/> distinct
    /// hypotheses sorted by <see cref="Hypothesis.Score"/>, best first (fewer only when the search space is smaller).
    /// </summary>
    /// <param name="model">The model (put in eval mode by the caller).</param>
    /// <param name="source">(batch, steps) source ids.</param>
    /// <param name="validLengths">(batch) source lengths.</param>
    /// <param name="ids">Special token ids of the target vocabulary.</param>
    /// <param name="maxLengths">Per-row maximum number of output tokens (not counting <c>&lt;eos&gt;</c>).</param>
    /// <param name="options">Beam size, n-best, length normalisation, logit rules, attention.</param>
    /// <param name="cancellation">
    /// Checked before every step: once it fires, decoding stops within one step and throws
    /// <see cref="OperationCanceledException"/> (a caller that gave up stops consuming CPU).
    /// </param>
    public static IReadOnlyList<IReadOnlyList<Hypothesis>> Decode(
        EncoderDecoder model, Tensor source, Tensor validLengths, SpecialIds ids, int[] maxLengths, BeamSearchOptions options,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (maxLengths.Length != source.shape[0])
            throw new ArgumentException("one maximum length per source row is required", nameof(maxLengths));
        if (maxLengths.Any(m => m < 0)) throw new ArgumentException("maximum lengths must be non-negative", nameof(maxLengths));
        if (source.shape[0] == 0) return [];
        return new Search(options, ids, maxLengths, options.CrossAttention && model.HasCrossAttention).Run(model, source, validLengths, cancellation);
    }

    /// <summary>The per-sentence bookkeeping of one call.</summary>
    private sealed class Search
    {
        private readonly BeamSearchOptions options;
        private readonly SpecialIds ids;
        private readonly int[] maxLengths;
        private readonly bool wantAttention;
        private readonly IReadOnlyList<ILogitsProcessor> rules;
        private readonly int k;

        // Per sentence: the live beams' tokens, log-probabilities and attention (slot j of sentence s); empty slots score −∞.
        private int[][][] tokens = [];
        private double[][] scores = [];
        private AttentionTrail?[][] trails = [];
        private List<(Hypothesis Hypothesis, AttentionTrail? Trail)>[] finished = [];
        private StepAttention? shape;

        public Search(BeamSearchOptions options, SpecialIds ids, int[] maxLengths, bool wantAttention)
        {
            this.options = options;
            this.ids = ids;
            this.maxLengths = maxLengths;
            this.wantAttention = wantAttention;
            k = options.BeamSize;
            rules = LogitsProcessors.Standard(options, ids, maxLengths, forcedEndScoresZero: options.Normalization == LengthNormalization.HuggingFace);
        }

        public IReadOnlyList<IReadOnlyList<Hypothesis>> Run(EncoderDecoder model, Tensor source, Tensor validLengths, CancellationToken cancellation)
        {
            int batch = (int)source.shape[0];
            var device = source.device;
            tokens = new int[batch][][];
            scores = new double[batch][];
            trails = new AttentionTrail?[batch][];
            finished = new List<(Hypothesis, AttentionTrail?)>[batch];
            for (int s = 0; s < batch; s++)
            {
                tokens[s] = Enumerable.Repeat(Array.Empty<int>(), k).ToArray();
                scores[s] = Enumerable.Repeat(double.NegativeInfinity, k).ToArray();
                scores[s][0] = 0; // the k copies of <bos> are one hypothesis: only slot 0 is expanded at first
                trails[s] = new AttentionTrail?[k];
                finished[s] = [];
            }
            // Sentences still in the decoder batch, in row-block order: rows p·k … p·k+k−1 belong to active[p]. A sentence
            // with no step to take (a limit of 0 under LengthLimitRule.Stop) has the empty output and is never decoded.
            var active = Enumerable.Range(0, batch).Where(s => options.GeneratedLimit(maxLengths[s]) > 0).ToList();
            for (int s = 0; s < batch; s++)
                if (options.GeneratedLimit(maxLengths[s]) == 0) finished[s].Add((new Hypothesis([], 0, 0), null));
            if (active.Count == 0) return finished.Select(f => (IReadOnlyList<Hypothesis>)[f[0].Hypothesis]).ToArray();

            using var grad = inference_mode(); // no autograd bookkeeping at all (no version counters, no views tracked)
            using var scope = NewDisposeScope();
            using var decoding = model.BeginDecoding(source, validLengths);
            var rows = new long[active.Count * k];
            for (int r = 0; r < rows.Length; r++) rows[r] = active[r / k];
            decoding.SelectRows(tensor(rows, device: device));

            for (int step = 0; active.Count > 0; step++)
            {
                cancellation.ThrowIfCancellationRequested();
                using var stepScope = NewDisposeScope();
                var (nextActive, parents) = Step(decoding, active, step, device);
                if (nextActive.Count > 0) decoding.SelectRows(tensor(parents.ToArray(), device: device));
                active = nextActive;
            }

            var sourceLengths = wantAttention ? validLengths.to(ScalarType.Int64).cpu().data<long>().ToArray() : [];
            var results = new IReadOnlyList<Hypothesis>[batch];
            for (int s = 0; s < batch; s++)
            {
                var seen = new HashSet<string>(StringComparer.Ordinal);
                results[s] = finished[s]
                    .OrderByDescending(h => h.Hypothesis.Score)
                    .ThenByDescending(h => h.Hypothesis.LogProbability)
                    .Where(h => seen.Add(string.Join(' ', h.Hypothesis.Tokens)))
                    .Take(options.NBest)
                    .Select(h => h.Trail is null ? h.Hypothesis : h.Hypothesis with { CrossAttention = h.Trail.ToWeights(shape!, (int)sourceLengths[s]) })
                    .ToArray();
            }
            return results;
        }

        /// <summary>
        /// One step for every active sentence: score the continuations of its beams, keep the best, finish those that end.
        /// Returns the sentences still active and, for each of their next beam rows, the row it continues.
        /// </summary>
        private (List<int> NextActive, List<long> Parents) Step(IncrementalDecoding decoding, List<int> active, int step, Device device)
        {
            int n = active.Count;
            var nextActive = new List<int>(n);
            var parents = new List<long>(n * k);
            var lastTokens = new long[n * k];
            var flatScores = new double[n * k];
            var rowSentences = new int[n * k];
            var rowTokens = new IReadOnlyList<int>[n * k];
            for (int p = 0; p < n; p++)
            {
                int s = active[p];
                for (int j = 0; j < k; j++)
                {
                    var t = tokens[s][j];
                    lastTokens[p * k + j] = step == 0 ? ids.Bos : t.Length > 0 ? t[^1] : ids.Pad;
                    flatScores[p * k + j] = scores[s][j];
                    rowSentences[p * k + j] = s;
                    rowTokens[p * k + j] = t;
                }
            }

            var (logits, attention) = decoding.Step(tensor(lastTokens, device: device), wantAttention);
            var logProbs = rules.Apply(BeamScores.LogSoftmax(logits), new SearchPosition(step, rowSentences, rowTokens));
            shape = StepAttention.From(attention) ?? shape;
            long vocab = logProbs.shape[1];
            int width = (int)Math.Min(2L * k, k * vocab);
            var (values, indices) = BeamScores.Best(logProbs, flatScores, n, k, width);

            for (int p = 0; p < n; p++)
            {
                int s = active[p];
                var newTokens = Enumerable.Repeat(Array.Empty<int>(), k).ToArray();
                var newScores = Enumerable.Repeat(double.NegativeInfinity, k).ToArray();
                var newTrails = new AttentionTrail?[k];
                var newParents = Enumerable.Repeat((long)p * k, k).ToArray();
                int alive = 0;
                // Under LengthLimitRule.Stop this step brings the hypotheses to their limit: the best k candidates all finish.
                bool last = options.LengthLimit == LengthLimitRule.Stop && step + 1 >= maxLengths[s];
                for (int c = 0; c < width && alive < k; c++)
                {
                    double value = values[p * width + c];
                    if (double.IsNegativeInfinity(value)) break; // sorted: the rest are empty slots or forbidden tokens
                    long flat = indices[p * width + c];
                    int beam = (int)(flat / vocab);
                    int token = (int)(flat % vocab);
                    var prefix = tokens[s][beam];
                    var trail = attention is null ? null : new AttentionTrail(shape!.Row(p * k + beam), trails[s][beam]);
                    if (token == ids.Eos || last)
                    {
                        int[] output = token == ids.Eos ? prefix : [.. prefix, token];
                        if (c < k) finished[s].Add((new Hypothesis(output, options.Score(value, prefix.Length + 1), value), trail));
                        continue;
                    }
                    newTokens[alive] = [.. prefix, token];
                    newScores[alive] = value;
                    newTrails[alive] = trail;
                    newParents[alive] = (long)p * k + beam;
                    alive++;
                }
                tokens[s] = newTokens;
                scores[s] = newScores;
                trails[s] = newTrails;
                if (alive > 0 && !IsDone(finished[s], newScores[0], maxLengths[s], step + 1))
                {
                    nextActive.Add(s);
                    parents.AddRange(newParents);
                }
            }
            return (nextActive, parents);
        }

        /// <summary>
        /// The stopping rule described on the class: exact bound, or (normalised scores only) k finished;
        /// <see cref="LengthNormalization.HuggingFace"/>: transformers' <c>early_stopping</c> rule.
        /// </summary>
        /// <param name="done">The sentence's finished hypotheses.</param>
        /// <param name="bestAlive">The best running beam's log-probability after this step.</param>
        /// <param name="maxLength">The sentence's output limit before <c>&lt;eos&gt;</c>.</param>
        /// <param name="runningLength">Tokens the running beams hold after this step.</param>
        private bool IsDone(List<(Hypothesis Hypothesis, AttentionTrail? Trail)> done, double bestAlive, int maxLength, int runningLength)
        {
            if (options.Normalization == LengthNormalization.HuggingFace)
            {
                if (done.Count < options.BeamSize) return false;
                if (options.EarlyStopping == EarlyStopping.WhenFull) return true;
                // transformers divides the best running log-probability by the penalty at the current length (or, for
                // "never" with α > 0, at the longest length) and compares it with the worst of the k best finished scores.
                int length = options.EarlyStopping == EarlyStopping.Never && options.LengthPenalty > 0 ? options.GeneratedLimit(maxLength) : runningLength;
                double worst = done.Select(h => h.Hypothesis.Score).OrderByDescending(x => x).ElementAt(options.BeamSize - 1);
                return bestAlive / options.Penalty(length) <= worst;
            }
            if (options.NormalizesLength && done.Count >= options.BeamSize) return true;
            if (done.Count < options.NBest) return false;
            double nth = done.Select(h => h.Hypothesis.Score).OrderByDescending(x => x).ElementAt(options.NBest - 1);
            double bound = options.NormalizesLength ? bestAlive / options.Penalty(options.GeneratedLimit(maxLength)) : bestAlive;
            return nth >= bound;
        }
    }
}
