namespace Transduce.Translation;

/// <summary>One translation of a sentence.</summary>
/// <param name="Text">The translation, detokenized.</param>
/// <param name="Score">Its length-normalised log-probability (<see cref="Inference.Hypothesis.Score"/>; higher is better).</param>
/// <param name="Tokens">The output tokens it was made of, without <c>&lt;eos&gt;</c>.</param>
public sealed record TranslationHypothesis(string Text, double Score, IReadOnlyList<string> Tokens)
{
    /// <summary>
    /// The cross-attention of the decoding that produced this translation, when it was asked for
    /// (<see cref="Translator.TranslateHypotheses"/>) and the model attends over the source; otherwise null.
    /// </summary>
    public AttentionMap? Attention { get; init; }
}
