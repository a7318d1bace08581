using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Architecture;

/// <summary>What one decoding step gives.</summary>
/// <param name="Logits">Next-token logits, (rows, target vocabulary).</param>
/// <param name="CrossAttention">When asked for and the model has it: this step's cross-attention, (rows, layers, heads, source steps); else null.</param>
public readonly record struct DecodingStep(Tensor Logits, Tensor? CrossAttention);

/// <summary>
/// Decoding of one source batch, one token per row at a time, begun by <see cref="EncoderDecoder.BeginDecoding"/>:
/// <see cref="Step"/> feeds each row its latest token and returns the logits of the next; <see cref="SelectRows"/>
/// reorders, repeats or drops rows (beam search re-ranking hypotheses). This is all a search needs of a model; the
/// decoder state behind it stays the model's business.
/// </summary>
/// <remarks>
/// The decoding owns its state: each step's state replaces the last one's, whose tensors are freed unless the new state
/// still holds them, so memory stays flat however long the output. What <see cref="Step"/> returns belongs to the
/// caller (to the caller's dispose scope, if one is open). Dispose the decoding to free the state.
/// <see cref="EncoderDecoder{TState}"/> implements it for every model; derive from it only to change how a model
/// decodes, typically as a decorator over the decoding the model begins (override <see cref="Dispose(bool)"/> to dispose
/// the wrapped one).
/// </remarks>
public abstract class IncrementalDecoding : IDisposable
{
    private readonly HashSet<Tensor> owned = new(ReferenceEqualityComparer.Instance);

    /// <summary>Rows being decoded: the source batch size until <see cref="SelectRows"/> changes it.</summary>
    public virtual long Rows { get; protected set; }

    /// <summary>
    /// Feeds one token per row and returns the logits of the next token of every row.
    /// </summary>
    /// <param name="tokens">(rows) the latest token of each row (<c>&lt;bos&gt;</c> at the first step).</param>
    /// <param name="crossAttention">Also return this step's cross-attention (null when the model has none).</param>
    public abstract DecodingStep Step(Tensor tokens, bool crossAttention = false);

    /// <summary>Row i continues as row <paramref name="rows"/>[i] was (rows may repeat or be left out).</summary>
    /// <param name="rows">(new rows) indices into the current rows.</param>
    public abstract void SelectRows(Tensor rows);

    /// <summary>Takes the tensors of <paramref name="state"/> that <paramref name="scope"/> holds out of it: from now on this decoding frees them.</summary>
    private protected void Own(DisposeScope scope, IEnumerable<Tensor> state)
    {
        foreach (var t in state)
            if (!owned.Contains(t) && scope.Contains(t))
            {
                scope.Detach(t);
                owned.Add(t);
            }
    }

    /// <summary>Frees the tensors of a replaced state that the current state no longer holds (tensors this decoding does not own are left alone).</summary>
    private protected void Release(IEnumerable<Tensor> replaced, IEnumerable<Tensor> current)
    {
        var live = new HashSet<Tensor>(current, ReferenceEqualityComparer.Instance);
        foreach (var t in replaced)
            if (!live.Contains(t) && owned.Remove(t)) t.Dispose();
    }

    /// <summary>The last target step of each layer's cross-attention, as (rows, layers, heads, source steps).</summary>
    private protected static Tensor LastStep(IReadOnlyList<Tensor> layers) => stack(layers.Select(w => w[.., .., -1]), 1);

    /// <summary>Frees the decoding state.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees what this decoding owns (a decorator also disposes the decoding it wraps).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        foreach (var t in owned) t.Dispose();
        owned.Clear();
    }
}

/// <summary>Incremental decoding proper: the decoder's state (hidden state, cached keys and values) is carried from step to step.</summary>
internal sealed class StateCarryingDecoding<TState> : IncrementalDecoding where TState : IDecoderState
{
    private readonly Decoder<TState> decoder;
    private TState state;

