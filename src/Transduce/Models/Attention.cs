using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>Attention building blocks of d2l §11.1–11.6.</summary>
public static class AttentionMasks
{
    /// <summary>
    /// A key mask from valid lengths: <c>true</c> where key j &lt; valid length of the row.
    /// Shape (batch, 1, 1, keys), broadcastable over heads and queries.
    /// </summary>
    public static Tensor FromValidLengths(Tensor validLengths, long keys)
    {
        using var positions = arange(keys, ScalarType.Int64, validLengths.device);
        using var lengths = validLengths.to(ScalarType.Int64).reshape(-1, 1, 1, 1);
        return positions.reshape(1, 1, 1, keys).lt(lengths);
    }

    /// <summary>
    /// The causal mask of a decoder: query i (at absolute position <paramref name="offset"/> + i) sees keys 0 … offset + i.
    /// Shape (1, 1, queries, offset + queries).
    /// </summary>
    public static Tensor Causal(long queries, long offset, Device? device = null)
    {
        long keys = offset + queries;
        using var q = arange(offset, keys, ScalarType.Int64, device).reshape(queries, 1);
        using var k = arange(keys, ScalarType.Int64, device).reshape(1, keys);
        using var mask = k.le(q);
        return mask.reshape(1, 1, queries, keys);
    }

    /// <summary>
    /// Masked softmax over the last axis (d2l §11.3): masked-out positions get exactly zero weight.
    /// </summary>
    /// <param name="scores">(…, queries, keys).</param>
    /// <param name="mask">Broadcastable boolean mask, <c>true</c> = keep; null for none.</param>
    public static Tensor MaskedSoftmax(Tensor scores, Tensor? mask)
    {
        if (mask is null) return nn.functional.softmax(scores, -1);
        // -inf gives exp(…) = 0 exactly; every row keeps at least one key (<eos>, or itself under the causal mask).
        using var filled = scores.masked_fill(mask.logical_not(), float.NegativeInfinity);
        return nn.functional.softmax(filled, -1);
    }
}

/// <summary>
/// Additive (Bahdanau) attention, d2l §11.3.2: score(q, k) = wᵥᵀ tanh(W_q q + W_k k).
/// </summary>
public sealed class AdditiveAttention : nn.Module<Tensor, Tensor, Tensor, Tensor?, (Tensor Output, Tensor Weights)>
{
    private readonly Linear W_k, W_q, w_v;
    private readonly Dropout dropout;

    /// <summary>Creates the module.</summary>
    public AdditiveAttention(long querySize, long keySize, long hiddenSize, double dropout) : base(nameof(AdditiveAttention))
    {
        W_k = nn.Linear(keySize, hiddenSize, hasBias: false);
        W_q = nn.Linear(querySize, hiddenSize, hasBias: false);
        w_v = nn.Linear(hiddenSize, 1, hasBias: false);
        this.dropout = nn.Dropout(dropout);
        RegisterComponents();
    }

    /// <summary>Attends <paramref name="queries"/> (batch, q, dq) over keys/values (batch, k, dk/dv) with mask (batch, 1, 1, k) or null.</summary>
    public override (Tensor Output, Tensor Weights) forward(Tensor queries, Tensor keys, Tensor values, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var q = W_q.call(queries).unsqueeze(2);          // (b, q, 1, h)
        var k = W_k.call(keys).unsqueeze(1);             // (b, 1, k, h)
        var features = (q + k).tanh();
        var scores = w_v.call(features).squeeze(-1);     // (b, q, k)
        var weights = AttentionMasks.MaskedSoftmax(scores, mask?.squeeze(1));
        var output = dropout.call(weights).bmm(values);
        return scope.MoveToOuter(output, weights);
    }
}

/// <summary>
/// Multi-head scaled dot-product attention (d2l §11.5): heads attend in parallel over projected queries,
/// keys and values; their outputs are concatenated and projected. The projections are exposed separately
/// so that decoders can cache projected keys and values across decoding steps.
/// </summary>
public sealed class MultiHeadAttention : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    private readonly Linear W_q, W_k, W_v, W_o;
    private readonly Dropout dropout;
    private readonly int heads;
    private readonly long headSize;

    /// <summary>Creates the module.</summary>
    /// <param name="hiddenSize">Model width (divisible by <paramref name="heads"/>).</param>
    /// <param name="heads">Number of heads.</param>
    /// <param name="dropout">Dropout on the attention weights.</param>
    /// <param name="bias">Whether the four projections have biases (d2l: no; Marian: yes).</param>
    public MultiHeadAttention(long hiddenSize, int heads, double dropout, bool bias) : base(nameof(MultiHeadAttention))
    {
        if (hiddenSize % heads != 0) throw new ArgumentException($"model config: hidden size {hiddenSize} is not divisible by {heads} heads");
        this.heads = heads;
        headSize = hiddenSize / heads;
        W_q = nn.Linear(hiddenSize, hiddenSize, hasBias: bias);
        W_k = nn.Linear(hiddenSize, hiddenSize, hasBias: bias);
        W_v = nn.Linear(hiddenSize, hiddenSize, hasBias: bias);
        W_o = nn.Linear(hiddenSize, hiddenSize, hasBias: bias);
        this.dropout = nn.Dropout(dropout);
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

    /// <summary>When true, <see cref="LastWeights"/> keeps the attention weights of the latest call.</summary>
    public bool CaptureWeights { get; set; }

    /// <summary>Attention weights (batch, heads, queries, keys) of the latest call while <see cref="CaptureWeights"/> is on.</summary>
    public Tensor? LastWeights { get; private set; }

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
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var scores = q.matmul(k.transpose(-2, -1)).div_(Math.Sqrt(headSize));
        var weights = AttentionMasks.MaskedSoftmax(scores, mask);
        if (CaptureWeights)
        {
            LastWeights?.Dispose();
            LastWeights = weights.detach().clone().DetachFromDisposeScope();
        }
        var context = (training ? dropout.call(weights) : weights).matmul(v);   // (b, h, q, d)
        var merged = context.transpose(1, 2).reshape(context.shape[0], context.shape[2], heads * headSize);
        return W_o.call(merged).MoveToOuterDisposeScope();
    }

    /// <summary>Full multi-head attention of <paramref name="queries"/> over <paramref name="keys"/>/<paramref name="values"/>.</summary>
    public override Tensor forward(Tensor queries, Tensor keys, Tensor values, Tensor? mask)
    {
        using var q = ProjectQuery(queries);
        var (k, v) = ProjectKeyValue(keys, values);
        using (k)
        using (v)
            return Attend(q, k, v, mask);
    }

    /// <summary>Releases the captured weights.</summary>
    public void ClearCapturedWeights()
    {
        LastWeights?.Dispose();
        LastWeights = null;
    }
}

