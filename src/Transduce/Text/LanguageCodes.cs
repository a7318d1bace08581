namespace Transduce.Text;

/// <summary>Messages for language codes a model does not know.</summary>
internal static class LanguageCodes
{
    /// <summary>
    /// "unknown language code 'fr' (close: fra_Latn, …)": the known codes whose language part starts with
    /// <paramref name="code"/>'s, or that are within two edits of it (case ignored), at most five.
    /// </summary>
    public static string Unknown(string code, IEnumerable<string> known)
    {
        string wanted = Core(code);
        var close = known
            .Select(k => (Code: k, Distance: Core(k).StartsWith(wanted, StringComparison.Ordinal) && wanted.Length > 0 ? 0 : Edits(Core(k), wanted)))
            .Where(c => c.Distance <= 2)
            .OrderBy(c => c.Distance).ThenBy(c => c.Code, StringComparer.Ordinal)
            .Take(5).Select(c => c.Code).ToList();
        return $"unknown language code '{code}'" + (close.Count > 0 ? $" (close: {string.Join(", ", close)})" : " (no close match)");
    }

    // The comparable part of a code: lower case, without M2M100's underscores around it.
    private static string Core(string code) => code.Trim('_').ToLowerInvariant();

    private static int Edits(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