    public StateCarryingDecoding(Encoder encoder, Decoder<TState> decoder, Tensor source, Tensor sourceValidLengths)
    {
        this.decoder = decoder;
        using var scope = NewDisposeScope();
        var encoded = encoder.call(source, sourceValidLengths);
        state = decoder.InitState(encoded, sourceValidLengths);
        Own(scope, state.Tensors);
        Rows = source.shape[0];
    }

    public override DecodingStep Step(Tensor tokens, bool crossAttention = false)
    {
        TState next;
        Tensor logits;
        Tensor? weights = null;
        using (var scope = NewDisposeScope())
        {
            (var all, next) = decoder.call(tokens.unsqueeze(1), state);
            logits = all[.., -1];
            if (crossAttention && next is ICrossAttentionState { CrossAttention.Count: > 0 } attending)
                weights = scope.MoveToOuter(LastStep(attending.CrossAttention));
            scope.MoveToOuter(logits);
            Own(scope, next.Tensors);
        }
        Release(state.Tensors, next.Tensors);
        state = next;
        return new DecodingStep(logits, weights);
    }

    public override void SelectRows(Tensor rows)
    {
        TState next;
        using (var scope = NewDisposeScope())
        {
            next = decoder.SelectRows(state, rows);
            Own(scope, next.Tensors);
        }
        Release(state.Tensors, next.Tensors);
        state = next;
        Rows = rows.shape[0];
    }
}

/// <summary>
/// Decoding the way d2l's Transformer chapter predicts: nothing is carried but the encoder's output and the tokens so far;
/// every step re-runs the decoder over the whole prefix from a fresh <see cref="Decoder{TState}.InitState"/> and keeps the
/// last position's logits. Exact, and the baseline that incremental decoding is checked and measured against.
/// </summary>
internal sealed class PrefixRecomputingDecoding<TState> : IncrementalDecoding where TState : IDecoderState
{
    private readonly Decoder<TState> decoder;
    private EncoderOutput encoded;
    private Tensor lengths;
    private Tensor? prefix;

    public PrefixRecomputingDecoding(Encoder encoder, Decoder<TState> decoder, Tensor source, Tensor sourceValidLengths)
    {
        this.decoder = decoder;
        lengths = sourceValidLengths;
        using var scope = NewDisposeScope();
        encoded = encoder.call(source, sourceValidLengths);
        Own(scope, Carried);
        Rows = source.shape[0];
    }

    private IEnumerable<Tensor> Carried =>
        new[] { encoded.Outputs, lengths }.Concat(encoded.FinalState is { } f ? [f] : []).Concat(prefix is { } p ? [p] : []);

    public override DecodingStep Step(Tensor tokens, bool crossAttention = false)
    {
        var replaced = Carried.ToList();
        Tensor logits;
        Tensor? weights = null;
        using (var scope = NewDisposeScope())
        {
            var column = tokens.unsqueeze(1);
            prefix = prefix is null ? column.alias() : cat([prefix, column], 1);
            var (all, state) = decoder.call(prefix, decoder.InitState(encoded, lengths));
            logits = all[.., -1];
            if (crossAttention && state is ICrossAttentionState { CrossAttention.Count: > 0 } attending)
                weights = scope.MoveToOuter(LastStep(attending.CrossAttention));
            scope.MoveToOuter(logits);
            Own(scope, Carried);
        }
        Release(replaced, Carried);
        return new DecodingStep(logits, weights);
    }

    public override void SelectRows(Tensor rows)
    {
        var replaced = Carried.ToList();
        using (var scope = NewDisposeScope())
        {
            encoded = new EncoderOutput(encoded.Outputs.index_select(0, rows), encoded.FinalState?.index_select(1, rows));
            lengths = lengths.index_select(0, rows);
            prefix = prefix?.index_select(0, rows);
            Own(scope, Carried);
        }
        Release(replaced, Carried);
        Rows = rows.shape[0];
    }
}
