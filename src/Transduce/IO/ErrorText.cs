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
}
