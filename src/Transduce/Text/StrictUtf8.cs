using System.Text;

namespace Transduce.Text;

/// <summary>Reads model and vocabulary files as strict UTF-8.</summary>
internal static class StrictUtf8
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The text of <paramref name="path"/> (a leading byte-order mark dropped), or null when it is not valid UTF-8.</summary>
    public static string? ReadFile(string path)
    {
        ReadOnlySpan<byte> span = File.ReadAllBytes(path);
        if (span.StartsWith("\uFEFF"u8)) span = span[3..];
        try
        {
            return Strict.GetString(span);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
