using System.Text.Json;
using Transduce.IO;
using Transduce.Checkpoints;

namespace Transduce.Text;

/// <summary>
/// A token ↔ id mapping. Ids 0–3 are always the reserved tokens <see cref="PadToken"/>,
/// <see cref="BosToken"/>, <see cref="EosToken"/> and <see cref="UnkToken"/>, in that order; the
/// remaining ids are assigned by <see cref="Build"/> in descending frequency order.
/// Instances are immutable.
/// </summary>
internal sealed class Vocabulary
{
    /// <summary>The padding token; always id 0.</summary>
    public const string PadToken = "<pad>";

    /// <summary>The beginning-of-sequence token; always id 1.</summary>
    public const string BosToken = "<bos>";

    /// <summary>The end-of-sequence token; always id 2.</summary>
    public const string EosToken = "<eos>";

    /// <summary>The unknown-token token; always id 3.</summary>
    public const string UnkToken = "<unk>";

    /// <summary>The <c>format</c> tag written into and required in vocabulary JSON files.</summary>
    public const string FormatTag = "transduce-vocab";

    /// <summary>The vocabulary file format version written by <see cref="Save"/> and accepted by <see cref="Load"/>.</summary>
    public const int FormatVersion = 1;

    private static readonly string[] ReservedTokens = [PadToken, BosToken, EosToken, UnkToken];

    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;

    private Vocabulary(string[] tokens, Dictionary<string, int> ids)
    {
        _tokens = tokens;
        _ids = ids;
        Tokens = Array.AsReadOnly(tokens);
    }

    /// <summary>Id of <see cref="PadToken"/> (0).</summary>
    public int PadId => 0;

    /// <summary>Id of <see cref="BosToken"/> (1).</summary>
    public int BosId => 1;

    /// <summary>Id of <see cref="EosToken"/> (2).</summary>
    public int EosId => 2;

    /// <summary>Id of <see cref="UnkToken"/> (3).</summary>
    public int UnkId => 3;

    /// <summary>Number of tokens, including the four reserved ones.</summary>
    public int Count => _tokens.Length;

    /// <summary>All tokens, indexed by id.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>Gets the id of <paramref name="token"/>, or <see cref="UnkId"/> if it is not in the vocabulary.</summary>
    /// <param name="token">The token to look up.</param>
    public int this[string token]
    {
        get
        {
            ArgumentNullException.ThrowIfNull(token);
            return _ids.TryGetValue(token, out int id) ? id : UnkId;
        }
    }