/// <summary>How <see cref="PositionalEncoding"/> lays out the sines and cosines of its d/2 frequencies.</summary>
public enum SinusoidLayout
{
    /// <summary>d2l §11.6 / Vaswani et al.: column 2i holds sin(pos·ωᵢ), column 2i+1 holds cos(pos·ωᵢ).</summary>
    Interleaved,

    /// <summary>
    /// Marian (and Hugging Face's <c>MarianSinusoidalPositionalEmbedding</c>): columns 0 … ⌈d/2⌉−1 hold sin(pos·ωᵢ),
    /// the remaining columns cos(pos·ωᵢ), with the same frequencies ωᵢ = 10000^(−2i/d).
    /// </summary>
    Halves,
}

/// <summary>
/// Sinusoidal positional encoding (d2l §11.6): P[pos, 2i] = sin(pos / 10000^(2i/d)), P[pos, 2i+1] = cos(…),
/// added to the (scaled) embeddings, followed by dropout. <see cref="SinusoidLayout.Halves"/> puts the same values
/// in Marian's column order instead.
/// </summary>
public sealed class PositionalEncoding : nn.Module<Tensor, long, Tensor>
{
    private readonly Dropout dropout;
    private readonly Tensor table;

    /// <summary>Creates a table for <paramref name="maxPositions"/> positions of width <paramref name="hiddenSize"/>.</summary>
    /// <param name="hiddenSize">Model width.</param>
    /// <param name="dropout">Dropout after the addition.</param>
    /// <param name="maxPositions">Rows of the table.</param>
    /// <param name="layout">Column layout; the default is d2l's interleaving.</param>
    public PositionalEncoding(long hiddenSize, double dropout, long maxPositions, SinusoidLayout layout = SinusoidLayout.Interleaved)
        : base(nameof(PositionalEncoding))
    {
        this.dropout = nn.Dropout(dropout);
        using var scope = NewDisposeScope();
        table = (layout == SinusoidLayout.Halves ? HalvesTable(hiddenSize, maxPositions) : InterleavedTable(hiddenSize, maxPositions))
            .unsqueeze(0).MoveToOuterDisposeScope();
        register_buffer("P", table, persistent: false);
        RegisterComponents();
    }

    private static Tensor InterleavedTable(long hiddenSize, long maxPositions)
    {
        var position = arange(maxPositions, ScalarType.Float32).reshape(-1, 1);
        var div = pow(10000f, arange(0, hiddenSize, 2, ScalarType.Float32) / hiddenSize);
        var angles = position / div;                                     // (positions, d/2)
        var p = zeros(maxPositions, hiddenSize);
        p[.., TensorIndex.Slice(0, null, 2)] = angles.sin();
        p[.., TensorIndex.Slice(1, null, 2)] = angles.cos()[.., TensorIndex.Slice(0, hiddenSize / 2)];
        return p;
    }

    private static Tensor HalvesTable(long hiddenSize, long maxPositions)
    {
        // Computed in float64 and rounded once, as the reference implementation does (NumPy, then float32).
        long sines = (hiddenSize + 1) / 2, cosines = hiddenSize / 2;
        var position = arange(maxPositions, ScalarType.Float64).reshape(-1, 1);
        var exponents = arange(0, sines, ScalarType.Float64).mul_(2.0 / hiddenSize);
        var angles = position / pow(10000.0, exponents);                  // (positions, ⌈d/2⌉)
        var cos = angles.narrow(1, 0, cosines).cos();
        return cat([angles.sin(), cos], 1).to_type(ScalarType.Float32);
    }

    /// <summary>Adds the encodings of positions <paramref name="offset"/> … offset + steps − 1 to <paramref name="x"/> (batch, steps, hidden).</summary>
    public override Tensor forward(Tensor x, long offset)
    {
        long steps = x.shape[1];
        if (offset + steps > table.shape[1])
            throw new ArgumentException($"sequence of {offset + steps} positions exceeds the positional table ({table.shape[1]}); raise max_positions");
        using var slice = table.narrow(1, offset, steps);
        var sum = x + slice;
        if (!training) return sum;
        using (sum) return dropout.call(sum);
    }
}
