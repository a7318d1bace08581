namespace Transduce.Inference;

/// <summary>
/// How a search ends an output that reaches its sentence's length limit <c>m</c> (the most output tokens, not counting
/// <c>&lt;eos&gt;</c>, that the search is given per sentence).
/// </summary>
internal enum LengthLimitRule
{
    /// <summary>
    /// After <c>m</c> tokens <c>&lt;eos&gt;</c> is forced (every other token gets −∞): every output ends in a scored
    /// <c>&lt;eos&gt;</c>, and a hypothesis generates at most <c>m + 1</c> tokens, <c>&lt;eos&gt;</c> included. Our own
    /// models, and Hugging Face folders with <c>forced_eos_token_id</c> (transformers' <c>ForcedEOSTokenLogitsProcessor</c>).
    /// </summary>
    ForcedEnd,

    /// <summary>
    /// Decoding stops after <c>m</c> generated tokens, whatever the last one is (transformers' <c>MaxLengthCriteria</c>
    /// without <c>forced_eos_token_id</c>: T5, Flan-T5, some NLLB / M2M100 folders): an output holds at most <c>m</c>
    /// tokens and ends without <c>&lt;eos&gt;</c> when none came. In beam search the hypotheses among the best <c>k</c>
    /// continuations of the last step all finish there, scored by their log-probability / <c>lp(m)</c>.
    /// </summary>
    Stop,
}

/// <summary>What greedy and beam search share: the logit rules (see <see cref="LogitsProcessors"/>) and what to return besides tokens.</summary>
internal record SearchOptions
{
    /// <summary>
    /// Token ids that are never generated (default none): their scores are set to −∞ — after the softmax in beam search,
    /// without renormalising the others; transformers' <c>bad_words_ids</c> for single tokens, e.g. Marian's <c>&lt;pad&gt;</c>.
    /// </summary>
    public IReadOnlyList<int> BannedTokens { get; init; } = [];

    /// <summary>
    /// Token sequences never completed (default none): transformers' multi-token <c>bad_words_ids</c> entries. The last
    /// token of a sequence gets −∞ in a row whose last input ids (the decoder start token, then the row's tokens) are the
    /// rest of it; a one-token entry is banned always, as in <see cref="BannedTokens"/>.
    /// </summary>
    public IReadOnlyList<int[]> BannedSequences { get; init; } = [];

    /// <summary>
    /// No <c>&lt;eos&gt;</c> before an output holds this many tokens (default 0); the maximum length still ends it.
    /// transformers' <c>min_new_tokens</c>, or <c>min_length</c> − 1 (its length counts the decoder start token).
    /// </summary>
    public int MinLength { get; init; }

    /// <summary>When positive, no n-gram of this many tokens occurs twice in an output, start token included (transformers' <c>no_repeat_ngram_size</c>); 0 (default) turns the rule off.</summary>
    public int NoRepeatNgramSize { get; init; }

    /// <summary>
    /// transformers' <c>repetition_penalty</c> (default 1: off): the score of every token already in the output (or the
    /// start token) is multiplied by it when negative and divided by it otherwise — on logits in greedy search, on
    /// log-probabilities in beam search.
    /// </summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>When set, every output starts with this token (transformers' <c>forced_bos_token_id</c>; NLLB's target-language token).</summary>
    public int? ForcedBosToken { get; init; }

    /// <summary>How an output that reaches its length limit ends (default <see cref="LengthLimitRule.ForcedEnd"/>).</summary>
    public LengthLimitRule LengthLimit { get; init; } = LengthLimitRule.ForcedEnd;

    /// <summary>
    /// The most tokens a hypothesis of a sentence whose limit is <paramref name="maxTokens"/> output tokens can generate,
    /// a final <c>&lt;eos&gt;</c> included: <c>m + 1</c> under <see cref="LengthLimitRule.ForcedEnd"/>, <c>m</c> under
    /// <see cref="LengthLimitRule.Stop"/> — the decoding steps it can take.
    /// </summary>
    public int GeneratedLimit(int maxTokens) => LengthLimit == LengthLimitRule.Stop ? maxTokens : maxTokens + 1;

    /// <summary>
    /// Also return, with every output, the cross-attention of the decoding steps that produced it
    /// (<see cref="Hypothesis.CrossAttention"/>; stays null for a model without attention over the source).
    /// </summary>
    public bool CrossAttention { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> when the options are out of range.</summary>
    public virtual void Validate()
    {
        if (BannedTokens is null || BannedTokens.Any(t => t < 0))
            throw new ArgumentException("banned token ids must be non-negative", nameof(BannedTokens));
        if (MinLength < 0) throw new ArgumentException("the minimum length must be non-negative", nameof(MinLength));
        if (BannedSequences is null || BannedSequences.Any(q => q is null || q.Length == 0 || q.Any(t => t < 0)))
            throw new ArgumentException("banned sequences must be non-empty lists of non-negative token ids", nameof(BannedSequences));
        if (NoRepeatNgramSize < 0) throw new ArgumentException("the no-repeat n-gram size must be non-negative", nameof(NoRepeatNgramSize));
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty))
            throw new ArgumentException("the repetition penalty must be a positive finite number", nameof(RepetitionPenalty));
        if (ForcedBosToken is < 0) throw new ArgumentException("the forced first token must be a non-negative id", nameof(ForcedBosToken));
        if (!Enum.IsDefined(LengthLimit)) throw new ArgumentException("unknown length-limit rule", nameof(LengthLimit));
    }
}


