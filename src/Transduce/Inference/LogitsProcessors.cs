using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Inference;

/// <summary>Where a search stands when it asks the logit rules about the next token.</summary>
/// <param name="Step">Tokens every live hypothesis holds so far (0 at the first step).</param>
/// <param name="RowSentences">For each row of the scores, the source sentence it decodes; −1 for a row that has finished
/// (greedy search keeps finished rows in its batch), which every rule leaves alone.</param>
/// <param name="RowTokens">
/// For each row, the tokens its hypothesis holds so far (without the decoder start token), in order; null when the
/// search does not say (then the rules that look at history — repetition, n-grams, banned sequences — see none).
/// </param>
internal readonly record struct SearchPosition(int Step, IReadOnlyList<int> RowSentences, IReadOnlyList<IReadOnlyList<int>>? RowTokens = null)
{
    /// <summary>
    /// The ids transformers' processors see as <c>input_ids</c> for row <paramref name="row"/>: the decoder start token
    /// <paramref name="start"/>, then the row's tokens.
    /// </summary>
    public int[] InputIds(int row, int start)
    {
        var tokens = RowTokens is { } all ? all[row] : [];
        var ids = new int[tokens.Count + 1];
        ids[0] = start;
        for (int i = 0; i < tokens.Count; i++) ids[i + 1] = tokens[i];
        return ids;
    }

    /// <summary>Sets the (<paramref name="rows"/>, <paramref name="columns"/>) pairs of <paramref name="scores"/> to −∞ in a copy; the scores themselves when there are none.</summary>
    internal static Tensor Ban(Tensor scores, List<long> rows, List<long> columns)
    {
        if (rows.Count == 0) return scores;
        using var r = tensor(rows.ToArray(), device: scores.device);
        using var c = tensor(columns.ToArray(), device: scores.device);
        using var value = tensor(double.NegativeInfinity, scores.dtype, scores.device);
        return scores.clone().index_put_(value, r, c);
    }
}

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

/// <summary>
/// Tokens and token sequences that are never generated: transformers' <c>NoBadWordsLogitsProcessor</c>
/// (<c>bad_words_ids</c>). A single token (e.g. Marian's <c>&lt;pad&gt;</c>) is always banned; a sequence of
/// <c>n ≥ 2</c> tokens bans its last token in a row whose last <c>n − 1</c> input ids (the decoder start token, then the
/// row's tokens) are the sequence's first <c>n − 1</c>. Ids outside the vocabulary are ignored.
/// </summary>
/// <param name="tokens">Tokens never generated.</param>
/// <param name="sequences">Sequences of two or more tokens never completed (null: none).</param>
/// <param name="start">The decoder start token, the first input id of every row.</param>
internal sealed class BannedTokensProcessor(IReadOnlyCollection<int> tokens, IReadOnlyList<int[]>? sequences = null, int start = 0) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        long vocab = scores.shape[1];
        var inside = tokens.Where(t => t < vocab).Select(t => (long)t).Distinct().ToArray();
        if (inside.Length > 0) scores = scores.index_fill(1, tensor(inside, device: scores.device), double.NegativeInfinity);
        if (sequences is not { Count: > 0 }) return scores;
        var rows = new List<long>();
        var columns = new List<long>();
        for (int r = 0; r < position.RowSentences.Count; r++)
        {
            if (position.RowSentences[r] < 0) continue;
            var ids = position.InputIds(r, start);
            foreach (var sequence in sequences)
            {
                int prefix = sequence.Length - 1;
                if (sequence.Length == 0 || sequence.Length > ids.Length || sequence[^1] >= vocab) continue;
                if (ids.AsSpan(ids.Length - prefix).SequenceEqual(sequence.AsSpan(0, prefix)))
                {
                    rows.Add(r);
                    columns.Add(sequence[^1]);
                }
            }
        }
        return SearchPosition.Ban(scores, rows, columns);
    }
}

/// <summary>
/// No n-gram occurs twice (transformers' <c>NoRepeatNGramLogitsProcessor</c>, <c>no_repeat_ngram_size</c>): in each row,
/// every token that would complete an n-gram already present in the row's input ids (the decoder start token, then the
/// row's tokens) gets −∞.
/// </summary>
/// <param name="size">n, at least 1.</param>
/// <param name="start">The decoder start token.</param>
internal sealed class NoRepeatNgramProcessor(int size, int start) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        if (position.Step + 1 < size) return scores; // fewer input ids than n: no n-gram yet
        long vocab = scores.shape[1];
        var rows = new List<long>();
        var columns = new List<long>();
        for (int r = 0; r < position.RowSentences.Count; r++)
        {
            if (position.RowSentences[r] < 0) continue;
            var ids = position.InputIds(r, start);
            if (ids.Length < size) continue;
            // The last n − 1 ids are the prefix an n-gram ending at the next token would start with; every earlier window
            // of n ids that starts with it bans its last id.
            var prefix = ids.AsSpan(ids.Length - (size - 1));
            for (int w = 0; w + size <= ids.Length; w++)
            {
                if (ids.AsSpan(w, size - 1).SequenceEqual(prefix) && ids[w + size - 1] < vocab)
                {
                    rows.Add(r);
                    columns.Add(ids[w + size - 1]);
                }
            }
        }
        return SearchPosition.Ban(scores, rows, columns);
    }
}

