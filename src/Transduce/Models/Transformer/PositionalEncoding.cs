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

    /// <summary>
    /// fairseq's (M2M100, NLLB; transformers' <c>M2M100SinusoidalPositionalEmbedding</c>): sines of the d/2 frequencies
    /// ωᵢ = exp(−i · ln 10000 / (d/2 − 1)) in the first half of the columns, their cosines in the second, a zero last column
    /// when d is odd, computed in float32 as fairseq does. Row r is position r of the table: models that number positions
    /// from the padding id + 1 read it with a <see cref="TransformerSpec.PositionOffset"/> of padding id + 1.
    /// </summary>
    Fairseq,
}

/// <summary>
/// Absolute positions of a <see cref="TransformerSpec"/>, added to the (scaled) embeddings: a fixed sinusoid table
/// (d2l §11.6: P[pos, 2i] = sin(pos / 10000^(2i/d)), P[pos, 2i+1] = cos(…), or Marian's <see cref="SinusoidLayout.Halves"/>),
/// a learned table (parameter <c>weight</c>), or nothing. Position p reads row p + <see cref="TransformerSpec.PositionOffset"/>.
/// Dropout is the caller's (after an embedding norm, where a model has one).
/// </summary>
internal sealed class PositionalEncoding : nn.Module<Tensor, long, Tensor>
{
    // Field names are parameter names: checkpoints store a sinusoid table as 'positions.table', (1, rows, hidden).
    private readonly Tensor? table;
    private readonly TorchSharp.Modules.Parameter? weight;
    private readonly int offset;

    /// <summary>Creates the positions <paramref name="spec"/> describes.</summary>
    public PositionalEncoding(TransformerSpec spec) : base(nameof(PositionalEncoding))
    {
        offset = spec.PositionOffset;
        Positions = spec.MaxPositions;
        using var scope = NewDisposeScope();
        switch (spec.Positions)
        {
            case PositionKind.Sinusoidal:
                table = (spec.SinusoidLayout switch
                {
                    SinusoidLayout.Halves => HalvesTable(spec.Hidden, spec.PositionRows),
                    SinusoidLayout.Fairseq => FairseqTable(spec.Hidden, spec.PositionRows),
                    _ => InterleavedTable(spec.Hidden, spec.PositionRows),
                }).unsqueeze(0).MoveToOuterDisposeScope();
                register_buffer("P", table, persistent: false);
                break;
            case PositionKind.Learned:
                weight = new TorchSharp.Modules.Parameter(empty(spec.PositionRows, spec.Hidden, device: ModelConstruction.ParameterDevice));
                using (no_grad()) nn.init.normal_(weight, 0, Math.Pow(spec.Hidden, -0.5));
                weight.MoveToOuterDisposeScope();
                break;
            case PositionKind.None:
            case PositionKind.RelativeBuckets: // no absolute table: the attention's relative bias encodes order
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(spec), spec.Positions, "unknown position kind");
        }
        RegisterComponents();
    }

    /// <summary>Positions a sequence may take.</summary>
    public int Positions { get; }

    /// <summary>The rows positions 0 … <see cref="Positions"/> − 1 read, (positions, hidden) (a view), or null without positions.</summary>
    internal Tensor? Rows => (weight ?? table?[0])?.narrow(0, offset, Positions);

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

    private static Tensor FairseqTable(long hiddenSize, long rows)
    {
        // float32 throughout, in fairseq's order of operations, so the table is the one transformers computes.
        long half = hiddenSize / 2;
        var frequencies = arange(half, ScalarType.Float32).mul_(-Math.Log(10000) / Math.Max(1, half - 1)).exp_();
        var angles = arange(rows, ScalarType.Float32).unsqueeze(1) * frequencies.unsqueeze(0);   // (rows, d/2)
        var table = cat([angles.sin(), angles.cos()], 1);
        return hiddenSize % 2 == 1 ? cat([table, zeros(rows, 1)], 1) : table;
    }

    /// <summary>Adds the positions <paramref name="start"/> … start + steps − 1 to <paramref name="x"/> (batch, steps, hidden), in place.</summary>
    public override Tensor forward(Tensor x, long start)
    {
        long steps = x.shape[1];
        if (start + steps > Positions)
            throw new ArgumentException($"sequence of {start + steps} positions exceeds the positional table ({Positions}); raise max_positions");
        if (weight is not null)
        {
            using var rows = weight.narrow(0, offset + start, steps);
            return x.add_(rows);
        }
        if (table is null) return x;
        using var slice = table.narrow(1, offset + start, steps);
        return x.add_(slice);
    }
}
