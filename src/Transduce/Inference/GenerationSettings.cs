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

    /// <summary>Greedy-search options of these settings.</summary>
    /// <param name="crossAttention">Also return each output's cross-attention.</param>
    public SearchOptions Greedy(bool crossAttention = false) => new()
    {
        BannedTokens = BannedTokens, BannedSequences = BannedSequences, MinLength = MinLength, NoRepeatNgramSize = NoRepeatNgramSize,
        RepetitionPenalty = RepetitionPenalty, ForcedBosToken = ForcedBosTokenId, CrossAttention = crossAttention,
    };

    /// <summary>Beam-search options of these settings.</summary>
    /// <param name="beamSize">Hypotheses kept per sentence.</param>
    /// <param name="nBest">Hypotheses returned per sentence.</param>
    /// <param name="crossAttention">Also return each output's cross-attention.</param>
    public BeamSearchOptions Beam(int beamSize, int nBest = 1, bool crossAttention = false) => new()
    {
        BeamSize = beamSize, NBest = nBest, Normalization = LengthNormalization, LengthPenalty = LengthPenalty,
        BannedTokens = BannedTokens, BannedSequences = BannedSequences, MinLength = MinLength, NoRepeatNgramSize = NoRepeatNgramSize,
        RepetitionPenalty = RepetitionPenalty, ForcedBosToken = ForcedBosTokenId, EarlyStopping = EarlyStopping, CrossAttention = crossAttention,
    };
}
