using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Inference;

/// <summary>Where a search stands when it asks the logit rules about the next token.</summary>
/// <param name="Step">Tokens every live hypothesis holds so far (0 at the first step).</param>
/// <param name="RowSentences">For each row of the scores, the source sentence it decodes; −1 for a row that has finished
/// (greedy search keeps finished rows in its batch), which the length rules leave alone.</param>
internal readonly record struct SearchPosition(int Step, IReadOnlyList<int> RowSentences);

/// <summary>
/// A rule on which tokens may come next, applied to every step's scores before a search chooses (transformers' logits
/// processors). Greedy search hands it raw logits, beam search log-probabilities; a rule only ever removes tokens
/// (−∞) or forces one, so it means the same to both.
/// </summary>
internal interface ILogitsProcessor
{
    /// <summary>Returns the adjusted scores, (rows, vocabulary) like <paramref name="scores"/> (it may return them unchanged).</summary>
    Tensor Process(Tensor scores, SearchPosition position);
}

/// <summary>Tokens that are never generated (transformers' <c>bad_words_ids</c> for single tokens, e.g. Marian's <c>&lt;pad&gt;</c>).</summary>
internal sealed class BannedTokensProcessor(IReadOnlyCollection<int> tokens) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        long vocab = scores.shape[1];
        var inside = tokens.Where(t => t < vocab).Select(t => (long)t).Distinct().ToArray();
        return inside.Length == 0 ? scores : scores.index_fill(1, tensor(inside, device: scores.device), double.NegativeInfinity);
    }
}

/// <summary>
/// No <c>&lt;eos&gt;</c> before a hypothesis holds <paramref name="minLength"/> tokens — nor after its sentence's maximum
/// (<paramref name="maxLengths"/>, when given): there the end is forced, and a minimum never outlasts it.
/// </summary>
/// <param name="minLength">Tokens before <c>&lt;eos&gt;</c> is allowed.</param>
/// <param name="eos">The <c>&lt;eos&gt;</c> id.</param>
/// <param name="maxLengths">Per source sentence, the most tokens before <c>&lt;eos&gt;</c>; null for no limit.</param>
internal sealed class MinLengthProcessor(int minLength, int eos, IReadOnlyList<int>? maxLengths = null) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        if (position.Step >= minLength) return scores;
        var rows = position.RowSentences.Select(s => s >= 0 && (maxLengths is null || position.Step < maxLengths[s])).ToArray();
        if (!rows.Contains(true)) return scores;
        var eosColumn = arange(scores.shape[1], ScalarType.Int64, device: scores.device).eq(eos).unsqueeze(0);
        return scores.masked_fill(tensor(rows, device: scores.device).unsqueeze(1).logical_and(eosColumn), double.NegativeInfinity);
    }
}

/// <summary>
/// A hypothesis that holds its sentence's maximum number of tokens must end: every token but <c>&lt;eos&gt;</c> gets −∞,
/// so every output ends in a scored <c>&lt;eos&gt;</c>. With <paramref name="forcedEndScoresZero"/> the forced
/// <c>&lt;eos&gt;</c> scores log-probability 0, as transformers' <c>ForcedEOSTokenLogitsProcessor</c> gives it.
/// </summary>
/// <param name="maxLengths">Per source sentence, the most tokens before <c>&lt;eos&gt;</c>.</param>
/// <param name="eos">The <c>&lt;eos&gt;</c> id.</param>
/// <param name="forcedEndScoresZero">Score a forced <c>&lt;eos&gt;</c> 0 instead of the model's log-probability.</param>
internal sealed class MaxLengthProcessor(IReadOnlyList<int> maxLengths, int eos, bool forcedEndScoresZero = false) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        var forced = position.RowSentences.Select(s => s >= 0 && position.Step >= maxLengths[s]).ToArray();
        if (!forced.Contains(true)) return scores;
        var rowMask = tensor(forced, device: scores.device).unsqueeze(1);
        var notEos = arange(scores.shape[1], ScalarType.Int64, device: scores.device).ne(eos).unsqueeze(0);
        scores = scores.masked_fill(rowMask.logical_and(notEos), double.NegativeInfinity);
        return forcedEndScoresZero ? scores.masked_fill(rowMask.logical_and(notEos.logical_not()), 0.0) : scores;
    }
}

/// <summary>The logit rules greedy and beam search share, in the one order both apply them.</summary>
internal static class LogitsProcessors
{
    /// <summary>
    /// The rules of <paramref name="options"/>: minimum length, banned tokens, then the per-sentence maximum length
    /// (last: a forced end wins over the minimum length; a banned <c>&lt;eos&gt;</c> leaves a sentence at its maximum
    /// nothing to choose).
    /// </summary>
    public static IReadOnlyList<ILogitsProcessor> Standard(SearchOptions options, SpecialIds ids, IReadOnlyList<int> maxLengths, bool forcedEndScoresZero = false)
    {
        var rules = new List<ILogitsProcessor>();
        if (options.MinLength > 0) rules.Add(new MinLengthProcessor(options.MinLength, ids.Eos, maxLengths));
        if (options.BannedTokens.Count > 0) rules.Add(new BannedTokensProcessor(options.BannedTokens));
        rules.Add(new MaxLengthProcessor(maxLengths, ids.Eos, forcedEndScoresZero));
        return rules;
    }

    /// <summary>Applies <paramref name="rules"/> in order.</summary>
    public static Tensor Apply(this IReadOnlyList<ILogitsProcessor> rules, Tensor scores, SearchPosition position)
    {
        foreach (var rule in rules) scores = rule.Process(scores, position);
        return scores;
    }
}
