namespace Transduce.Evaluation;

/// <summary>
/// The simplified sentence BLEU of "Dive into Deep Learning" (§10.7, <c>d2l.bleu</c>):
/// <c>exp(min(0, 1 - len_label / len_pred)) · Π_{n=1..k} p_n^(1/2^n)</c>, where <c>p_n</c> is the number of
/// prediction n-grams found in the label (each label n-gram usable once) over <c>len_pred - n + 1</c>.
/// </summary>
/// <remarks>
/// Tokens are obtained by splitting on the single character U+0020, as Python's <c>str.split(' ')</c>: empty
/// tokens are kept, so an empty string is one (empty) token and the prediction length is never 0.
/// Like d2l's code, the product only runs up to <c>min(k, len_pred)</c>: orders longer than the prediction
/// contribute nothing (a factor of 1) instead of dividing by zero. This is the score for a one-token
/// prediction evaluated with k = 4, for example.
/// </remarks>
internal static class D2lBleu
{
    /// <summary>The d2l BLEU of <paramref name="prediction"/> against <paramref name="label"/>, in [0, 1].</summary>
    /// <param name="prediction">The predicted sequence, tokens separated by spaces.</param>
    /// <param name="label">The reference sequence, tokens separated by spaces.</param>
    /// <param name="k">Highest n-gram order, at least 1.</param>
    /// <returns>The score.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="k"/> is less than 1.</exception>
    public static double Score(string prediction, string label, int k)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        ArgumentNullException.ThrowIfNull(label);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);

        string[] pred = prediction.Split(' ');
        string[] lab = label.Split(' ');
        double score = Math.Exp(Math.Min(0.0, 1.0 - (double)lab.Length / pred.Length));
        int maxOrder = Math.Min(k, pred.Length);
        for (int n = 1; n <= maxOrder; n++)
        {
            var available = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + n <= lab.Length; i++)
            {
                string g = string.Join(' ', lab, i, n);
                available[g] = available.GetValueOrDefault(g) + 1;
            }
            int matches = 0;
            for (int i = 0; i + n <= pred.Length; i++)
            {
                string g = string.Join(' ', pred, i, n);
                if (available.GetValueOrDefault(g) > 0)
                {
                    matches++;
                    available[g]--;
                }
            }
            score *= Math.Pow((double)matches / (pred.Length - n + 1), Math.Pow(0.5, n));
        }
        return score;
    }
}
