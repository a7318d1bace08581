using Transduce.Inference;

namespace Transduce.Serving;

/// <summary>One scored translation.</summary>
/// <param name="Text">The translation.</param>
/// <param name="Score">Its length-normalised log-probability (higher is better).</param>
public readonly record struct ScoredTranslation(string Text, double Score);

/// <summary>
/// What the service decodes with. Only the batching worker calls <see cref="Translate"/>, one call at a time;
/// <see cref="CountTokens"/> may be called from any thread.
/// </summary>
public interface ITranslationBackend
{
    /// <summary>
    /// Translates <paramref name="sentences"/> with beam size <paramref name="beam"/>, returning per sentence (in input
    /// order) up to <paramref name="nBest"/> translations, best first, decoding at most <paramref name="batchSize"/>
    /// sentences at a time.
    /// </summary>
    IReadOnlyList<IReadOnlyList<ScoredTranslation>> Translate(IReadOnlyList<string> sentences, int beam, int nBest, int batchSize);

    /// <summary>Tokens the model's tokenizer makes of <paramref name="text"/> (for metrics).</summary>
    int CountTokens(string text);

    /// <summary>
    /// The cross-attention of the best translation of <paramref name="sentence"/> with beam size <paramref name="beam"/>,
    /// or null when the model has none. May be called from any thread.
    /// </summary>
    AttentionMap? Attention(string sentence, int beam) => null;
}

/// <summary>The production backend: a loaded <see cref="Transduce.Inference.Translator"/>.</summary>
public sealed class TranslatorBackend : ITranslationBackend, IDisposable
{
    private readonly Text.TextPipeline pipeline;

    /// <summary>Wraps <paramref name="translator"/>; the backend owns and disposes it.</summary>
    public TranslatorBackend(Translator translator)
    {
        Translator = translator;
        pipeline = translator.Checkpoint.CreateTextPipeline();
    }

    /// <summary>The wrapped translator.</summary>
    public Translator Translator { get; }

    /// <inheritdoc />
    public IReadOnlyList<IReadOnlyList<ScoredTranslation>> Translate(IReadOnlyList<string> sentences, int beam, int nBest, int batchSize)
    {
        var options = new TranslationOptions { Beam = beam, NBest = nBest, BatchSize = batchSize };
        return Translator.TranslateNBest(sentences, options)
            .Select(list => (IReadOnlyList<ScoredTranslation>)list.Select(h => new ScoredTranslation(h.Text, h.Score)).ToArray())
            .ToArray();
    }

    /// <inheritdoc />
    public int CountTokens(string text) => pipeline.CountTargetTokens(text);

    /// <inheritdoc />
    public AttentionMap? Attention(string sentence, int beam) =>
        Translator.TranslateWithAttention(sentence, new TranslationOptions { Beam = beam }).Attention;

    /// <inheritdoc />
    public void Dispose() => Translator.Dispose();
}
