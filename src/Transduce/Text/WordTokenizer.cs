namespace Transduce.Text;

/// <summary>
/// Whitespace word tokenizer as used by d2l §10.5: splits on the plain space character (U+0020) only,
/// dropping empty tokens so that repeated, leading or trailing spaces do not produce empty words.
/// </summary>
internal sealed class WordTokenizer
{
    /// <summary>Splits <paramref name="text"/> into tokens on plain spaces, dropping empty tokens.</summary>
    /// <param name="text">The (normalised) text to split.</param>
    /// <returns>The tokens, in order; empty if the text contains no non-space characters.</returns>
    public string[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>Joins tokens with a single space.</summary>
    /// <param name="tokens">The tokens to join.</param>
    /// <returns>The joined text.</returns>
    public string Detokenize(IEnumerable<string> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return string.Join(' ', tokens);
    }
}
