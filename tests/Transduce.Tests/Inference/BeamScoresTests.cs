using Transduce.Inference;
using static TorchSharp.torch;

namespace Transduce.Tests.Inference;

/// <summary>Beam search's managed arithmetic over the vocabulary agrees with libtorch's log-softmax and with a plain sort.</summary>
public sealed class BeamScoresTests
{
    [Theory]
    [InlineData(3, 50)]
    [InlineData(300, 1003)]   // rows split over threads; a vocabulary that is not a multiple of the vector width
    public void LogSoftmaxEqualsLibtorchInFloat64(int rows, int vocabulary)
    {
        manual_seed(1);
        var logits = randn(rows, vocabulary) * 12;
        logits[0, 3] = float.NegativeInfinity;   // a banned logit: probability 0
        logits[rows - 1, 0] = 80;                // one dominant token
        using var expected = logits.to_type(ScalarType.Float64).log_softmax(-1);
        using var actual = BeamScores.LogSoftmax(logits);
        Assert.Equal(ScalarType.Float64, actual.dtype);
        Assert.True(double.IsNegativeInfinity(actual[0, 3].item<double>()));
        using var finite = expected.isfinite();
        double error = (expected - actual).masked_select(finite).abs().max().item<double>();
        Assert.True(error < 1e-12, $"max difference {error}");
    }

    [Theory]
    [InlineData(1, 4, 8, 40)]
    [InlineData(5, 3, 6, 37)]
    [InlineData(2, 2, 4, 3)]    // fewer finite continuations than the width
    public void BestIsTheTopOfTheSortedContinuations(int sentences, int beams, int width, int vocabulary)
    {
        var random = new Random(sentences * 100 + vocabulary);
        int rows = sentences * beams;
        // Coarse values: many exact ties, which must come in the order of beam, then token.
        var logProbs = new double[rows * vocabulary];
        for (int i = 0; i < logProbs.Length; i++) logProbs[i] = random.Next(8) == 0 ? double.NegativeInfinity : -random.Next(12) * 0.5;
        var scores = Enumerable.Range(0, rows).Select(r => r % beams == beams - 1 ? double.NegativeInfinity : -random.Next(4) * 0.5).ToArray();
        using var table = tensor(logProbs, [rows, vocabulary]);
        var (values, indices) = BeamScores.Best(table, scores, sentences, beams, width);
        for (int s = 0; s < sentences; s++)
        {
            var expected = Enumerable.Range(0, beams * vocabulary)
                .Select(flat => (Value: scores[s * beams + flat / vocabulary] + logProbs[(s * beams + flat / vocabulary) * vocabulary + flat % vocabulary], Flat: (long)flat))
                .Where(c => !double.IsNegativeInfinity(c.Value))
                .OrderByDescending(c => c.Value).ThenBy(c => c.Flat)
                .Take(width).ToList();
            for (int c = 0; c < width; c++)
            {
                if (c < expected.Count)
                {
                    Assert.Equal(expected[c].Value, values[s * width + c]);
                    Assert.Equal(expected[c].Flat, indices[s * width + c]);
                }
                else Assert.True(double.IsNegativeInfinity(values[s * width + c]));
            }
        }
    }
}
