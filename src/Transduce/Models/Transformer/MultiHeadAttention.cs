using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// Multi-head scaled dot-product attention (d2l §11.5): heads attend in parallel over projected queries,
/// keys and values; their outputs are concatenated and projected. The projections are exposed separately
/// so that decoders can cache projected keys and values across decoding steps.
/// </summary>
internal sealed class MultiHeadAttention : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    private readonly Linear W_q, W_k, W_v, W_o;
    private readonly PackedDropout dropout;
    private readonly int heads;
    private readonly long headSize;
    private readonly bool scaleScores;

    /// <summary>Creates the attention of <paramref name="spec"/>: its width, heads, dropout, biases and score scaling.</summary>
    public MultiHeadAttention(TransformerSpec spec) : this(spec.Hidden, spec.Heads, spec.Dropout, spec.AttentionBias, spec.ScaleAttention, spec.HeadSize) { }

    /// <summary>Creates the module.</summary>
    /// <param name="hiddenSize">Model width (divisible by <paramref name="heads"/>).</param>
    /// <param name="heads">Number of heads.</param>
    /// <param name="dropout">Dropout on the attention weights.</param>
    /// <param name="bias">Whether the four projections have biases (d2l: no; Marian: yes).</param>
    /// <param name="scaleScores">Whether scores are divided by √(head size) (the paper's; T5: no).</param>
    /// <param name="headSize">Width of one head; null for <paramref name="hiddenSize"/> / <paramref name="heads"/>. Otherwise the
    /// projections map the model width onto heads × head size and back (T5's <c>d_kv</c>).</param>
    public MultiHeadAttention(long hiddenSize, int heads, double dropout, bool bias, bool scaleScores = true, long? headSize = null) : base(nameof(MultiHeadAttention))
    {
        this.scaleScores = scaleScores;
        if (headSize is null && hiddenSize % heads != 0) throw new ArgumentException($"model config: hidden size {hiddenSize} is not divisible by {heads} heads");
        this.heads = heads;
        this.headSize = headSize ?? hiddenSize / heads;
        long inner = heads * this.headSize;
        W_q = ModelConstruction.Linear(hiddenSize, inner, hasBias: bias);
        W_k = ModelConstruction.Linear(hiddenSize, inner, hasBias: bias);
        W_v = ModelConstruction.Linear(hiddenSize, inner, hasBias: bias);
        W_o = ModelConstruction.Linear(inner, hiddenSize, hasBias: bias);
        this.dropout = new PackedDropout(dropout);
        RegisterComponents();
    }

    /// <summary>Number of heads.</summary>
    internal int Heads => heads;

    /// <summary>Width of one head.</summary>
    internal long HeadSize => headSize;

    internal (Tensor Weight, Tensor? Bias) Query => (W_q.weight!, W_q.bias);
    internal (Tensor Weight, Tensor? Bias) Key => (W_k.weight!, W_k.bias);
    internal (Tensor Weight, Tensor? Bias) Value => (W_v.weight!, W_v.bias);
    internal (Tensor Weight, Tensor? Bias) Output => (W_o.weight!, W_o.bias);

    private Tensor SplitHeads(Tensor x)
    {
        using var view = x.reshape(x.shape[0], x.shape[1], heads, headSize);
        return view.transpose(1, 2);
    }

    /// <summary>Projects queries to (batch, heads, steps, head size).</summary>
    public Tensor ProjectQuery(Tensor x)
    {
        using var q = W_q.call(x);
        return SplitHeads(q);
    }

    /// <summary>Projects keys and values to (batch, heads, steps, head size) each.</summary>
    public (Tensor Keys, Tensor Values) ProjectKeyValue(Tensor keys, Tensor values)
    {
        using var k = W_k.call(keys);
        using var v = W_v.call(values);
        return (SplitHeads(k), SplitHeads(v));
    }

    /// <summary>Attention over already projected heads; returns the output projection, (batch, queries, hidden).</summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, Tensor? bias = null)
    {
        using var scope = NewDisposeScope();
        return Attend(q, k, v, mask, out _, bias).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attention over already projected heads; returns the output projection, (batch, queries, hidden), and the attention
    /// weights, (batch, heads, queries, keys) — before dropout, i.e. where each head looked. <paramref name="bias"/>, when
    /// given, is added to the scores ((1, heads, queries, keys): relative position biases).
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, out Tensor weights, Tensor? bias = null)
    {
        using var scope = NewDisposeScope();
        var scores = q.matmul(k.transpose(-2, -1));
        if (scaleScores) scores.div_(Math.Sqrt(headSize));
        if (bias is not null) scores.add_(bias);
        weights = AttentionMasks.MaskedSoftmax(scores, mask);
        var context = (training ? dropout.call(weights) : weights).matmul(v);   // (b, h, q, d)
        var merged = context.transpose(1, 2).reshape(context.shape[0], context.shape[2], heads * headSize);
        var output = W_o.call(merged);
        scope.MoveToOuter(output, weights);
        return output;
    }

    /// <summary>Full multi-head attention of <paramref name="queries"/> over <paramref name="keys"/>/<paramref name="values"/>.</summary>
    public override Tensor forward(Tensor queries, Tensor keys, Tensor values, Tensor? mask) => Forward(queries, keys, values, mask, null);

    /// <summary><see cref="forward"/> with a bias added to the scores (relative positions).</summary>
    public Tensor Forward(Tensor queries, Tensor keys, Tensor values, Tensor? mask, Tensor? bias)
    {
        using var q = ProjectQuery(queries);
        var (k, v) = ProjectKeyValue(keys, values);
        using (k)
        using (v)
            return Attend(q, k, v, mask, bias);
    }
}
