using Transduce.Architecture;
using Transduce.Inference;
using static TorchSharp.torch;

namespace Transduce.Bench;

/// <summary>
/// Makes every output exactly as long as its limit: <c>&lt;eos&gt;</c> gets logit −∞ until <c>minTokens</c> tokens have been
/// emitted, and the search's own limit (set to the same number) ends it there. A benchmark on random weights thus decodes
/// a known number of steps per sentence, the same in the PyTorch twin (bench/pytorch/infer_twin.py, <c>FixedLength</c>),
/// which bans it in the logits, before any softmax, as this does. The searches are untouched: the wrapper decodes like any model.
/// </summary>
internal static class FixedLength
{
    /// <summary>A view of <paramref name="model"/> (sharing its modules: do not dispose it) whose outputs are never shorter than <paramref name="minTokens"/>.</summary>
    public static EncoderDecoder Of(EncoderDecoder model, int eos, int minTokens) =>
        new DecodingView(model, "fixed-length", (source, lengths, recompute) =>
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            var decoding = model.BeginDecoding(source, lengths, recompute);
            beginTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
            return new Decoding(decoding, eos, minTokens);
        });

    [ThreadStatic] private static long beginTicks;

    /// <summary>Seconds this thread has spent so far starting decodings through these views: the encoder and the decoder's
    /// initial state (each layer's cross-attention keys and values).</summary>
    public static double BeginSeconds => (double)beginTicks / System.Diagnostics.Stopwatch.Frequency;

    /// <summary>The wrapped decoding, with <c>&lt;eos&gt;</c> banned from the logits of the first <c>minTokens</c> steps.</summary>
    private sealed class Decoding(IncrementalDecoding inner, int eos, int minTokens) : IncrementalDecoding
    {
        private int steps;

        public override long Rows => inner.Rows;

        public override DecodingStep Step(Tensor tokens, bool crossAttention = false)
        {
            var step = inner.Step(tokens, crossAttention);
            if (steps++ < minTokens)
            {
                using var eosColumn = step.Logits.select(-1, eos);
                eosColumn.fill_(float.NegativeInfinity);
            }
            return step;
        }

        public override void SelectRows(Tensor rows) => inner.SelectRows(rows);

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
