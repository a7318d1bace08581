namespace Transduce.Inference;

/// <summary>One translation of a sentence.</summary>
/// <param name="Text">The translation, detokenized.</param>
/// <param name="Score">Its length-normalised log-probability (<see cref="Hypothesis.Score"/>; higher is better).</param>
/// <param name="Tokens">The output tokens it was made of, without <c>&lt;eos&gt;</c>.</param>
public sealed record TranslationHypothesis(string Text, double Score, IReadOnlyList<string> Tokens);
