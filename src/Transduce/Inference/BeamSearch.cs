using Transduce.Architecture;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>
/// How a hypothesis's log-probability is divided by a length penalty <c>lp(L)</c> before hypotheses
/// of different lengths are compared. <c>L</c> is the output length counting <c>&lt;eos&gt;</c>
/// (but not <c>&lt;bos&gt;</c>), i.e. the number of log-probabilities summed; <c>α</c> is
/// <see cref="BeamSearchOptions.LengthPenalty"/>.
/// </summary>
public enum LengthNormalization
{
    /// <summary><c>lp(L) = 1</c>: the score is the plain sum of log-probabilities.</summary>
    None,

    /// <summary><c>lp(L) = L^α</c>: d2l §10.8's <c>(1 / L^α) · log P(y₁…y_L | c)</c>.</summary>
    D2l,

    /// <summary><c>lp(L) = ((5 + L) / 6)^α</c>: the GNMT length penalty (Wu et al., 2016).</summary>
    Gnmt,

    /// <summary>
    /// Hugging Face <c>generate</c> with <c>num_beams &gt; 1</c> and <c>early_stopping=True</c>: <c>lp(L) = L^α</c> with
    /// transformers' length (generated tokens including <c>&lt;eos&gt;</c>, excluding the decoder start token —
    /// the same <c>L</c> as <see cref="D2l"/>), any finite <c>α</c> (negative favours short outputs); a sentence stops
    /// as soon as <see cref="BeamSearchOptions.BeamSize"/> hypotheses have finished, whatever <c>α</c> is; and an
    /// <c>&lt;eos&gt;</c> forced at the maximum length gets log-probability 0, as transformers'
    /// <c>ForcedEOSTokenLogitsProcessor</c> gives it (the other modes keep the model's own log-probability).
    /// </summary>
    HuggingFace,
}

/// <summary>
/// When beam search stops working on a sentence under <see cref="LengthNormalization.HuggingFace"/> — transformers'
/// <c>early_stopping</c>. Let <c>k</c> be the beam size, <c>s</c> the best running beam's log-probability after a step,
/// <c>L</c> the number of tokens the running beams then hold, and <c>w</c> the worst score among the <c>k</c> best
/// finished hypotheses.
/// </summary>
public enum EarlyStopping
{
    /// <summary><c>early_stopping=True</c>: a sentence stops as soon as <c>k</c> hypotheses have finished.</summary>
    WhenFull,

    /// <summary>
    /// <c>early_stopping=False</c>, transformers' default (OPUS-MT folders do not set it): with <c>k</c> finished, a
    /// sentence stops once <c>s / L^α ≤ w</c> — no running beam could win if it ended now — and searches on otherwise.
    /// </summary>
    Heuristic,

    /// <summary>
    /// <c>early_stopping="never"</c>: as <see cref="Heuristic"/>, but for <c>α &gt; 0</c> the running beams are judged at the
    /// longest length they could reach (the length limit, <c>&lt;eos&gt;</c> included), so a sentence searches on while
    /// a longer hypothesis could still win.
    /// </summary>
    Never,
}

/// <summary>Options for <see cref="BeamSearch"/>.</summary>
public sealed record BeamSearchOptions
{
    /// <summary>Hypotheses kept alive per sentence (<c>k</c>); must be at least 1. A beam of 1 decodes exactly as greedy search.</summary>
    public int BeamSize { get; init; } = 4;

    /// <summary>Hypotheses returned per sentence, best first; between 1 and <see cref="BeamSize"/>.</summary>
    public int NBest { get; init; } = 1;

    /// <summary>The exponent <c>α ≥ 0</c> of the length penalty; 0 turns normalisation off whatever <see cref="Normalization"/> says.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    /// <summary>The length penalty's form.</summary>
    public LengthNormalization Normalization { get; init; } = LengthNormalization.Gnmt;

    /// <summary>
    /// Token ids that are never generated (default none): their log-probabilities are set to −∞ after the softmax,
    /// without renormalising the others — transformers' <c>bad_words_ids</c> for single tokens, e.g. Marian's <c>&lt;pad&gt;</c>.
    /// </summary>
    public IReadOnlyList<int> BannedTokens { get; init; } = [];

