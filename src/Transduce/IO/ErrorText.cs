using System.Text;

namespace Transduce.IO;

/// <summary>Text from an untrusted file made fit for a one-line error message.</summary>
internal static class ErrorText
{
    /// <summary>
    /// <paramref name="text"/> on one line (line breaks and other control characters written as escapes) and at most
    /// <paramref name="max"/> characters: System.Text.Json's messages quote the offending input, which may span lines or be
    /// long, and an error must stay one line (a log reader, the CLI's <c>error:</c> line).
    /// </summary>
    public static string OneLine(string text, int max = 400)
    {
        var line = new StringBuilder(Math.Min(text.Length, max) + 8);
        foreach (char c in text)
        {
            if (line.Length >= max)
            {
                line.Append('…');
                break;
            }
            if (c == '\n') line.Append("\\n");
            else if (c == '\r') line.Append("\\r");
            else if (c == '\t') line.Append("\\t");
            else if (char.IsControl(c)) line.Append($"\\u{(int)c:x4}");
            else line.Append(c);
        }
        return line.ToString();
    }

    /// <summary>
    /// The first <paramref name="max"/> of <paramref name="problems"/> (a layer's worth and more) joined by "; ", then how many more there are: a file
    /// with thousands of wrong entries still gets a readable one-line error.
    /// </summary>
    public static string Problems(IReadOnlyCollection<string> problems, int max = 40) =>
        string.Join("; ", problems.Take(max)) + (problems.Count > max ? $"; … and {problems.Count - max} more" : "");

    /// <summary>
    /// The entry of <paramref name="known"/> nearest to <paramref name="word"/> by edit distance, when it is near enough
    /// to be a typo of it (at most <paramref name="maxDistance"/> edits; by default 2, or a third of the word's length if
    /// more); null when none is. Words and entries longer than 64 characters are not compared: an untrusted input must not
    /// choose how much this computes.
    /// </summary>
    public static string? Closest(string word, IEnumerable<string> known, int? maxDistance = null)
    {
        if (word.Length > 64) return null;
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string candidate in known)
        {
            if (candidate.Length > 64) continue;
            int d = Distance(word, candidate);
            if (d < bestDistance) (best, bestDistance) = (candidate, d);
        }
        return bestDistance <= (maxDistance ?? Math.Max(2, word.Length / 3)) ? best : null;
    }

    /// <summary>The Levenshtein distance of <paramref name="a"/> and <paramref name="b"/> (insertions, deletions, substitutions).</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        return d[a.Length, b.Length];
    }
}
