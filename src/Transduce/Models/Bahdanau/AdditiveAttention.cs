using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Bahdanau;

/// <summary>
/// Additive (Bahdanau) attention, d2l §11.3.2: score(q, k) = wᵥᵀ tanh(W_q q + W_k k).
/// </summary>
internal sealed class AdditiveAttention : nn.Module<Tensor, Tensor, Tensor, Tensor?, (Tensor Output, Tensor Weights)>
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
