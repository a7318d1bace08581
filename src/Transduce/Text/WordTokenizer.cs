namespace Transduce.Text;

/// <summary>
/// Whitespace word tokenizer as used by d2l §10.5: splits on the plain space character (U+0020) only, dropping empty
/// tokens so that repeated, leading or trailing spaces do not produce empty words, and maps each word to its id in a
/// word <see cref="Text.Vocabulary"/> (<see cref="Vocabulary.UnkId"/> when it is not there). Decoding joins words with
/// one space.
/// </summary>
internal sealed class WordTokenizer : ITokenizer
{
    /// <summary>A tokenizer over the words of <paramref name="vocabulary"/>.</summary>
    public WordTokenizer(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        Vocabulary = vocabulary;
    }

    /// <inheritdoc />
    public Vocabulary Vocabulary { get; }

    /// <summary>Splits <paramref name="text"/> into words on plain spaces, dropping empty ones (what a word vocabulary is built from).</summary>
    /// <param name="text">The (normalised) text to split.</param>
    /// <returns>The words, in order; empty if the text contains no non-space characters.</returns>
    public static string[] Split(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <inheritdoc />
    public int[] EncodeToIds(string text) => Vocabulary.Encode(Split(text));

    /// <inheritdoc />
    public IReadOnlyList<EncodedToken> EncodeToTokens(string text) =>
        Array.ConvertAll(Split(text), word => new EncodedToken(Vocabulary[word], word));

    /// <inheritdoc />
    public int CountTokens(string text) => Split(text).Length;

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids) => string.Join(' ', Vocabulary.Decode(ids));

    /// <inheritdoc />
    public string DecodeTokens(IEnumerable<EncodedToken> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return string.Join(' ', tokens.Select(t => t.Value));
    }
}
