using System.Text;

namespace Transduce.Text;

/// <summary>A normaliser that returns its input unchanged.</summary>
internal sealed class IdentityNormalizer : ITextNormalizer
{
    /// <summary>The name of this normaliser: <c>"none"</c>.</summary>
    public const string NormalizerName = "none";

    /// <inheritdoc />
    public string Name => NormalizerName;

    /// <inheritdoc />
    public string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text;
    }
}

/// <summary>
/// The preprocessing of d2l §10.5 (<c>preprocess_nmt</c>): replaces U+202F (narrow no-break space) and
/// U+00A0 (no-break space) with a plain space, lower-cases (invariant culture), and inserts a space before
/// each of <c>, . ! ?</c> whose preceding character is not a space.
/// </summary>
/// <remarks>
/// Lower-casing uses .NET's invariant simple case mapping, which can differ from Python's
/// <c>str.lower()</c> for a handful of characters whose full lower-case mapping is longer than one char.
/// </remarks>
internal sealed class D2lNormalizer : ITextNormalizer
{
    /// <summary>The name of this normaliser: <c>"d2l"</c>.</summary>
    public const string NormalizerName = "d2l";

    /// <inheritdoc />
    public string Name => NormalizerName;

    /// <inheritdoc />
    public string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string s = text.Replace('\u202F', ' ').Replace('\u00A0', ' ').ToLowerInvariant();

        StringBuilder? sb = null;
        for (int i = 1; i < s.Length; i++)
        {
            char c = s[i];
            if (IsSpacedPunctuation(c) && s[i - 1] != ' ')
            {
                if (sb is null)
                {
                    sb = new StringBuilder(s.Length + 8);
                    sb.Append(s, 0, i);
                }
                sb.Append(' ');
            }
            sb?.Append(c);
        }
        return sb?.ToString() ?? s;
    }

    private static bool IsSpacedPunctuation(char c) => c is ',' or '.' or '!' or '?';
}

/// <summary>Looks up the built-in <see cref="ITextNormalizer"/> implementations by name.</summary>
internal static class TextNormalizers
{
    /// <summary>The names accepted by <see cref="FromName"/>.</summary>
    public static IReadOnlyList<string> Names { get; } =
        Array.AsReadOnly(new[] { IdentityNormalizer.NormalizerName, D2lNormalizer.NormalizerName });

    /// <summary>Creates the normaliser called <paramref name="name"/> (case-insensitive).</summary>
    /// <param name="name">One of <see cref="Names"/>: <c>"none"</c> or <c>"d2l"</c>.</param>
    /// <returns>A new normaliser instance.</returns>
    /// <exception cref="ArgumentException"><paramref name="name"/> is not a known normaliser name.</exception>
    public static ITextNormalizer FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (string.Equals(name, IdentityNormalizer.NormalizerName, StringComparison.OrdinalIgnoreCase))
        {
            return new IdentityNormalizer();
        }
        if (string.Equals(name, D2lNormalizer.NormalizerName, StringComparison.OrdinalIgnoreCase))
        {
            return new D2lNormalizer();
        }
        throw new ArgumentException(
            $"Unknown text normalizer '{name}'. Valid names: {string.Join(", ", Names)}.", nameof(name));
    }
}
