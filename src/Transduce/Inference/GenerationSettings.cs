namespace Transduce.Inference;

/// <summary>
/// A checkpoint's decoding defaults (stored as <c>generation</c> in <c>config.json</c>); a converted Marian model
/// carries the settings that reproduce transformers' <c>generate</c>.
/// </summary>
public sealed record GenerationSettings
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
}