/// <summary>
/// How a hypothesis's log-probability is divided by a length penalty <c>lp(L)</c> before hypotheses
/// of different lengths are compared. <c>L</c> is the output length counting its final <c>&lt;eos&gt;</c>, if any
/// (but not <c>&lt;bos&gt;</c>), i.e. the number of log-probabilities summed; <c>α</c> is
/// <see cref="BeamSearchOptions.LengthPenalty"/>.
/// </summary>
internal enum LengthNormalization
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
internal enum EarlyStopping
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
    /// longest length they could reach (<see cref="SearchOptions.GeneratedLimit"/>), so a sentence searches on while
    /// a longer hypothesis could still win.
    /// </summary>
    Never,
}

/// <summary>Options for <see cref="BeamSearch"/>.</summary>
internal sealed record BeamSearchOptions : SearchOptions
{
    /// <summary>
    /// The largest beam (and n-best list) any caller may ask for — the command line, a request to the service, a checkpoint's
    /// or a Hugging Face folder's default — so no input can make a step score more than this many rows per sentence.
    /// </summary>
    public const int MaxBeamSize = 256;

    /// <summary>Hypotheses kept alive per sentence (<c>k</c>); must be at least 1. A beam of 1 decodes exactly as greedy search.</summary>
    public int BeamSize { get; init; } = 4;

    /// <summary>Hypotheses returned per sentence, best first; between 1 and <see cref="BeamSize"/>.</summary>
    public int NBest { get; init; } = 1;

    /// <summary>The exponent <c>α ≥ 0</c> of the length penalty; 0 turns normalisation off whatever <see cref="Normalization"/> says.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    /// <summary>The length penalty's form.</summary>
    public LengthNormalization Normalization { get; init; } = LengthNormalization.Gnmt;

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

    /// <summary>The length penalty <c>lp(L)</c> for an output of <paramref name="length"/> log-probabilities (tokens plus a final <c>&lt;eos&gt;</c>).</summary>
    public double Penalty(int length) => Normalization switch
    {
        _ when LengthPenalty == 0 => 1.0,
        LengthNormalization.None => 1.0,
        LengthNormalization.D2l or LengthNormalization.HuggingFace => Math.Pow(length, LengthPenalty),
        LengthNormalization.Gnmt => Math.Pow((5.0 + length) / 6.0, LengthPenalty),
        _ => throw new ArgumentOutOfRangeException(nameof(Normalization), Normalization, "unknown length normalisation"),
    };

    /// <summary>The normalised score <c>logProbability / lp(length)</c>.</summary>
    /// <param name="logProbability">Sum of the output's log-probabilities, a final <c>&lt;eos&gt;</c> included.</param>
    /// <param name="length">Output length counting a final <c>&lt;eos&gt;</c>.</param>
    public double Score(double logProbability, int length) => logProbability / Penalty(length);

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (BeamSize is < 1 or > MaxBeamSize) throw new ArgumentException($"beam size must be between 1 and {MaxBeamSize} (got {BeamSize})", nameof(BeamSize));
        if (NBest < 1 || NBest > BeamSize) throw new ArgumentException("n-best must be between 1 and the beam size", nameof(NBest));
        if (Normalization == LengthNormalization.HuggingFace
                ? !double.IsFinite(LengthPenalty)
                : !(LengthPenalty >= 0) || double.IsInfinity(LengthPenalty))
            throw new ArgumentException("the length penalty exponent must be finite and non-negative", nameof(LengthPenalty));
        if (!Enum.IsDefined(Normalization)) throw new ArgumentException("unknown length normalisation", nameof(Normalization));
        if (!Enum.IsDefined(EarlyStopping)) throw new ArgumentException("unknown early-stopping rule", nameof(EarlyStopping));
    }
}

/// <summary>One finished output of a search.</summary>
/// <param name="Tokens">Output ids without <c>&lt;bos&gt;</c> and <c>&lt;eos&gt;</c>.</param>
/// <param name="Score">
/// Beam search: the normalised score <c>LogProbability / lp(L)</c> (see <see cref="LengthNormalization"/>), <c>L</c> =
/// <c>Tokens.Length + 1</c> for an output that ended in <c>&lt;eos&gt;</c>, <c>Tokens.Length</c> for one stopped at its
/// limit without it (<see cref="LengthLimitRule.Stop"/>); hypotheses are ranked by it. Greedy search does not score its output: NaN.
/// </param>
/// <param name="LogProbability">Sum of the model's log-probabilities of the tokens and the final <c>&lt;eos&gt;</c>, if any (greedy search: NaN).</param>
internal sealed record Hypothesis(int[] Tokens, double Score, double LogProbability)
{
    /// <summary>
    /// When asked for (<see cref="SearchOptions.CrossAttention"/>), per decoder layer the weights [head, output step,
    /// source position] of the steps that produced this output: one row per token and one for a final <c>&lt;eos&gt;</c>, one
    /// column per source position the encoder saw (its tokens and <c>&lt;eos&gt;</c>); otherwise null.
    /// </summary>
    public IReadOnlyList<float[,,]>? CrossAttention { get; init; }
}
