using Transduce.Architecture;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>
/// Greedy decoding (d2l §10.7's <c>predict_step</c>): feed <c>&lt;bos&gt;</c>, then each step's arg-max,
/// one token at a time through the decoder state; a sentence stops at its own <c>&lt;eos&gt;</c>.
/// Works with any <see cref="EncoderDecoder{TState}"/>; knows nothing about the model's internals.
/// </summary>
public sealed class GreedySearch : IEncoderDecoderFunc<int[][]>
{
    private readonly Tensor source;
    private readonly Tensor validLengths;
    private readonly SpecialIds ids;
    private readonly int[] maxLengths;
    private readonly IReadOnlyCollection<int> bannedTokens;
    private readonly CancellationToken cancellation;

    private GreedySearch(Tensor source, Tensor validLengths, SpecialIds ids, int[] maxLengths, IReadOnlyCollection<int> bannedTokens,
        CancellationToken cancellation)
    {
        this.cancellation = cancellation;
        this.source = source;
        this.validLengths = validLengths;
        this.ids = ids;
        this.maxLengths = maxLengths;
        this.bannedTokens = bannedTokens;
    }

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
        IReadOnlyCollection<int>? bannedTokens = null, CancellationToken cancellation = default)
    {
        if (maxLengths.Length != source.shape[0])
            throw new ArgumentException("one maximum length per source row is required", nameof(maxLengths));
        if (bannedTokens is not null && bannedTokens.Any(t => t < 0))
            throw new ArgumentException("banned token ids must be non-negative", nameof(bannedTokens));
        return model.Apply(new GreedySearch(source, validLengths, ids, maxLengths, bannedTokens ?? [], cancellation));
    }

    /// <inheritdoc />
    public int[][] Invoke<TState>(EncoderDecoder<TState> model) where TState : IDecoderState
    {
        int batch = (int)source.shape[0];
        var outputs = new List<int>[batch];
        for (int i = 0; i < batch; i++) outputs[i] = [];
        var done = new bool[batch];
        int limit = maxLengths.Max();

        using var grad = inference_mode(); // no autograd bookkeeping at all (no version counters, no views tracked)
        using var scope = NewDisposeScope();
        var encoded = model.Encoder.call(source, validLengths);
        var state = model.Decoder.InitState(encoded, validLengths);
        var input = full(batch, 1, ids.Bos, ScalarType.Int64);
        for (int step = 0; step <= limit; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            Tensor best;
            TState next;
            using (var stepScope = NewDisposeScope())
            {
                var (logits, nextState) = model.Decoder.call(input, state);
                var last = logits[.., -1];
                if (bannedTokens.Count > 0)
                    last = last.index_fill(1, BeamSearch.BannedIndex(bannedTokens, last.shape[1], last.device), float.NegativeInfinity);
                best = last.argmax(-1).unsqueeze(1);
                next = nextState;
                StepMemory.Keep(stepScope, next.Tensors.Append(best));
            }
            StepMemory.Release(state.Tensors.Append(input), next.Tensors);
            var tokens = best.data<long>().ToArray();
            bool all = true;
            for (int i = 0; i < batch; i++)
            {
                if (done[i]) continue;
                int token = (int)tokens[i];
                if (token == ids.Eos || outputs[i].Count >= maxLengths[i]) done[i] = true;
                else outputs[i].Add(token);
                all &= done[i];
            }
            input = best;
            state = next;
            if (all) break;
        }
        return outputs.Select(o => o.ToArray()).ToArray();
    }
}
