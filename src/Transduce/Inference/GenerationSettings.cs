namespace Transduce.Inference;

/// <summary>
/// A checkpoint's decoding defaults (stored as <c>generation</c> in <c>config.json</c>); a converted Marian model
/// carries the settings that reproduce transformers' <c>generate</c>.
/// </summary>
internal sealed record GenerationSettings
{
    /// <summary>Beam-search length normalisation.</summary>
    public LengthNormalization LengthNormalization { get; init; } = LengthNormalization.Gnmt;

    /// <summary>Length penalty α.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    /// <summary>Target ids never generated.</summary>
    public IReadOnlyList<int> BannedTokens { get; init; } = [];

    /// <summary>The number type decoding uses unless told otherwise (null: float32); <c>convert --compute-type</c> sets it.</summary>
    public Models.ComputeType? ComputeType { get; init; }

    /// <summary>When set, the output limit is this many tokens (including <c>&lt;eos&gt;</c>) instead of a function of the source length.</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary>
    /// How an output that reaches its limit ends (<c>length_limit</c>; see <see cref="LengthLimitRule"/>): a forced
    /// <c>&lt;eos&gt;</c> (the default, and a Hugging Face folder with <c>forced_eos_token_id</c>), or stopped without one
    /// (a folder without it, as transformers' <c>generate</c> does; <see cref="MaxNewTokens"/> tokens may then all be output).
    /// </summary>
    public LengthLimitRule LengthLimit { get; init; } = LengthLimitRule.ForcedEnd;

    /// <summary>Beam search's stopping rule under <see cref="LengthNormalization.HuggingFace"/> (transformers' <c>early_stopping</c>).</summary>
    public EarlyStopping EarlyStopping { get; init; } = EarlyStopping.WhenFull;

    /// <summary>The beam size used when the caller does not choose one (a MarianMT folder's <c>num_beams</c>); null means greedy.</summary>
    public int? NumBeams { get; init; }

    /// <summary>Target token sequences never completed (multi-token <c>bad_words_ids</c>); see <see cref="SearchOptions.BannedSequences"/>.</summary>
    public IReadOnlyList<int[]> BannedSequences { get; init; } = [];

    /// <summary>Tokens an output holds at least before <c>&lt;eos&gt;</c>; see <see cref="SearchOptions.MinLength"/>.</summary>
    public int MinLength { get; init; }

    /// <summary>transformers' <c>no_repeat_ngram_size</c> (0: off); see <see cref="SearchOptions.NoRepeatNgramSize"/>.</summary>
    public int NoRepeatNgramSize { get; init; }

    /// <summary>transformers' <c>repetition_penalty</c> (1: off); see <see cref="SearchOptions.RepetitionPenalty"/>.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>
    /// The token every output starts with (transformers' <c>forced_bos_token_id</c>), or null; a caller may choose
    /// another per call (NLLB's target language).
    /// </summary>
    public int? ForcedBosTokenId { get; init; }

    /// <summary>The most banned tokens or banned sequences a checkpoint may list (a bound on the work of each decoding step).</summary>
    public const int MaxBannedEntries = 65536;

