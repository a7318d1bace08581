using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>
/// The decoding settings of a Hugging Face MarianMT folder, read from <c>generation_config.json</c> (falling back to
/// <c>config.json</c>, then to transformers' defaults), with transformers' meaning.
/// </summary>
internal sealed record MarianGenerationConfig
{
    /// <summary><c>decoder_start_token_id</c>: the first decoder input (Marian: <c>&lt;pad&gt;</c>).</summary>
    public required int DecoderStartTokenId { get; init; }

    /// <summary><c>eos_token_id</c>.</summary>
    public required int EosTokenId { get; init; }

    /// <summary><c>pad_token_id</c>.</summary>
    public required int PadTokenId { get; init; }

    /// <summary><c>forced_eos_token_id</c>: when set (it must equal <see cref="EosTokenId"/>), the last token allowed by the length limit is forced to be <c>&lt;eos&gt;</c>.</summary>
    public int? ForcedEosTokenId { get; init; }

    /// <summary><c>num_beams</c> (transformers' default 1, i.e. greedy).</summary>
    public int NumBeams { get; init; } = 1;

    /// <summary><c>max_length</c>: the longest output counting the decoder start token (transformers' default 20).</summary>
    public int MaxLength { get; init; } = 20;

    /// <summary><c>max_new_tokens</c>: when set, overrides <see cref="MaxLength"/> (tokens generated after the start token, <c>&lt;eos&gt;</c> included).</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary><c>length_penalty</c> α: finished beams are ranked by log-probability / length^α.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    /// <summary><c>early_stopping</c>: <c>true</c>, <c>false</c> (transformers' default) or <c>"never"</c>.</summary>
    public Inference.EarlyStopping EarlyStopping { get; init; } = Inference.EarlyStopping.Heuristic;

    /// <summary>Single-token <c>bad_words_ids</c>: ids that are never generated (OPUS-MT: <c>&lt;pad&gt;</c>).</summary>
    public IReadOnlyList<int> BannedTokens { get; init; } = [];

    /// <summary>
    /// Tokens transformers generates at most after the start token, <c>&lt;eos&gt;</c> included:
    /// <see cref="MaxNewTokens"/>, or <see cref="MaxLength"/> − 1.
    /// </summary>
    public int NewTokenLimit => MaxNewTokens ?? Math.Max(0, MaxLength - 1);

    /// <summary>
    /// The decoding settings that reproduce <c>generate</c> with this configuration (banned tokens in Marian's id space):
    /// length normalisation and stopping rule, beam size and length limit.
    /// </summary>
    public Inference.GenerationSettings ToSettings() => new()
    {
        LengthNormalization = Inference.LengthNormalization.HuggingFace,
        LengthPenalty = LengthPenalty,
        BannedTokens = BannedTokens,
        EarlyStopping = EarlyStopping,
        NumBeams = NumBeams,
        MaxNewTokens = NewTokenLimit,
    };
}
