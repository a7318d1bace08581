using Transduce.Architecture;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Inference;

/// <summary>
/// Greedy decoding (d2l §10.7's <c>predict_step</c>): feed <c>&lt;bos&gt;</c>, then each step's arg-max,
/// one token at a time through <see cref="EncoderDecoder.BeginDecoding"/>; a sentence stops at its own <c>&lt;eos&gt;</c>
/// or at its maximum length, ended there as <see cref="SearchOptions.LengthLimit"/> says (a forced <c>&lt;eos&gt;</c>, or
/// the last token kept as it is). Knows nothing about the model's internals.
/// </summary>
internal static class GreedySearch
{
    // Finished rows leave the decoder batch once they are at least 1/this of it (each drop copies the decoder state).
    private const int DropFinishedFraction = 8;

    /// <summary>
    /// Decodes a batch. Returns, per row, the output ids without <c>&lt;bos&gt;</c>/<c>&lt;eos&gt;</c>.
    /// </summary>
    /// <param name="model">The model (put in eval mode by the caller).</param>
    /// <param name="source">(batch, steps) source ids.</param>
    /// <param name="validLengths">(batch) source lengths.</param>
    /// <param name="ids">Special token ids of the target vocabulary.</param>
    /// <param name="maxLengths">Per-row maximum number of output tokens (not counting <c>&lt;eos&gt;</c>).</param>
    /// <param name="bannedTokens">Token ids never chosen (default none), e.g. Marian's <c>&lt;pad&gt;</c>.</param>
    /// <param name="cancellation">
    /// Checked before every step: once it fires, decoding stops within one step and throws
    /// <see cref="OperationCanceledException"/> (a caller that gave up stops consuming CPU).
    /// </param>
    public static int[][] Decode(EncoderDecoder model, Tensor source, Tensor validLengths, SpecialIds ids, int[] maxLengths,
        IReadOnlyCollection<int>? bannedTokens = null, CancellationToken cancellation = default) =>
        Decode(model, source, validLengths, ids, maxLengths, new SearchOptions { BannedTokens = bannedTokens?.ToArray() ?? [] }, cancellation)
            .Select(h => h.Tokens).ToArray();

    /// <summary>
    /// Decodes a batch under the logit rules of <paramref name="options"/>. Returns one unscored <see cref="Hypothesis"/>
    /// per row, with its cross-attention when <see cref="SearchOptions.CrossAttention"/> asks for it.
    /// </summary>
    /// <param name="model">The model (put in eval mode by the caller).</param>
    /// <param name="source">(batch, steps) source ids.</param>
    /// <param name="validLengths">(batch) source lengths.</param>
    /// <param name="ids">Special token ids of the target vocabulary.</param>
    /// <param name="maxLengths">Per-row maximum number of output tokens (not counting <c>&lt;eos&gt;</c>).</param>
    /// <param name="options">Banned tokens, minimum length, the length-limit rule, attention.</param>
    /// <param name="cancellation">Checked before every step (then <see cref="OperationCanceledException"/>).</param>
    public static IReadOnlyList<Hypothesis> Decode(EncoderDecoder model, Tensor source, Tensor validLengths, SpecialIds ids, int[] maxLengths,
        SearchOptions options, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (maxLengths.Length != source.shape[0])
            throw new ArgumentException("one maximum length per source row is required", nameof(maxLengths));
        int batch = (int)source.shape[0];
        if (batch == 0) return [];
        var rules = LogitsProcessors.Standard(options, ids, maxLengths);
        var outputs = new List<int>[batch];
        for (int i = 0; i < batch; i++) outputs[i] = [];
        // Row r of the decoder batch decodes sentence rowSentences[r]; −1 once it is done. Finished rows are dropped
        // from the batch (fairseq and CTranslate2 do the same) once enough of them have piled up to pay for the copy of
        // the decoder state; until then they decode along, their tokens ignored.
        // A row with no step to take (a limit of 0 under LengthLimitRule.Stop) is done before the first one.
        var rowSentences = Enumerable.Range(0, batch).Select(i => options.GeneratedLimit(maxLengths[i]) > 0 ? i : -1).ToArray();
        bool wantAttention = options.CrossAttention && model.HasCrossAttention;
        var trails = new AttentionTrail?[batch];
        StepAttention? shape = null;
        int steps = maxLengths.Max(options.GeneratedLimit);

        using var grad = inference_mode(); // no autograd bookkeeping at all (no version counters, no views tracked)
        using var scope = NewDisposeScope();
        using var decoding = model.BeginDecoding(source, validLengths);
        var input = full(batch, ids.Bos, ScalarType.Int64, device: source.device);
        for (int step = 0; step < steps && rowSentences.Any(s => s >= 0); step++)
        {
            cancellation.ThrowIfCancellationRequested();
            Tensor best;
            long[]? picks;
            using (var stepScope = NewDisposeScope())
            {
                var (logits, attention) = decoding.Step(input, wantAttention);
                // The first maximal value of each row (argmax's choice): in managed code where it applies, else max(dim),
                // whose indices are argmax's at about half its cost in libtorch 2.10.
                var history = new IReadOnlyList<int>[rowSentences.Length];
                for (int r = 0; r < history.Length; r++) history[r] = rowSentences[r] >= 0 ? outputs[rowSentences[r]] : [];
                var scores = rules.Apply(logits, new SearchPosition(step, rowSentences, history));
                picks = Models.RowKernels.ArgMaxRows(scores);
                best = picks is null ? scores.max(-1).indexes : tensor(picks, device: scores.device);
                shape = StepAttention.From(attention) ?? shape;
                if (attention is not null)
                    for (int r = 0; r < rowSentences.Length; r++)
                        if (rowSentences[r] is int s and >= 0) trails[s] = new AttentionTrail(shape!.Row(r), trails[s]);
                stepScope.MoveToOuter(best);
            }
            input.Dispose();
            input = best;
            var tokens = picks ?? best.data<long>().ToArray();
            int done = 0;
            for (int r = 0; r < rowSentences.Length; r++)
            {
                int s = rowSentences[r];
                if (s >= 0)
                {
                    int token = (int)tokens[r];
                    // At the limit a forced end leaves <eos> (or, with <eos> banned, nothing to keep); Stop keeps the token.
                    if (token == ids.Eos || outputs[s].Count >= maxLengths[s]) rowSentences[r] = -1;
                    else
                    {
                        outputs[s].Add(token);
                        if (outputs[s].Count >= options.GeneratedLimit(maxLengths[s])) rowSentences[r] = -1;
                    }
                }
                if (rowSentences[r] < 0) done++;
            }
            if (done == rowSentences.Length) break;
            if (done * DropFinishedFraction >= rowSentences.Length)
            {
                var keep = Enumerable.Range(0, rowSentences.Length).Where(r => rowSentences[r] >= 0).Select(r => (long)r).ToArray();
                using var rows = tensor(keep, device: source.device);
                decoding.SelectRows(rows);
                var kept = input.index_select(0, rows);
                input.Dispose();
                input = kept;
                rowSentences = keep.Select(r => rowSentences[r]).ToArray();
            }
        }

        var sourceLengths = wantAttention ? validLengths.to(ScalarType.Int64).cpu().data<long>().ToArray() : [];
        return Enumerable.Range(0, batch).Select(i => new Hypothesis([.. outputs[i]], double.NaN, double.NaN)
        {
            CrossAttention = trails[i] is { } trail ? trail.ToWeights(shape!, (int)sourceLengths[i]) : null,
        }).ToArray();
    }
}
