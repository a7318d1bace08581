using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>How <see cref="PositionalEncoding"/> lays out the sines and cosines of its d/2 frequencies.</summary>
internal enum SinusoidLayout
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
internal sealed class PositionalEncoding : nn.Module<Tensor, long, Tensor>
{
    private readonly PackedDropout dropout;
    private readonly Tensor table;

    /// <summary>Creates a table for <paramref name="maxPositions"/> positions of width <paramref name="hiddenSize"/>.</summary>
    /// <param name="hiddenSize">Model width.</param>
    /// <param name="dropout">Dropout after the addition.</param>
    /// <param name="maxPositions">Rows of the table.</param>
    /// <param name="layout">Column layout; the default is d2l's interleaving.</param>
    public PositionalEncoding(long hiddenSize, double dropout, long maxPositions, SinusoidLayout layout = SinusoidLayout.Interleaved)
        : base(nameof(PositionalEncoding))
    {
        this.dropout = new PackedDropout(dropout);
        using var scope = NewDisposeScope();
        table = (layout == SinusoidLayout.Halves ? HalvesTable(hiddenSize, maxPositions) : InterleavedTable(hiddenSize, maxPositions))
            .unsqueeze(0).MoveToOuterDisposeScope();
        register_buffer("P", table, persistent: false);
        RegisterComponents();
    }

    /// <summary>The encodings, (1, max positions, hidden).</summary>
    internal Tensor Table => table;

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
