using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>
/// Beam search's arithmetic over the vocabulary, in managed code: the log-softmax of every row's logits in float64, and per
/// sentence the best continuations of its beams. Through libtorch the same work was five passes over a (rows × vocabulary)
/// float64 tensor per step — a conversion, the log-softmax, the beam scores added, a top-k over k × vocabulary — and a
/// third of a batch-64 step at an 8,000-word vocabulary. Here the log-softmax is one pass over the logits and one write
/// (with AVX-512; libtorch's otherwise), rows split over the libtorch threads, and the selection reads the log-probabilities
/// once, looking closer only at blocks holding a candidate that can still enter the best few. The values differ from
/// libtorch's float64 log-softmax in the last bits at most (another order of summation, another exponential).
/// </summary>
internal static unsafe class BeamScores
{
    // Below this many logits one thread does the work: a parallel loop costs more than it saves.
    private const long ParallelFrom = 1 << 16;

    /// <summary>
    /// log softmax of each row of <paramref name="logits"/> (rows, vocabulary), computed in float64 from the float32 values:
    /// <c>(x − max) − log Σ exp(x − max)</c>. A new (rows, vocabulary) float64 CPU tensor.
    /// </summary>
    public static Tensor LogSoftmax(Tensor logits)
    {
        if (logits.dim() != 2) throw new ArgumentException("logits must be (rows, vocabulary)", nameof(logits));
        using var source = logits.device_type == DeviceType.CPU && logits.dtype == ScalarType.Float32 && logits.is_contiguous()
            ? logits.alias()
            : logits.to(ScalarType.Float32, CPU).contiguous();
        // Without 512-bit vectors libtorch computes it (the managed exponential below is written for AVX-512 only).
        if (!Vector512.IsHardwareAccelerated) return source.to_type(ScalarType.Float64).log_softmax(-1);
        long rows = source.shape[0], vocabulary = source.shape[1];
        var result = empty(rows, vocabulary, ScalarType.Float64);
        if (rows == 0 || vocabulary == 0) return result;
        fixed (byte* from = source.bytes, to = result.bytes)
        {
            float* x = (float*)from;
            double* y = (double*)to;
            Rows(rows, rows * vocabulary, r => LogSoftmaxRow(x + r * vocabulary, y + r * vocabulary, (int)vocabulary));
        }
        return result;
    }

    /// <summary>
    /// For each of <paramref name="sentences"/> sentences, whose <paramref name="beams"/> consecutive rows of
    /// <paramref name="logProbs"/> (float64, (sentences · beams, vocabulary)) continue hypotheses scoring
    /// <paramref name="rowScores"/>, the best <paramref name="width"/> of the beams × vocabulary continuations
    /// <c>rowScores[j] + logProbs[j, v]</c>, best first; equal scores in the order of <c>j · vocabulary + v</c>. Returns the
    /// values and those flat indices, <paramref name="width"/> per sentence (−∞ where fewer continuations are possible).
    /// </summary>
    public static (double[] Values, long[] Indices) Best(Tensor logProbs, double[] rowScores, int sentences, int beams, int width)
    {
        if (logProbs.dim() != 2) throw new ArgumentException("log-probabilities must be (rows, vocabulary)", nameof(logProbs));
        using var dense = logProbs.to(ScalarType.Float64, CPU).contiguous(); // the rules' output as it is (an alias) unless they moved it
        long vocabulary = logProbs.shape[1];
        if (logProbs.shape[0] != (long)sentences * beams || rowScores.Length != sentences * beams)
            throw new ArgumentException("one row and one score per beam of each sentence are required");
        var values = new double[sentences * width];
        var indices = new long[sentences * width];
        Array.Fill(values, double.NegativeInfinity);
        fixed (byte* data = dense.bytes)
        {
            double* lp = (double*)data;
            Rows(sentences, logProbs.shape[0] * vocabulary, s =>
            {
                var best = new Span<double>(values, (int)s * width, width);
                var at = new Span<long>(indices, (int)s * width, width);
                int filled = 0;
                for (int j = 0; j < beams; j++)
                {
                    int row = (int)s * beams + j;
                    double score = rowScores[row];
                    if (double.IsNegativeInfinity(score)) continue;
                    filled = Scan(lp + row * vocabulary, (int)vocabulary, score, (long)j * vocabulary, best, at, filled);
                }
            });
        }
        return (values, indices);
    }

