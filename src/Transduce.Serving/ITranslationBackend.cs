using Transduce.Translation;
using Transduce.Inference;

namespace Transduce.Serving;

/// <summary>One scored translation.</summary>
/// <param name="Text">The translation.</param>
/// <param name="Score">Its length-normalised log-probability (higher is better).</param>
internal readonly record struct ScoredTranslation(string Text, double Score);

/// <summary>What the decoder made of one sentence.</summary>
/// <param name="NBest">Translations, best first.</param>
/// <param name="TargetTokens">Tokens of the best translation (for metrics and logs).</param>
/// <param name="Attention">Cross-attention of the best translation, when asked for and the model has it.</param>
internal sealed record SentenceTranslation(IReadOnlyList<ScoredTranslation> NBest, int TargetTokens, AttentionMap? Attention = null);

/// <summary>
/// What the service decodes with. Only the model's batching worker calls <see cref="Translate"/>, one call at a time;
/// <see cref="EstimateCost"/> may be called from any thread.
/// </summary>
internal interface ITranslationBackend
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

/// <summary>
/// What a served model decodes with: a loaded <see cref="Transduce.Translation.Translator"/>. One backend may be served
/// under several names (<see cref="ServedModel"/>); the host disposes it after the app.
/// </summary>
public sealed class TranslatorBackend : ITranslationBackend, IDisposable
{
    /// <summary>Wraps <paramref name="translator"/>; the backend owns and disposes it.</summary>
    public TranslatorBackend(Translator translator) => Translator = translator;

    /// <summary>The wrapped translator.</summary>
    public Translator Translator { get; }

    /// <inheritdoc />
    IReadOnlyList<DecodingCost> ITranslationBackend.EstimateCost(IReadOnlyList<string> sentences, TranslationOptions options) =>
        Translator.EstimateCost(sentences, options);

    /// <inheritdoc />
    IReadOnlyList<SentenceTranslation> ITranslationBackend.Translate(IReadOnlyList<string> sentences, TranslationOptions options, bool attention,
        CancellationToken cancellation)
    {
        // The attention maps come from the very decoding that produced the translations returned.
        var hypotheses = Translator.TranslateHypotheses(sentences, options, cancellation, crossAttention: attention);
        var results = new SentenceTranslation[sentences.Count];
        for (int i = 0; i < results.Length; i++)
        {
            var list = hypotheses[i];
            results[i] = new SentenceTranslation(list.Select(h => new ScoredTranslation(h.Text, h.Score)).ToArray(),
                list.Count > 0 ? list[0].Tokens.Count : 0, attention && list.Count > 0 ? list[0].Attention : null);
        }
        return results;
    }

    /// <inheritdoc />
    public void Dispose() => Translator.Dispose();
}
