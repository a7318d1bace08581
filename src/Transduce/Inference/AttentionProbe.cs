using Transduce.Architecture;
using Transduce.Data;
using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>Cross-attention weights of one translation.</summary>
/// <param name="SourceTokens">Source tokens, with the <c>&lt;eos&gt;</c> the encoder saw.</param>
/// <param name="TargetTokens">Output tokens, with the final <c>&lt;eos&gt;</c> (one row per decoding step).</param>
/// <param name="Weights">[layer][head, target step, source step].</param>
public sealed record AttentionMap(IReadOnlyList<string> SourceTokens, IReadOnlyList<string> TargetTokens, IReadOnlyList<float[,,]> Weights)
{
    /// <summary>Weights of one layer averaged over heads (or of one head), [target step, source step].</summary>
    public float[,] Select(int layer = -1, int? head = null)
    {
        var w = Weights[layer < 0 ? Weights.Count + layer : layer];
        int heads = w.GetLength(0), rows = w.GetLength(1), cols = w.GetLength(2);
        var result = new float[rows, cols];
        for (int h = 0; h < heads; h++)
        {
            if (head is int only && only != h) continue;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                    result[i, j] += w[h, i, j] / (head is null ? heads : 1);
        }
        return result;
    }
}

/// <summary>
/// Reads the cross-attention a decoder paid while producing a translation: the translation is fed back
/// teacher-forced (in eval mode the decoder is deterministic and causal, so each step sees exactly what it
/// saw during the search) while the decoder records its weights.
/// </summary>
internal static class AttentionProbe
{
    /// <summary>
    /// Returns per-layer weights (heads, output length + 1, source length) for one sentence, or null when the
    /// model's decoder does not expose attention (<see cref="IAttentionCapture"/>).
    /// </summary>
    public static IReadOnlyList<float[,,]>? CrossAttention(EncoderDecoder model, Tensor source, Tensor validLengths, int[] output, SpecialIds ids)
    {
        var decoder = model.Apply(new DecoderOf());
        if (decoder is not IAttentionCapture capture) return null;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var input = tensor(new long[] { ids.Bos }.Concat(output.Select(t => (long)t)).ToArray(), [1, output.Length + 1]);
        capture.ClearCapturedAttention();
        capture.CaptureAttention = true;
        try
        {
            model.call(source, validLengths, input);
            var layers = capture.CapturedCrossAttention;
            var result = new List<float[,,]>();
            foreach (var layer in layers)
            {
                var w = layer[0].to(ScalarType.Float32).contiguous();   // (heads, target, source)
                int heads = (int)w.shape[0], rows = (int)w.shape[1], cols = (int)w.shape[2];
                var flat = w.data<float>().ToArray();
                var array = new float[heads, rows, cols];
                Buffer.BlockCopy(flat, 0, array, 0, flat.Length * sizeof(float));
                result.Add(array);
            }
            return result;
        }
        finally
        {
            capture.CaptureAttention = false;
            capture.ClearCapturedAttention();
        }
    }

    /// <summary>True when <paramref name="model"/>'s decoder exposes its cross-attention.</summary>
    public static bool Supports(EncoderDecoder model) => model.Apply(new DecoderOf()) is IAttentionCapture;

    private sealed class DecoderOf : IEncoderDecoderFunc<object>
    {
        public object Invoke<TState>(EncoderDecoder<TState> model) where TState : IDecoderState => model.Decoder;
    }
}
