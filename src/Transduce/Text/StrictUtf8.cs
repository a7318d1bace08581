using System.Text;

namespace Transduce.Text;

/// <summary>
/// Reads model, vocabulary and configuration files as strict UTF-8: an invalid byte is an error naming the file, never a
/// U+FFFD that turns a key or a piece into another one.
/// </summary>
internal static class StrictUtf8
{
    /// <summary>
    /// The text of <paramref name="path"/> (a leading byte-order mark dropped); <see cref="InvalidDataException"/> naming
    /// the file and the offset of the first byte that is not UTF-8.
    /// </summary>
    public static string ReadText(string path)
    {
        ReadOnlySpan<byte> span = File.ReadAllBytes(path);
        int bom = span.StartsWith("\uFEFF"u8) ? 3 : 0;
        try
        {
            return Strict.GetString(span[bom..]);
        }
        catch (DecoderFallbackException e)
        {
            // Where decoding stops is the first byte that is not UTF-8 (the exception's own index is not an offset in the file).
            var rest = span[bom..];
            char[] buffer = new char[rest.Length];
            System.Text.Unicode.Utf8.ToUtf16(rest, buffer, out int valid, out _, replaceInvalidSequences: false);
            throw new InvalidDataException($"{path}: not valid UTF-8 (byte 0x{rest[Math.Min(valid, rest.Length - 1)]:X2} at offset {bom + valid})", e);
        }
    }

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