    /// <summary>
    /// Checks every setting read from an untrusted <c>config.json</c> before it is used: ids inside the target vocabulary of
    /// <paramref name="targetVocabulary"/>, the beam within <see cref="BeamSearchOptions.MaxBeamSize"/>, counts and lengths
    /// within the longest supported sequence, known names. Throws <see cref="ArgumentException"/> naming the field as
    /// <c>config.json</c> spells it (<c>'generation.num_beams'</c>).
    /// </summary>
    /// <param name="targetVocabulary">The target vocabulary's size.</param>
    /// <param name="section">Where the settings sit in <c>config.json</c>, for the errors.</param>
    public void Validate(int targetVocabulary, string section = "generation")
    {
        const int longest = Models.ModelConfig.MaxPositionCount;
        ArgumentException Bad(string field, string problem) => new($"'{section}.{field}' {problem}");
        void Id(string field, int id)
        {
            if (id < 0 || id >= targetVocabulary) throw Bad(field, $"has id {id}, outside the target vocabulary of {targetVocabulary}");
        }
        void Range(string field, int value, int min, int max)
        {
            if (value < min || value > max) throw Bad(field, $"must be between {min} and {max} (got {value})");
        }

        if (!Enum.IsDefined(LengthNormalization)) throw Bad("length_normalization", $"is not a known length normalisation ({(int)LengthNormalization})");
        if (!Enum.IsDefined(EarlyStopping)) throw Bad("early_stopping", $"is not a known stopping rule ({(int)EarlyStopping})");
        if (!Enum.IsDefined(LengthLimit)) throw Bad("length_limit", $"is not a known length-limit rule ({(int)LengthLimit})");
        if (ComputeType is { } type && !Enum.IsDefined(type)) throw Bad("compute_type", $"is not a known number type ({(int)type})");
        if (!double.IsFinite(LengthPenalty)) throw Bad("length_penalty", $"must be a finite number (got {LengthPenalty})");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty)) throw Bad("repetition_penalty", $"must be a positive finite number (got {RepetitionPenalty})");
        if (NumBeams is int beams) Range("num_beams", beams, 1, BeamSearchOptions.MaxBeamSize);
        if (MaxNewTokens is int maxNew) Range("max_new_tokens", maxNew, 1, longest);
        Range("min_length", MinLength, 0, longest);
        Range("no_repeat_ngram_size", NoRepeatNgramSize, 0, longest);
        if (ForcedBosTokenId is int forced) Id("forced_bos_token_id", forced);
        if (BannedTokens is null) throw Bad("banned_tokens", "must be a list of token ids (got null)");
        if (BannedTokens.Count > MaxBannedEntries) throw Bad("banned_tokens", $"has {BannedTokens.Count} entries, more than the {MaxBannedEntries} supported");
        foreach (int id in BannedTokens) Id("banned_tokens", id);
        if (BannedSequences is null) throw Bad("banned_sequences", "must be a list of lists of token ids (got null)");
        if (BannedSequences.Count > MaxBannedEntries) throw Bad("banned_sequences", $"has {BannedSequences.Count} entries, more than the {MaxBannedEntries} supported");
        foreach (var sequence in BannedSequences)
        {
            if (sequence is null || sequence.Length == 0 || sequence.Length > longest)
                throw Bad("banned_sequences", $"must hold non-empty lists of at most {longest} token ids");
            foreach (int id in sequence) Id("banned_sequences", id);
        }
    }

    /// <summary>Greedy-search options of these settings.</summary>
    /// <param name="crossAttention">Also return each output's cross-attention.</param>
    public SearchOptions Greedy(bool crossAttention = false) => new()
    {
        BannedTokens = BannedTokens, BannedSequences = BannedSequences, MinLength = MinLength, NoRepeatNgramSize = NoRepeatNgramSize,
        RepetitionPenalty = RepetitionPenalty, ForcedBosToken = ForcedBosTokenId, LengthLimit = LengthLimit, CrossAttention = crossAttention,
    };

    /// <summary>Beam-search options of these settings.</summary>
    /// <param name="beamSize">Hypotheses kept per sentence.</param>
    /// <param name="nBest">Hypotheses returned per sentence.</param>
    /// <param name="crossAttention">Also return each output's cross-attention.</param>
    public BeamSearchOptions Beam(int beamSize, int nBest = 1, bool crossAttention = false) => new()
    {
        BeamSize = beamSize, NBest = nBest, Normalization = LengthNormalization, LengthPenalty = LengthPenalty,
        BannedTokens = BannedTokens, BannedSequences = BannedSequences, MinLength = MinLength, NoRepeatNgramSize = NoRepeatNgramSize,
        RepetitionPenalty = RepetitionPenalty, ForcedBosToken = ForcedBosTokenId, EarlyStopping = EarlyStopping, LengthLimit = LengthLimit,
        CrossAttention = crossAttention,
    };
}