    /// <summary>Gets the token with id <paramref name="id"/>.</summary>
    /// <param name="id">An id in <c>[0, Count)</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is outside <c>[0, Count)</c>.</exception>
    public string this[int id]
    {
        get
        {
            if ((uint)id >= (uint)_tokens.Length)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(id), id, $"Token id must be in [0, {_tokens.Length}).");
            }
            return _tokens[id];
        }
    }

    /// <summary>
    /// Builds a vocabulary from tokenized sentences. After the reserved tokens, every token occurring at
    /// least <paramref name="minFrequency"/> times is added, ordered by descending count, ties broken by
    /// ordinal string order, so the result is deterministic. Occurrences of reserved tokens in the text are
    /// counted but never produce a second entry.
    /// </summary>
    /// <param name="sentences">Tokenized sentences.</param>
    /// <param name="minFrequency">Minimum count for a token to be included (values below 1 act like 1).</param>
    /// <returns>The new vocabulary.</returns>
    /// <exception cref="ArgumentException">A sentence or token is null, or a token is empty.</exception>
    public static Vocabulary Build(IEnumerable<IEnumerable<string>> sentences, int minFrequency = 1)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (IEnumerable<string>? sentence in sentences)
        {
            if (sentence is null)
            {
                throw new ArgumentException("A sentence is null.", nameof(sentences));
            }
            foreach (string? token in sentence)
            {
                if (string.IsNullOrEmpty(token))
                {
                    throw new ArgumentException("Tokens must be non-empty strings.", nameof(sentences));
                }
                counts[token] = counts.TryGetValue(token, out int c) ? c + 1 : 1;
            }
        }

        var entries = new List<KeyValuePair<string, int>>(counts.Count);
        foreach (KeyValuePair<string, int> kv in counts)
        {
            if (kv.Value >= minFrequency && Array.IndexOf(ReservedTokens, kv.Key) < 0)
            {
                entries.Add(kv);
            }
        }
        entries.Sort(static (a, b) =>
        {
            int byCount = b.Value.CompareTo(a.Value);
            return byCount != 0 ? byCount : string.CompareOrdinal(a.Key, b.Key);
        });

        var tokens = new string[ReservedTokens.Length + entries.Count];
        ReservedTokens.CopyTo(tokens, 0);
        for (int i = 0; i < entries.Count; i++)
        {
            tokens[ReservedTokens.Length + i] = entries[i].Key;
        }
        return new Vocabulary(tokens, IndexTokens(tokens));
    }

    /// <summary>Maps tokens to ids; tokens not in the vocabulary map to <see cref="UnkId"/>.</summary>
    /// <param name="tokens">The tokens to encode.</param>
    /// <returns>The ids, one per token. No <see cref="BosToken"/>/<see cref="EosToken"/> is added.</returns>
    public int[] Encode(IEnumerable<string> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var ids = new List<int>(tokens is ICollection<string> col ? col.Count : 16);
        foreach (string token in tokens)
        {
            ids.Add(this[token]);
        }
        return ids.ToArray();
    }

    /// <summary>
    /// Maps ids back to tokens. The result is computed eagerly, so an invalid id throws immediately.
    /// </summary>
    /// <param name="ids">The ids to decode.</param>
    /// <param name="stopAtEos">Stop at the first <see cref="EosId"/> (which is not emitted).</param>
    /// <param name="skipSpecial">
    /// Omit <see cref="PadToken"/>, <see cref="BosToken"/> and <see cref="EosToken"/>.
    /// <see cref="UnkToken"/> is always kept because it stands for a real (unknown) word.
    /// </param>
    /// <returns>The decoded tokens.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside <c>[0, Count)</c>.</exception>
    public IEnumerable<string> Decode(IEnumerable<int> ids, bool stopAtEos = true, bool skipSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var result = new List<string>();
        foreach (int id in ids)
        {
            string token = this[id];
            if (stopAtEos && id == EosId)
            {
                break;
            }
            if (skipSpecial && (id == PadId || id == BosId || id == EosId))
            {
                continue;
            }
            result.Add(token);
        }
        return result;
    }

    /// <summary>
    /// Serialises the vocabulary as JSON: <c>{"format":"transduce-vocab","version":1,"tokens":[...]}</c>.
    /// </summary>
    /// <returns>The JSON text (indented, non-ASCII characters written as-is).</returns>
    public string ToJson() => JsonModelFile.Write(FormatTag, FormatVersion, writer => JsonModelFile.WriteStrings(writer, "tokens", _tokens));

    /// <summary>
    /// Writes the vocabulary to <paramref name="path"/> as UTF-8 JSON (see <see cref="ToJson"/>), atomically:
    /// the data goes to a temporary file next to it, is flushed to disk, then replaces <paramref name="path"/>.
    /// The parent directory is created if needed.
    /// </summary>
    /// <param name="path">Destination file path.</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        AtomicFile.WriteAllText(path, ToJson());
    }

    /// <summary>Reads a vocabulary written by <see cref="Save"/>.</summary>
    /// <param name="path">The vocabulary file.</param>
    /// <returns>The vocabulary.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid vocabulary file; the message names the file and the problem.</exception>
    public static Vocabulary Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Vocabulary file not found: {path}", path);
        }
        string json = StrictUtf8.ReadText(path);
        return FromJson(json, path);
    }

    /// <summary>Parses vocabulary JSON as produced by <see cref="ToJson"/>.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">Name of where the JSON came from (usually a file path), used in error messages.</param>
    /// <returns>The vocabulary.</returns>
    /// <exception cref="InvalidDataException">
    /// The text is not JSON or is truncated, the format tag or version is wrong, the token list is missing
    /// or malformed, the reserved tokens are not at ids 0–3, or a token occurs twice.
    /// </exception>
    public static Vocabulary FromJson(string json, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);
        using JsonDocument doc = JsonModelFile.Open(json, sourceName, FormatTag, FormatVersion, Bad);
        JsonElement tokensElement = JsonModelFile.RequireArray(doc.RootElement, "tokens", sourceName, Bad);
        var tokens = new string[tokensElement.GetArrayLength()];
        int i = 0;
        foreach (JsonElement element in tokensElement.EnumerateArray())
        {
            string? token = element.ValueKind == JsonValueKind.String ? JsonModelFile.Text(element, $"token at id {i}", sourceName, Bad) : null;
            if (string.IsNullOrEmpty(token))
            {
                throw Bad(sourceName, $"token at id {i} must be a non-empty string but is {element.GetRawText()}");
            }
            tokens[i++] = token;
        }
        return FromTokens(tokens, sourceName);
    }

    /// <summary>
    /// A vocabulary of <paramref name="tokens"/>, indexed by id: they must start with the reserved tokens at ids 0–3 and
    /// hold no token twice (a subword model's pieces, a converted model's vocabulary).
    /// </summary>
    /// <param name="tokens">Every token, by id.</param>
    /// <param name="sourceName">Where the tokens came from, used in error messages.</param>
    /// <exception cref="InvalidDataException">A token is empty, a reserved token is missing or misplaced, or a token occurs twice.</exception>
    public static Vocabulary FromTokens(IEnumerable<string> tokens, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(sourceName);
        string[] list = tokens.ToArray();
        for (int id = 0; id < list.Length; id++)
        {
            if (string.IsNullOrEmpty(list[id]))
            {
                throw Bad(sourceName, $"token at id {id} must be a non-empty string");
            }
        }
        for (int r = 0; r < ReservedTokens.Length; r++)
        {
            if (r >= list.Length || list[r] != ReservedTokens[r])
            {
                string found = r < list.Length ? $"\"{list[r]}\"" : "nothing";
                throw Bad(sourceName, $"reserved tokens must be {string.Join(", ", ReservedTokens)} at ids 0-3, but id {r} is {found}");
            }
        }
        var ids = new Dictionary<string, int>(list.Length, StringComparer.Ordinal);
        for (int id = 0; id < list.Length; id++)
        {
            if (!ids.TryAdd(list[id], id))
            {
                throw Bad(sourceName, $"duplicate token \"{list[id]}\" at ids {ids[list[id]]} and {id}");
            }
        }
        return new Vocabulary(list, ids);
    }

    private static Dictionary<string, int> IndexTokens(string[] tokens)
    {
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
        {
            ids.Add(tokens[i], i);
        }
        return ids;
    }

    private static InvalidDataException Bad(string source, string problem, Exception? inner = null) =>
        new($"{source}: invalid vocabulary file: {problem}.", inner);
}