    /// <summary>
    /// The stopping rule under <see cref="LengthNormalization.HuggingFace"/> (transformers' <c>early_stopping</c>); the other
    /// normalisations have their own rule (see <see cref="BeamSearch"/>). Default <see cref="EarlyStopping.WhenFull"/>.
    /// </summary>
    public EarlyStopping EarlyStopping { get; init; } = EarlyStopping.WhenFull;

    /// <summary>
    /// True when scores depend on length, i.e. <see cref="Normalization"/> is not <see cref="LengthNormalization.None"/>
    /// and <see cref="LengthPenalty"/> is not 0.
    /// </summary>
    public bool NormalizesLength => Normalization != LengthNormalization.None && LengthPenalty != 0;

    /// <summary>The length penalty <c>lp(L)</c> for an output of <paramref name="length"/> log-probabilities (tokens plus <c>&lt;eos&gt;</c>).</summary>
    public double Penalty(int length) => Normalization switch
    {
        _ when LengthPenalty == 0 => 1.0,
        LengthNormalization.None => 1.0,
        LengthNormalization.D2l or LengthNormalization.HuggingFace => Math.Pow(length, LengthPenalty),
        LengthNormalization.Gnmt => Math.Pow((5.0 + length) / 6.0, LengthPenalty),
        _ => throw new ArgumentOutOfRangeException(nameof(Normalization), Normalization, "unknown length normalisation"),
    };

    /// <summary>The normalised score <c>logProbability / lp(length)</c>.</summary>
    /// <param name="logProbability">Sum of the output's log-probabilities, <c>&lt;eos&gt;</c> included.</param>
    /// <param name="length">Output length counting <c>&lt;eos&gt;</c>.</param>
    public double Score(double logProbability, int length) => logProbability / Penalty(length);

    /// <summary>Throws <see cref="ArgumentException"/> when the options are out of range.</summary>
    public void Validate()
    {
        if (BeamSize < 1) throw new ArgumentException("beam size must be at least 1", nameof(BeamSize));
        if (NBest < 1 || NBest > BeamSize) throw new ArgumentException("n-best must be between 1 and the beam size", nameof(NBest));
        if (Normalization == LengthNormalization.HuggingFace
                ? !double.IsFinite(LengthPenalty)
                : !(LengthPenalty >= 0) || double.IsInfinity(LengthPenalty))
            throw new ArgumentException("the length penalty exponent must be finite and non-negative", nameof(LengthPenalty));
        if (!Enum.IsDefined(Normalization)) throw new ArgumentException("unknown length normalisation", nameof(Normalization));
        if (!Enum.IsDefined(EarlyStopping)) throw new ArgumentException("unknown early-stopping rule", nameof(EarlyStopping));
        if (BannedTokens is null || BannedTokens.Any(t => t < 0))
            throw new ArgumentException("banned token ids must be non-negative", nameof(BannedTokens));
    }
}

/// <summary>One finished output of <see cref="BeamSearch"/>.</summary>
/// <param name="Tokens">Output ids without <c>&lt;bos&gt;</c> and <c>&lt;eos&gt;</c>.</param>
/// <param name="Score">The normalised score <c>LogProbability / lp(Tokens.Length + 1)</c> (see <see cref="LengthNormalization"/>); hypotheses are ranked by it.</param>
/// <param name="LogProbability">Sum of the model's log-probabilities of the tokens and the final <c>&lt;eos&gt;</c>.</param>
public sealed record Hypothesis(int[] Tokens, double Score, double LogProbability);