/// <summary>
/// transformers' <c>RepetitionPenaltyLogitsProcessor</c> (<c>repetition_penalty</c>): in each row, the score of every
/// token among the row's input ids (the decoder start token, then the row's tokens) is multiplied by the penalty when
/// negative and divided by it otherwise — once per token however often it occurs. Greedy search applies it to raw logits,
/// beam search to log-probabilities (as transformers does), so the same penalty acts differently in the two.
/// </summary>
/// <param name="penalty">The penalty, positive; above 1 discourages repetition.</param>
/// <param name="start">The decoder start token.</param>
internal sealed class RepetitionPenaltyProcessor(double penalty, int start) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        long vocab = scores.shape[1];
        var rows = new List<long>();
        var columns = new List<long>();
        for (int r = 0; r < position.RowSentences.Count; r++)
        {
            if (position.RowSentences[r] < 0) continue;
            foreach (int id in position.InputIds(r, start).Where(t => t < vocab).Distinct())
            {
                rows.Add(r);
                columns.Add(id);
            }
        }
        if (rows.Count == 0) return scores;
        using var scope = NewDisposeScope();
        var rowIndex = tensor(rows.ToArray(), device: scores.device);
        var columnIndex = tensor(columns.ToArray(), device: scores.device);
        var picked = scores.index(rowIndex, columnIndex);
        var penalised = where(picked.lt(0), picked * penalty, picked / penalty);
        return scores.clone().index_put_(penalised, rowIndex, columnIndex).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// transformers' <c>ForcedBOSTokenLogitsProcessor</c> (<c>forced_bos_token_id</c>): at the first generated position
/// every token but <paramref name="token"/> gets −∞ and it gets 0 (NLLB's target-language token).
/// </summary>
/// <param name="token">The token every output starts with.</param>
internal sealed class ForcedBosProcessor(int token) : ILogitsProcessor
{
    /// <inheritdoc />
    public Tensor Process(Tensor scores, SearchPosition position)
    {
        if (position.Step != 0 || token >= scores.shape[1]) return scores;
        var rows = position.RowSentences.Select(s => s >= 0).ToArray();
        if (!rows.Contains(true)) return scores;
        var rowMask = tensor(rows, device: scores.device).unsqueeze(1);
        var isToken = arange(scores.shape[1], ScalarType.Int64, device: scores.device).eq(token).unsqueeze(0);
        return scores.masked_fill(rowMask.logical_and(isToken.logical_not()), double.NegativeInfinity)
            .masked_fill(rowMask.logical_and(isToken), 0.0);
    }
}

/// <summary>
/// No <c>&lt;eos&gt;</c> before a hypothesis holds <paramref name="minLength"/> tokens — nor after its sentence's maximum
/// (<paramref name="maxLengths"/>, when given): there the end is forced (<see cref="LengthLimitRule.ForcedEnd"/>), and a
/// minimum never outlasts it; under <see cref="LengthLimitRule.Stop"/> the search never reaches that step.
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
    /// The rules of <paramref name="options"/>, in transformers' order: repetition penalty, no repeated n-gram, banned
    /// tokens and sequences, minimum length, forced first token, then — under <see cref="LengthLimitRule.ForcedEnd"/> — the
    /// per-sentence maximum length (last: a forced end wins over everything before it; a banned <c>&lt;eos&gt;</c> leaves a
    /// sentence at its maximum nothing to choose). Under <see cref="LengthLimitRule.Stop"/> nothing is forced: the search
    /// stops after the limit's last token.
    /// The rules that read a row's history see the decoder start token <c>ids.Bos</c> first, as transformers' see it.
    /// </summary>
    public static IReadOnlyList<ILogitsProcessor> Standard(SearchOptions options, SpecialIds ids, IReadOnlyList<int> maxLengths, bool forcedEndScoresZero = false)
    {
        var rules = new List<ILogitsProcessor>();
        if (options.RepetitionPenalty != 1.0) rules.Add(new RepetitionPenaltyProcessor(options.RepetitionPenalty, ids.Bos));
        if (options.NoRepeatNgramSize > 0) rules.Add(new NoRepeatNgramProcessor(options.NoRepeatNgramSize, ids.Bos));
        if (options.BannedTokens.Count > 0 || options.BannedSequences.Count > 0)
            rules.Add(new BannedTokensProcessor(options.BannedTokens, options.BannedSequences, ids.Bos));
        if (options.MinLength > 0) rules.Add(new MinLengthProcessor(options.MinLength, ids.Eos, maxLengths));
        if (options.ForcedBosToken is int first) rules.Add(new ForcedBosProcessor(first));
        if (options.LengthLimit == LengthLimitRule.ForcedEnd) rules.Add(new MaxLengthProcessor(maxLengths, ids.Eos, forcedEndScoresZero));
        return rules;
    }

    /// <summary>Applies <paramref name="rules"/> in order.</summary>
    public static Tensor Apply(this IReadOnlyList<ILogitsProcessor> rules, Tensor scores, SearchPosition position)
    {
        foreach (var rule in rules) scores = rule.Process(scores, position);
        return scores;
    }
}
