using System.Text;

using Transduce.Text;

namespace Transduce.Evaluation;

/// <summary>Reads plain-text files of segments (one per line) the way the <c>sacrebleu</c> command line does.</summary>
internal static class SegmentFiles
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// The segments of a UTF-8 file: lines split at <c>\n</c>, each with its trailing whitespace removed (Python's
    /// <c>str.rstrip()</c>, so a <c>\r</c> of CRLF files goes too). A newline at the end of the file does not start
    /// another segment; empty lines elsewhere are empty segments. As in sacreBLEU, a byte-order mark is kept as
    /// part of the first segment.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <returns>The segments, in file order.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">A line is not valid UTF-8 (the message names the file and line).</exception>
    public static IReadOnlyList<string> Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"File not found: {path}", path);
        byte[] bytes = File.ReadAllBytes(path);
        var segments = new List<string>();
        int start = 0;
        while (start < bytes.Length)
        {
            int newline = Array.IndexOf(bytes, (byte)'\n', start);
            int end = newline < 0 ? bytes.Length : newline;
            string line;
            try
            {
                line = s_strictUtf8.GetString(bytes, start, end - start);
            }
            catch (DecoderFallbackException)
            {
                throw new InvalidDataException($"{path}:{segments.Count + 1}: the line is not valid UTF-8.");
            }
            segments.Add(PyText.RStrip(line));
            start = end + 1;
        }
        return segments;
    }
}