/// <summary>
/// Batched beam search (d2l §10.8) over any <see cref="EncoderDecoder{TState}"/>: every sentence keeps
/// its own <see cref="BeamSearchOptions.BeamSize"/> hypotheses, laid out as consecutive rows of one
/// (sentences × beam) decoder batch; each step feeds only the last token of every hypothesis with the
/// carried state, and <see cref="Decoder{TState}.SelectRows"/> expands the encoder-initialised state to
/// beam rows once and reorders it whenever the beams are re-ranked. Sentences that are done leave the batch.
/// </summary>
/// <remarks>
/// <para><b>Step.</b> Candidates are scored by cumulative log-probability (log-softmax of the logits); per
/// sentence the best <c>2k</c> of the <c>k × V</c> continuations are visited in order. An <c>&lt;eos&gt;</c>
/// candidate among the first <c>k</c> becomes a finished hypothesis (an <c>&lt;eos&gt;</c> ranked lower is dropped);
/// the first <c>k</c> other candidates become the next beams. When a sentence's hypotheses already hold its
/// maximum number of tokens, <c>&lt;eos&gt;</c> is forced (every other token gets probability 0), so every
/// finished hypothesis ends in a scored <c>&lt;eos&gt;</c> and has <c>L = tokens + 1</c>.</para>
/// <para><b>Stopping.</b> A sentence is done when it has no live beam left, or when
/// (a) it has at least <see cref="BeamSearchOptions.NBest"/> finished hypotheses and the n-th best
/// finished score is ≥ an upper bound on the score of anything a live beam can still become: the best live
/// log-probability <c>s</c> itself without length normalisation (log-probabilities only fall as a hypothesis
/// grows), and <c>s / lp(maxLength + 1)</c> with it (the score cannot rise above this because
/// <c>s ≤ 0</c> and <c>lp</c> grows with length). This rule is exact: no later hypothesis could enter the n-best list;
/// or, only when lengths are normalised, (b) it has <see cref="BeamSearchOptions.BeamSize"/> finished
/// hypotheses — the heuristic of fairseq and of Hugging Face's <c>early_stopping=True</c>, which may miss
/// a longer hypothesis that normalisation would have preferred.</para>
/// <para><b>Hugging Face.</b> With <see cref="LengthNormalization.HuggingFace"/> the rule is transformers'
/// <c>early_stopping</c> (<see cref="BeamSearchOptions.EarlyStopping"/>: (b) alone for <c>True</c>, its heuristic for
/// <c>False</c> and <c>"never"</c>), for every <c>α</c>, and a forced <c>&lt;eos&gt;</c> scores log-probability 0.
/// Banned tokens (<see cref="BeamSearchOptions.BannedTokens"/>) are removed after the log-softmax in every mode.</para>
/// </remarks>
public sealed class BeamSearch : IEncoderDecoderFunc<IReadOnlyList<IReadOnlyList<Hypothesis>>>
{
    private readonly Tensor source;
    private readonly Tensor validLengths;
    private readonly SpecialIds ids;
    private readonly int[] maxLengths;
    private readonly BeamSearchOptions options;

    private BeamSearch(Tensor source, Tensor validLengths, SpecialIds ids, int[] maxLengths, BeamSearchOptions options)
    {
        this.source = source;
        this.validLengths = validLengths;
        this.ids = ids;
        this.maxLengths = maxLengths;
        this.options = options;
    }

    /// <summary>
    /// Decodes a batch. Returns, per source row, at most <see cref="BeamSearchOptions.NBest"/> distinct
    /// hypotheses sorted by <see cref="Hypothesis.Score"/>, best first (fewer only when the search space is smaller).
    /// </summary>
    /// <param name="model">The model (put in eval mode by the caller).</param>
    /// <param name="source">(batch, steps) source ids.</param>
    /// <param name="validLengths">(batch) source lengths.</param>
    /// <param name="ids">Special token ids of the target vocabulary.</param>
    /// <param name="maxLengths">Per-row maximum number of output tokens (not counting <c>&lt;eos&gt;</c>).</param>
    /// <param name="options">Beam size, n-best and length normalisation.</param>
    public static IReadOnlyList<IReadOnlyList<Hypothesis>> Decode(
        EncoderDecoder model, Tensor source, Tensor validLengths, SpecialIds ids, int[] maxLengths, BeamSearchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (maxLengths.Length != source.shape[0])
            throw new ArgumentException("one maximum length per source row is required", nameof(maxLengths));
        if (maxLengths.Any(m => m < 0)) throw new ArgumentException("maximum lengths must be non-negative", nameof(maxLengths));
        return model.Apply(new BeamSearch(source, validLengths, ids, maxLengths, options));
    }

