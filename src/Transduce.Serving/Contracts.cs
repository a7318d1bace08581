using System.ComponentModel;
using System.Text.Json.Serialization;

namespace Transduce.Serving;

// The JSON shapes of the HTTP API (snake_case on the wire). They are what the service writes and what its OpenAPI
// document describes; the request body is read and checked by TranslateRequestReader, field by field.

/// <summary>The body of <c>POST /v1/translate</c>.</summary>
public sealed record TranslateRequestBody
{
    /// <summary>Sentences to translate.</summary>
    [Description("Sentences to translate (at most --max-sentences, each at most --max-chars characters).")]
    public required IReadOnlyList<string> Text { get; init; }

    /// <summary>Beam size (1: greedy).</summary>
    [Description("Beam size; 1 (the default) decodes greedily. At most --max-beam.")]
    public int? Beam { get; init; }

    /// <summary>Translations wanted per sentence.</summary>
    [Description("Translations wanted per sentence, best first; the search keeps max(beam, n_best) hypotheses.")]
    public int? NBest { get; init; }

    /// <summary>Whether the best translation's cross-attention is wanted.</summary>
    [Description("Return the cross-attention (last layer, averaged over heads) of each best translation.")]
    public bool? Attention { get; init; }

    /// <summary>The source language of a multilingual model (one of its <c>languages</c> in <c>/v1/models</c>).</summary>
    [Description("Source language of a multilingual model (NLLB: e.g. eng_Latn; one of its languages in /v1/models); the model's default when absent.")]
    public string? SourceLang { get; init; }

    /// <summary>The target language of a multilingual model.</summary>
    [Description("Target language of a multilingual model (NLLB: e.g. fra_Latn); required by such a model unless it has a default.")]
    public string? TargetLang { get; init; }

    /// <summary>One of the model's tasks (its <c>tasks</c> in <c>/v1/models</c>).</summary>
    [Description("A task of the model (T5: e.g. translation_en_to_de, summarization; its tasks in /v1/models): the task's prefix and generation settings apply.")]
    public string? Task { get; init; }

    /// <summary>The model to use (a name from <c>/v1/models</c>); the first served when absent.</summary>
    [Description("A model name from /v1/models; the first model served when absent.")]
    public string? Model { get; init; }
}

/// <summary>The answer of <c>POST /v1/translate</c>.</summary>
/// <param name="Model">The name of the model that translated.</param>
/// <param name="Translations">One result per sentence, in request order.</param>
public sealed record TranslateResponse(string Model, IReadOnlyList<TranslationResult> Translations);

/// <summary>The translations of one sentence.</summary>
/// <param name="Text">The best translation.</param>
/// <param name="Score">Its length-normalised log-probability; null when not finite.</param>
/// <param name="NBest">The translations found, best first (<c>n_best</c> of them at most).</param>
/// <param name="Attention">The best translation's cross-attention, when asked for.</param>
public sealed record TranslationResult(string Text, double? Score, IReadOnlyList<TranslationCandidate> NBest,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] AttentionView? Attention = null);

/// <summary>One translation and its score.</summary>
/// <param name="Text">The translation.</param>
/// <param name="Score">Its length-normalised log-probability; null when not finite.</param>
public sealed record TranslationCandidate(string Text, double? Score);

/// <summary>Cross-attention weights: one row per target token (with the final <c>&lt;eos&gt;</c>), one column per source token.</summary>
/// <param name="SourceTokens">Source tokens as the encoder saw them.</param>
/// <param name="TargetTokens">Target tokens, ending in <c>&lt;eos&gt;</c>.</param>
/// <param name="Weights">[target][source], each row summing to 1.</param>
public sealed record AttentionView(IReadOnlyList<string> SourceTokens, IReadOnlyList<string> TargetTokens, IReadOnlyList<float[]> Weights);

/// <summary>The answer of <c>GET /v1/models</c>.</summary>
/// <param name="Models">The models served; the first is the default.</param>
public sealed record ModelList(IReadOnlyList<ModelInfo> Models);

/// <summary>The answer of <c>GET /healthz</c>.</summary>
/// <param name="Status"><c>ok</c>, or <c>stopping</c> (with status 503) once shutdown has begun.</param>
/// <param name="Models">Names of the models served.</param>
public sealed record HealthStatus(string Status, IReadOnlyList<string> Models);

/// <summary>
/// An error (<c>application/problem+json</c>, RFC 9457) with the request field at fault and, when a configured limit
/// was hit, the limit's name and value and what the request needed.
/// </summary>
public sealed record ServiceProblem
{
    /// <summary>A URI naming the problem type.</summary>
    public string? Type { get; init; }

    /// <summary>Short summary.</summary>
    public string? Title { get; init; }

    /// <summary>The HTTP status code.</summary>
    public int? Status { get; init; }

    /// <summary>What exactly went wrong.</summary>
    public string? Detail { get; init; }

    /// <summary>The request field (or header) at fault, e.g. <c>text[2]</c>.</summary>
    [Description("The request field (or header) at fault, e.g. text[2].")]
    public string? Field { get; init; }

    /// <summary>The limit hit, e.g. <c>max_request_cost</c>.</summary>
    [Description("The configured limit that refused the request: max_sentences, max_chars, max_body_bytes, max_beam, max_request_cost, max_attention_cells, max_inflight_cost or queue_limit.")]
    public string? Limit { get; init; }

    /// <summary>The limit's configured value.</summary>
    public long? LimitValue { get; init; }

    /// <summary>What the request needed of the limit (e.g. its estimated cost).</summary>
    public long? Requested { get; init; }
}
