namespace Transduce.Translation;

/// <summary>
/// The most work decoding one sentence can take, known before decoding it (<see cref="Translator.EstimateCost"/>).
/// </summary>
/// <param name="SourceTokens">Tokens of the source sentence.</param>
/// <param name="SourcePositions">Source positions the encoder sees (tokens and <c>&lt;eos&gt;</c>, after the model's cut).</param>
/// <param name="MaxOutputTokens">The output limit (before <c>&lt;eos&gt;</c>), <see cref="Translator.MaxOutputLength"/>.</param>
/// <param name="Rows">Hypotheses decoded side by side: 1 for greedy search, the beam size for beam search.</param>
internal readonly record struct DecodingCost(int SourceTokens, int SourcePositions, int MaxOutputTokens, int Rows)
{
    /// <summary>
    /// <c>Rows × (SourcePositions + MaxOutputTokens + 1)</c>: the positions all hypotheses of the sentence may hold at
    /// the last step (source memory and target prefix, <c>&lt;eos&gt;</c> included; an output that stops at its limit
    /// without <c>&lt;eos&gt;</c>, <see cref="Inference.LengthLimitRule.Stop"/>, takes one step fewer). Memory (key/value caches, copied per
    /// row) grows with it, and so does decoding time, about linearly for recurrent models and faster for attention.
    /// </summary>
    public long Cost => (long)Rows * (SourcePositions + MaxOutputTokens + 1);
}