    /// <inheritdoc />
    public IReadOnlyList<IReadOnlyList<Hypothesis>> Invoke<TState>(EncoderDecoder<TState> model) where TState : IDecoderState
    {
        int batch = (int)source.shape[0];
        int k = options.BeamSize;
        if (batch == 0) return [];
        var device = source.device;

        // Per sentence: the live beams' tokens and log-probabilities (slot j of sentence s); empty slots score -∞.
        var tokens = new int[batch][][];
        var scores = new double[batch][];
        var finished = new List<Hypothesis>[batch];
        for (int s = 0; s < batch; s++)
        {
            tokens[s] = Enumerable.Repeat(Array.Empty<int>(), k).ToArray();
            scores[s] = Enumerable.Repeat(double.NegativeInfinity, k).ToArray();
            scores[s][0] = 0; // the k copies of <bos> are one hypothesis: only slot 0 is expanded at first
            finished[s] = [];
        }
        // Sentences still in the decoder batch, in row-block order: rows p·k … p·k+k−1 belong to active[p].
        var active = Enumerable.Range(0, batch).ToList();

        using var grad = inference_mode(); // no autograd bookkeeping at all (no version counters, no views tracked)
        using var scope = NewDisposeScope();
        TState state;
        using (var initScope = NewDisposeScope())
        {
            var encoded = model.Encoder.call(source, validLengths);
            var initial = model.Decoder.InitState(encoded, validLengths);
            var rows = new long[batch * k];
            for (int r = 0; r < rows.Length; r++) rows[r] = r / k;
            state = model.Decoder.SelectRows(initial, tensor(rows, device: device));
            StepMemory.Keep(initScope, state.Tensors);
        }

        for (int step = 0; active.Count > 0; step++)
        {
            int n = active.Count;
            var nextActive = new List<int>(n);
            var parents = new List<long>(n * k);
            TState next = state;
            bool advanced = false;
            using (var stepScope = NewDisposeScope())
            {
                var lastTokens = new long[n * k];
                var flatScores = new double[n * k];
                var forced = new bool[n * k];
                bool anyForced = false;
                for (int p = 0; p < n; p++)
                {
                    int s = active[p];
                    bool atMax = step >= maxLengths[s];
                    anyForced |= atMax;
                    for (int j = 0; j < k; j++)
                    {
                        var t = tokens[s][j];
                        lastTokens[p * k + j] = step == 0 ? ids.Bos : t.Length > 0 ? t[^1] : ids.Pad;
                        flatScores[p * k + j] = scores[s][j];
                        forced[p * k + j] = atMax;
                    }
                }

                var input = tensor(lastTokens, [n * k, 1], device: device);
                var (logits, decoded) = model.Decoder.call(input, state);
                var logProbs = logits[.., -1].to_type(ScalarType.Float64).log_softmax(-1);
                long vocab = logProbs.shape[1];
                if (options.BannedTokens.Count > 0)
                    logProbs = logProbs.index_fill(1, BannedIndex(options.BannedTokens, vocab, device), double.NegativeInfinity);
                if (anyForced)
                {
                    var rowMask = tensor(forced, device: device).unsqueeze(1);
                    var notEos = arange(vocab, ScalarType.Int64, device: device).ne(ids.Eos).unsqueeze(0);
                    logProbs = logProbs.masked_fill(rowMask.logical_and(notEos), double.NegativeInfinity);
                    if (options.Normalization == LengthNormalization.HuggingFace)
                        logProbs = logProbs.masked_fill(rowMask.logical_and(notEos.logical_not()), 0.0);
                }
                var candidates = (tensor(flatScores, device: device).unsqueeze(1) + logProbs).reshape(n, k * vocab);
                int width = (int)Math.Min(2L * k, k * vocab);
                var (topValues, topIndices) = candidates.topk(width, dim: 1, largest: true, sorted: true);
                var values = topValues.cpu().data<double>().ToArray();
                var indices = topIndices.cpu().data<long>().ToArray();

                for (int p = 0; p < n; p++)
                {
                    int s = active[p];
                    var newTokens = Enumerable.Repeat(Array.Empty<int>(), k).ToArray();
                    var newScores = Enumerable.Repeat(double.NegativeInfinity, k).ToArray();
                    var newParents = Enumerable.Repeat((long)p * k, k).ToArray();
                    int alive = 0;
                    for (int c = 0; c < width && alive < k; c++)
                    {
                        double value = values[p * width + c];
                        if (double.IsNegativeInfinity(value)) break; // sorted: the rest are empty slots or forbidden tokens
                        long flat = indices[p * width + c];
                        int beam = (int)(flat / vocab);
                        int token = (int)(flat % vocab);
                        var prefix = tokens[s][beam];
                        if (token == ids.Eos)
                        {
                            if (c < k) finished[s].Add(new Hypothesis(prefix, options.Score(value, prefix.Length + 1), value));
                            continue;
                        }
                        newTokens[alive] = [.. prefix, token];
                        newScores[alive] = value;
                        newParents[alive] = (long)p * k + beam;
                        alive++;
                    }
                    tokens[s] = newTokens;
                    scores[s] = newScores;
                    if (alive > 0 && !IsDone(finished[s], newScores[0], maxLengths[s], step + 1))
                    {
                        nextActive.Add(s);
                        parents.AddRange(newParents);
                    }
                }

                if (nextActive.Count > 0)
                {
                    next = model.Decoder.SelectRows(decoded, tensor(parents.ToArray(), device: device));
                    StepMemory.Keep(stepScope, next.Tensors);
                    advanced = true;
                }
            }
            StepMemory.Release(state.Tensors, advanced ? next.Tensors : []);
            state = next;
            active = nextActive;
        }

        var results = new IReadOnlyList<Hypothesis>[batch];
        for (int s = 0; s < batch; s++)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            results[s] = finished[s]
                .OrderByDescending(h => h.Score)
                .ThenByDescending(h => h.LogProbability)
                .Where(h => seen.Add(string.Join(' ', h.Tokens)))
                .Take(options.NBest)
                .ToArray();
        }
        return results;
    }

    /// <summary>The ids of <paramref name="banned"/> that lie inside a vocabulary of <paramref name="vocab"/> tokens, as an index tensor.</summary>
    internal static Tensor BannedIndex(IReadOnlyCollection<int> banned, long vocab, Device device) =>
        tensor(banned.Where(t => t < vocab).Select(t => (long)t).Distinct().ToArray(), device: device);

    /// <summary>
    /// The stopping rule described on the class: exact bound, or (normalised scores only) k finished;
    /// <see cref="LengthNormalization.HuggingFace"/>: transformers' <c>early_stopping</c> rule.
    /// </summary>
    /// <param name="finished">The sentence's finished hypotheses.</param>
    /// <param name="bestAlive">The best running beam's log-probability after this step.</param>
    /// <param name="maxLength">The sentence's output limit before <c>&lt;eos&gt;</c>.</param>
    /// <param name="runningLength">Tokens the running beams hold after this step.</param>
    private bool IsDone(List<Hypothesis> finished, double bestAlive, int maxLength, int runningLength)
    {
        if (options.Normalization == LengthNormalization.HuggingFace)
        {
            if (finished.Count < options.BeamSize) return false;
            if (options.EarlyStopping == EarlyStopping.WhenFull) return true;
            // transformers divides the best running log-probability by the penalty at the current length (or, for
            // "never" with α > 0, at the longest length) and compares it with the worst of the k best finished scores.
            int length = options.EarlyStopping == EarlyStopping.Never && options.LengthPenalty > 0 ? maxLength + 1 : runningLength;
            double worst = finished.Select(h => h.Score).OrderByDescending(x => x).ElementAt(options.BeamSize - 1);
            return bestAlive / options.Penalty(length) <= worst;
        }
        if (options.NormalizesLength && finished.Count >= options.BeamSize) return true;
        if (finished.Count < options.NBest) return false;
        double nth = finished.Select(h => h.Score).OrderByDescending(x => x).ElementAt(options.NBest - 1);
        double bound = options.NormalizesLength ? bestAlive / options.Penalty(maxLength + 1) : bestAlive;
        return nth >= bound;
    }
}
