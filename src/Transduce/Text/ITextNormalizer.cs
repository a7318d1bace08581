namespace Transduce.Text;

/// <summary>
/// Normalises raw sentence text before tokenization (for example lower-casing and spacing out punctuation).
/// </summary>
internal interface ITextNormalizer
{
    /// <summary>Short, stable name of the normaliser, as accepted by <see cref="TextNormalizers.FromName"/>.</summary>
    string Name { get; }

    /// <summary>Returns the normalised form of <paramref name="text"/>.</summary>
    /// <param name="text">The text to normalise; must not be null.</param>
    /// <returns>The normalised text.</returns>
    string Normalize(string text);
}