    /// <summary>Adds the row's continuations <c>score + row[v]</c> that beat the current worst to the sorted list.</summary>
    private static int Scan(double* row, int vocabulary, double score, long offset, Span<double> best, Span<long> at, int filled)
    {
        int width = best.Length;
        double worst = filled == width ? best[width - 1] : double.NegativeInfinity;
        int v = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var add = Vector512.Create(score);
            for (; v + 8 <= vocabulary; v += 8)
            {
                // Only blocks with a candidate that beats the worst kept one (or any finite one while the list fills) are looked at.
                var sums = Vector512.Load(row + v) + add;
                if (filled == width ? Vector512.GreaterThanAny(sums, Vector512.Create(worst)) : !Vector512.EqualsAll(sums, Vector512.Create(double.NegativeInfinity)))
                    for (int i = 0; i < 8; i++) Insert(score + row[v + i], offset + v + i, best, at, ref filled, ref worst);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var add = Vector256.Create(score);
            for (; v + 4 <= vocabulary; v += 4)
            {
                var sums = Vector256.Load(row + v) + add;
                if (filled == width ? Vector256.GreaterThanAny(sums, Vector256.Create(worst)) : !Vector256.EqualsAll(sums, Vector256.Create(double.NegativeInfinity)))
                    for (int i = 0; i < 4; i++) Insert(score + row[v + i], offset + v + i, best, at, ref filled, ref worst);
            }
        }
        for (; v < vocabulary; v++) Insert(score + row[v], offset + v, best, at, ref filled, ref worst);
        return filled;
    }

    // Keeps best[0..filled) sorted, highest first; a value equal to one kept goes after it (earlier indices first).
    private static void Insert(double value, long index, Span<double> best, Span<long> at, ref int filled, ref double worst)
    {
        int width = best.Length;
        if (double.IsNegativeInfinity(value) || double.IsNaN(value) || (filled == width && !(value > worst))) return;
        int i = filled == width ? width - 1 : filled++;
        while (i > 0 && best[i - 1] < value)
        {
            best[i] = best[i - 1];
            at[i] = at[i - 1];
            i--;
        }
        best[i] = value;
        at[i] = index;
        if (filled == width) worst = best[width - 1];
    }

    // One row; the caller has checked that 512-bit vectors are accelerated.
    private static void LogSoftmaxRow(float* x, double* y, int n)
    {
        float max = float.NegativeInfinity;
        int i = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var m = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16) m = Vector512.Max(m, Vector512.Load(x + i));
            for (int lane = 0; lane < 16; lane++) max = Math.Max(max, m[lane]);
        }
        for (; i < n; i++) max = Math.Max(max, x[i]);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max))
        {
            // Every logit −∞ (or a NaN): nothing to normalise; log softmax as libtorch gives it.
            new Span<double>(y, n).Fill(double.NaN);
            return;
        }
        double top = max, sum = 0;
        i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var m = Vector512.Create(top);
            var total = Vector512<double>.Zero;
            for (; i + 8 <= n; i += 8)
            {
                var (lower, _) = Vector512.Widen(Vector256.Load(x + i).ToVector512());
                total += ExpNonPositive(lower - m);
            }
            sum = Vector512.Sum(total);
        }
        for (; i < n; i++) sum += Math.Exp(x[i] - top);
        double log = Math.Log(sum);
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<double> m = Vector512.Create(top), l = Vector512.Create(log);
            for (; j + 8 <= n; j += 8)
            {
                var (lower, _) = Vector512.Widen(Vector256.Load(x + j).ToVector512());
                ((lower - m) - l).Store(y + j);
            }
        }
        for (; j < n; j++) y[j] = (x[j] - top) - log;
    }

    // exp(x) for x ≤ 0 (a logit minus the row's maximum), to within a few units in the last place: .NET's Vector512.Exp
    // for doubles runs about 10 ns an element here, slower than the rest of the step's arithmetic over the vocabulary.
    // x = k·ln 2 + r with |r| ≤ ln 2 / 2, exp(r) by its Taylor series to r¹³ (error below 10⁻¹⁷), times 2^k built
    // from its exponent bits; below −708 the result underflows to 0 (−∞ included, for banned logits).
    private static Vector512<double> ExpNonPositive(Vector512<double> x)
    {
        // Round to nearest by adding 1.5 · 2^52 (Vector512.Round is not accelerated for doubles: 60 ns a vector here); the
        // low bits of the sum are then k itself.
        var magic = Vector512.Create(6755399441055744.0);
        var shifted = Vector512.FusedMultiplyAdd(x, Vector512.Create(1.4426950408889634), magic);
        var k = shifted - magic;
        var r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-6.93147180369123816490e-01), x);
        r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-1.90821492927058770002e-10), r);
        var p = Vector512.Create(1.0 / 6227020800.0);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 479001600.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 39916800.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 3628800.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 362880.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 40320.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 5040.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 720.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 120.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 24.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.0 / 6.0));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<double>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<double>.One);
        var tiny = Vector512.LessThan(x, Vector512.Create(-708.0));
        var scale = (shifted.AsInt64() - magic.AsInt64() + Vector512.Create(1023L)) << 52;
        return Vector512.ConditionalSelect(tiny, Vector512<double>.Zero, p * scale.AsDouble());
    }

    // Runs body(0 … count − 1), on the libtorch intra-op threads' number of workers when the work is large enough.
    private static void Rows(long count, long elements, Action<long> body)
    {
        int threads = Math.Max(1, get_num_threads());
        if (threads == 1 || count < 2 || elements < ParallelFrom)
        {
            for (long r = 0; r < count; r++) body(r);
            return;
        }
        Parallel.For(0L, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }
}
