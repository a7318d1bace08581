using Transduce.Inference;

namespace Transduce.Serving;

/// <summary>One scored translation.</summary>
/// <param name="Text">The translation.</param>
/// <param name="Score">Its length-normalised log-probability (higher is better).</param>
public readonly record struct ScoredTranslation(string Text, double Score);

/// <summary>What the decoder made of one sentence.</summary>
/// <param name="NBest">Translations, best first.</param>
/// <param name="TargetTokens">Tokens of the best translation (for metrics and logs).</param>
/// <param name="Attention">Cross-attention of the best translation, when asked for and the model has it.</param>
public sealed record SentenceTranslation(IReadOnlyList<ScoredTranslation> NBest, int TargetTokens, AttentionMap? Attention = null);

/// <summary>
/// What the service decodes with. Only the model's batching worker calls <see cref="Translate"/>, one call at a time;
/// <see cref="EstimateCost"/> may be called from any thread.
/// </summary>
public interface ITranslationBackend
{
    /// <summary>
    /// The most work each of <paramref name="sentences"/> can take with <paramref name="options"/>, known before decoding
    /// (<see cref="Translator.EstimateCost"/>).
    /// </summary>
    IReadOnlyList<DecodingCost> EstimateCost(IReadOnlyList<string> sentences, TranslationOptions options);

    /// <summary>
    /// Translates <paramref name="sentences"/>, returning per sentence (in input order) up to
    /// <see cref="TranslationOptions.NBest"/> translations, best first, and, when <paramref name="attention"/> is set,
    /// the cross-attention of the best one. Stops with <see cref="OperationCanceledException"/> within one decoding step
    /// once <paramref name="cancellation"/> fires.
    /// </summary>
    IReadOnlyList<SentenceTranslation> Translate(IReadOnlyList<string> sentences, TranslationOptions options, bool attention,
        CancellationToken cancellation);
}

/// <summary>The production backend: a loaded <see cref="Transduce.Inference.Translator"/>.</summary>
public sealed class TranslatorBackend : ITranslationBackend, IDisposable
{
    /// <summary>Wraps <paramref name="translator"/>; the backend owns and disposes it.</summary>
    public TranslatorBackend(Translator translator) => Translator = translator;

    /// <summary>The wrapped translator.</summary>
    public Translator Translator { get; }

    /// <inheritdoc />
    public IReadOnlyList<DecodingCost> EstimateCost(IReadOnlyList<string> sentences, TranslationOptions options) =>
        Translator.EstimateCost(sentences, options);

    /// <inheritdoc />
    public IReadOnlyList<SentenceTranslation> Translate(IReadOnlyList<string> sentences, TranslationOptions options, bool attention,
        CancellationToken cancellation)
    {
        var hypotheses = Translator.TranslateHypotheses(sentences, options, cancellation);
        var results = new SentenceTranslation[sentences.Count];
        for (int i = 0; i < results.Length; i++)
        {
            var list = hypotheses[i];
            AttentionMap? map = null;
            if (attention && list.Count > 0)
            {
                cancellation.ThrowIfCancellationRequested();
                // The map of the translation returned (its own tokens fed back), not of another decoding.
                map = Translator.CrossAttention(sentences[i], list[0].Tokens);
            }
            results[i] = new SentenceTranslation(list.Select(h => new ScoredTranslation(h.Text, h.Score)).ToArray(),
                list.Count > 0 ? list[0].Tokens.Count : 0, map);
        }
        return results;
    }

    /// <inheritdoc />
    public void Dispose() => Translator.Dispose();
}
