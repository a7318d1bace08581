using System.Text.Json.Serialization;

namespace Transduce.Text;

/// <summary>
/// One token that transformers' tokenizers split out of the text before the subword model sees it (an <c>AddedToken</c>:
/// a special token such as <c>&lt;/s&gt;</c>, a language code, <c>&lt;mask&gt;</c>, a T5 sentinel), with the id it takes in
/// our vocabulary.
/// </summary>
/// <param name="Content">The token as typed in the text.</param>
/// <param name="Id">Its id in our vocabulary.</param>
/// <param name="LStrip">The token takes the whitespace on its left (<c>AddedToken.lstrip</c>).</param>
/// <param name="RStrip">The token takes the whitespace on its right (<c>AddedToken.rstrip</c>).</param>
internal sealed record AddedToken(
    [property: JsonPropertyName("content")] string Content,
    [property: JsonPropertyName("id")] int Id,
    [property: JsonPropertyName("lstrip")] bool LStrip = false,
    [property: JsonPropertyName("rstrip")] bool RStrip = false);

/// <summary>
/// transformers' splitting of a text on its added tokens (<c>PreTrainedTokenizer.tokenize</c>: the tokens trie's
/// <c>split</c>, then each token's <c>lstrip</c> / <c>rstrip</c>): the leftmost occurrence of any added token is cut out
/// (the longest one when several start there), the stretches between them are left for the subword model, a stretch
/// loses its whitespace beside a token that strips on that side, and stretches left empty are dropped. One definition for
/// every family that has added tokens (T5's sentinels, NLLB's and M2M100's specials and language codes).
/// </summary>
internal sealed class AddedTokens
{
    private readonly Dictionary<char, AddedToken[]> byFirst;

    /// <summary>Splits on <paramref name="tokens"/> (empty contents are ignored; for a content given twice the first wins).</summary>
    public AddedTokens(IEnumerable<AddedToken> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var list = new List<AddedToken>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var token in tokens)
            if (token.Content.Length > 0 && seen.Add(token.Content)) list.Add(token);
        Tokens = list;
        byFirst = list.GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    /// <summary>The tokens split out.</summary>
    public IReadOnlyList<AddedToken> Tokens { get; }

    /// <summary>True when there is nothing to split on.</summary>
    public bool IsEmpty => Tokens.Count == 0;

    /// <summary>
    /// <paramref name="text"/> as its parts in order: an added token (<c>Token</c> set, <c>Text</c> its content) or a
    /// non-empty stretch of text for the subword model (<c>Token</c> null).
    /// </summary>
    public IReadOnlyList<(string Text, AddedToken? Token)> Split(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = new List<(string Text, AddedToken? Token)>();
        int start = 0;
        for (int at = 0; at < text.Length; at++)
        {
            if (!byFirst.TryGetValue(text[at], out var candidates)) continue;
            foreach (var token in candidates)
            {
                if (string.CompareOrdinal(text, at, token.Content, 0, token.Content.Length) != 0) continue;
                parts.Add((text[start..at], null));
                parts.Add((token.Content, token));
                at += token.Content.Length - 1;
                start = at + 1;
                break;
            }
        }
        parts.Add((text[start..], null));
        for (int i = 0; i < parts.Count; i++)
        {
            if (parts[i].Token is not { } token) continue;
            if (token.LStrip) parts[i - 1] = (PyText.RStrip(parts[i - 1].Text), null);
            if (token.RStrip) parts[i + 1] = (PyText.LStrip(parts[i + 1].Text), null);
        }
        parts.RemoveAll(p => p.Token is null && p.Text.Length == 0);
        return parts;
    }
}
