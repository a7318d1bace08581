namespace Transduce.Translation;

/// <summary>Cross-attention weights of one translation, from the decoding that produced it.</summary>
/// <param name="SourceTokens">Source tokens, with the <c>&lt;eos&gt;</c> the encoder saw.</param>
/// <param name="TargetTokens">Output tokens, with the final <c>&lt;eos&gt;</c> when the output ended in one (one row per decoding step).</param>
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
