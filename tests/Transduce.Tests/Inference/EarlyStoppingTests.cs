using Transduce.Architecture;
using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Tests.Inference;

/// <summary>
/// transformers' <c>early_stopping</c> rules on a language model whose next-token probabilities are written down by
/// hand, so that the expected beams can be worked out on paper (see each test).
/// </summary>
public sealed class EarlyStoppingTests
{
    internal const int Pad = 0, Bos = 1, Eos = 2, A = 3, B = 4, Vocab = 5;

    // Scores are compared to 6 places: the scripted logits pass through float32.

    /// <summary>
    /// P(next | generated tokens): from nothing, eos .5, a .3, b .2; after [a]: eos .5, a .45; after [b]: a .9, eos .1;
    /// after [b a]: eos .95; anything else: eos .5, a .25, b .25. The rest of the mass goes to pad and bos, which are banned.
    /// </summary>
    private static double[] Script(IReadOnlyList<int> generated) => string.Join(' ', generated) switch
    {
        "" => Probabilities(eos: .5, a: .3, b: .2),
        "3" => Probabilities(eos: .5, a: .45, b: .04),
        "4" => Probabilities(eos: .1, a: .89, b: .005),
        "4 3" => Probabilities(eos: .95, a: .02, b: .02),
        _ => Probabilities(eos: .5, a: .25, b: .24),
    };

    internal static double[] Probabilities(double eos, double a, double b)
    {
        double rest = (1 - eos - a - b) / 2;
        return [rest, rest, eos, a, b];
    }

    private static IReadOnlyList<Hypothesis> Search(EarlyStopping rule, int maxLength = 6) => SearchCounting(rule, maxLength).Result;

    /// <summary>Beam 2, α = 1, pad and bos banned; also returns how many decoder steps the search ran.</summary>
    private static (IReadOnlyList<Hypothesis> Result, int Steps) SearchCounting(EarlyStopping rule, int maxLength = 6, int beam = 2)
    {
        var decoder = new ScriptedDecoder(Script);
        using var model = new EncoderDecoder<PrefixState>("scripted", new NullEncoder(), decoder);
        using var source = zeros([1, 1], ScalarType.Int64);
        using var lengths = ones([1], ScalarType.Int64);
        var options = new BeamSearchOptions
        {
            BeamSize = beam, NBest = beam, Normalization = LengthNormalization.HuggingFace, LengthPenalty = 1.0,
            BannedTokens = [Pad, Bos], EarlyStopping = rule,
        };
        var result = BeamSearch.Decode(model, source, lengths, new SpecialIds(Pad, Bos, Eos), [maxLength], options)[0];
        return (result, decoder.Steps);
    }

    [Fact]
    public void WhenFullStopsAtTheFirstBeamSizeFinishedHypotheses()
    {
        // Step 1: [eos] ranks first → finished [] scores ln .5 / 1 = −0.693; beams [a] (ln .3), [b] (ln .2).
        // Step 2: [b a] (−1.726), [a eos] (−1.897, rank 2 < k → finished [a]: −0.949). Two finished: done.
        var result = Search(EarlyStopping.WhenFull);
        Assert.Equal([[], [A]], result.Select(h => h.Tokens));
        Assert.Equal(Math.Log(.5), result[0].Score, 6);
        Assert.Equal((Math.Log(.3) + Math.Log(.5)) / 2, result[1].Score, 6);
    }

    [Fact]
    public void HeuristicSearchesOnWhileARunningBeamCouldStillWin()
    {
        // After step 2 the best running beam [b a] has ln(.2 × .89) = −1.726; divided by its length 2 that is −0.863,
        // above the worst finished score −0.949, so the search goes on (transformers' early_stopping=False) and finds
        // [b a eos]: ln(.2 × .89 × .95) / 3 = −0.593, better than []'s −0.693.
        var result = Search(EarlyStopping.Heuristic);
        Assert.Equal([B, A], result[0].Tokens);
        Assert.Equal((Math.Log(.2) + Math.Log(.89) + Math.Log(.95)) / 3, result[0].Score, 6);
        Assert.Equal([], result[1].Tokens);
    }

    [Fact]
    public void NeverJudgesRunningBeamsAtTheLongestLength()
    {
        // With a limit of 6 tokens (7 with eos), "never" divides the best running log-probability by 7 rather than by its
        // current length: after step 3 the heuristic stops (ln(.3 × .45 × .25) / 3 = −1.13 ≤ −0.693) while "never" goes on
        // (−3.389 / 7 = −0.48) for two more steps, without finding anything better here.
        var heuristic = SearchCounting(EarlyStopping.Heuristic);
        var never = SearchCounting(EarlyStopping.Never);
        Assert.Equal(3, heuristic.Steps);
        Assert.Equal(5, never.Steps);
        Assert.Equal(heuristic.Result, never.Result, HypothesisComparer.Instance);
        Assert.Equal(2, SearchCounting(EarlyStopping.WhenFull).Steps);
    }

    private sealed class HypothesisComparer : IEqualityComparer<Hypothesis>
    {
        public static readonly HypothesisComparer Instance = new();
        public bool Equals(Hypothesis? x, Hypothesis? y) => x!.Tokens.SequenceEqual(y!.Tokens) && x.Score == y.Score;
        public int GetHashCode(Hypothesis h) => h.Tokens.Length;
    }

    /// <summary>The prefix generated so far (with &lt;bos&gt; first), one row per hypothesis.</summary>
    internal sealed class PrefixState(Tensor prefix) : IDecoderState
    {
        public Tensor Prefix { get; } = prefix;
        public IEnumerable<Tensor> Tensors => [Prefix];
    }

    internal sealed class NullEncoder() : Encoder(nameof(NullEncoder))
    {
        public override EncoderOutput forward(Tensor source, Tensor validLengths) => new(source.to_type(ScalarType.Float32).unsqueeze(-1), null);
    }

    /// <summary>A decoder whose log-probabilities come from <c>script(generated tokens)</c>.</summary>
    internal sealed class ScriptedDecoder(Func<IReadOnlyList<int>, double[]> script) : Decoder<PrefixState>(nameof(ScriptedDecoder))
    {
        public int Steps { get; private set; }

        public override PrefixState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths) =>
            new(zeros([encoderOutput.Outputs.shape[0], 0], ScalarType.Int64));

        public override PrefixState SelectRows(PrefixState state, Tensor batchIndices) => new(state.Prefix.index_select(0, batchIndices));

        public override (Tensor Logits, PrefixState State) forward(Tensor x, PrefixState state)
        {
            Steps++;
            var prefix = cat([state.Prefix, x], 1);
            long rows = prefix.shape[0], steps = x.shape[1], known = state.Prefix.shape[1];
            var values = prefix.data<long>().ToArray();
            var logits = new float[rows * steps * Vocab];
            for (long r = 0; r < rows; r++)
                for (long t = 0; t < steps; t++)
                {
                    // Tokens after <bos> up to and including this position.
                    var generated = values.Skip((int)(r * prefix.shape[1] + 1)).Take((int)(known + t)).Select(v => (int)v).ToList();
                    var p = script(generated);
                    for (int v = 0; v < Vocab; v++) logits[(r * steps + t) * Vocab + v] = (float)Math.Log(p[v]);
                }
            return (tensor(logits, [rows, steps, Vocab]), new PrefixState(prefix));
        }
    }
}
