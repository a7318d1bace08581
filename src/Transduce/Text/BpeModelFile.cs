using System.Text.Json;
using static Transduce.Text.BpeSymbols;

namespace Transduce.Text;

/// <summary>
/// The BPE model file (<c>bpe.json</c>): <c>{"format":"transduce-bpe","version":1,"normalization":"none",
/// "pre_tokenizer":…,"byte_fallback":true,"vocab":[…],"merges":["left right",…]}</c>. <c>vocab</c> lists every piece by
/// id; each merge is its two pieces separated by one space (pieces never contain U+0020). Reading checks that the file
/// describes a model <see cref="BpeTokenizer"/> could have learnt, and names the file and the problem otherwise.
/// </summary>
internal static class BpeModelFile
{
    private const string PreTokenizerWhitespace = "whitespace";
    private const string PreTokenizerClasses = "whitespace-classes";
    private const string NormalizationNone = "none";

    /// <summary>The JSON text of a model.</summary>
    public static string Write(IReadOnlyList<string> pieces, IReadOnlyList<(string Left, string Right)> merges, bool splitPunctuation) =>
        JsonModelFile.Write(BpeTokenizer.FormatTag, BpeTokenizer.FormatVersion, writer =>
        {
            writer.WriteString("normalization", NormalizationNone);
            writer.WriteString("pre_tokenizer", splitPunctuation ? PreTokenizerClasses : PreTokenizerWhitespace);
            writer.WriteBoolean("byte_fallback", true);
            JsonModelFile.WriteStrings(writer, "vocab", pieces);
            JsonModelFile.WriteStrings(writer, "merges", merges.Select(m => m.Left + " " + m.Right));
        });

    /// <summary>Reads a model file.</summary>
    public static BpeTokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new InvalidDataException($"{path}: BPE model file not found.", new FileNotFoundException(null, path));
        }
        string json = StrictUtf8.ReadText(path);
        return Read(json, path);
    }

    /// <summary>Parses model JSON and checks its consistency.</summary>
    public static BpeTokenizer Read(string json, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);
        using JsonDocument doc = JsonModelFile.Open(json, sourceName, BpeTokenizer.FormatTag, BpeTokenizer.FormatVersion, Bad);
        JsonElement root = doc.RootElement;
        string normalization = JsonModelFile.RequireString(root, "normalization", sourceName, Bad);
        if (normalization != NormalizationNone)
        {
            throw Bad(sourceName, $"unsupported normalization \"{normalization}\" (known: {NormalizationNone})");
        }
        string preTokenizer = JsonModelFile.RequireString(root, "pre_tokenizer", sourceName, Bad);
        if (preTokenizer is not (PreTokenizerWhitespace or PreTokenizerClasses))
        {
            throw Bad(sourceName, $"unknown pre_tokenizer \"{preTokenizer}\" (known: {PreTokenizerWhitespace}, {PreTokenizerClasses})");
        }
        if (!root.TryGetProperty("byte_fallback", out JsonElement byteFallback) || byteFallback.ValueKind != JsonValueKind.True)
        {
            throw Bad(sourceName, "\"byte_fallback\" must be true");
        }
        string[] pieces = RequireStrings(root, "vocab", sourceName);
        var ids = ReadVocabulary(pieces, sourceName);
        var merges = ReadMerges(RequireStrings(root, "merges", sourceName), pieces, ids, sourceName);
        return new BpeTokenizer(pieces, ids, merges, preTokenizer == PreTokenizerClasses);
    }

    /// <summary>Checks the base pieces and that no piece is empty, holds a space or occurs twice; returns piece → id.</summary>
    private static Dictionary<string, int> ReadVocabulary(string[] pieces, string sourceName)
    {
        string[] expectedBase = BasePieces();
        for (int id = 0; id < expectedBase.Length; id++)
        {
            if (id >= pieces.Length || pieces[id] != expectedBase[id])
            {
                string found = id < pieces.Length ? $"\"{pieces[id]}\"" : "nothing";
                throw Bad(sourceName,
                    $"vocab must start with the reserved tokens, the byte tokens <0x00>..<0xFF> and \"{BpeTokenizer.WordStartMarker}\" "
                    + $"(ids 0-{BpeTokenizer.MarkerId}), but id {id} is {found} instead of \"{expectedBase[id]}\"");
            }
        }
        var ids = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        for (int id = 0; id < pieces.Length; id++)
        {
            if (pieces[id].Length == 0 || pieces[id].Contains(' '))
            {
                throw Bad(sourceName, $"vocab entry {id} (\"{pieces[id]}\") is empty or contains a space");
            }
            if (!ids.TryAdd(pieces[id], id))
            {
                throw Bad(sourceName, $"duplicate vocab entry \"{pieces[id]}\" at ids {ids[pieces[id]]} and {id}");
            }
        }
        return ids;
    }

    /// <summary>
    /// Parses the merges, checking that each joins two pieces that exist by then (base characters, the marker, earlier
    /// results) into a learnt vocab entry, and that every learnt multi-character entry is some merge's result.
    /// </summary>
    private static (string Left, string Right)[] ReadMerges(string[] mergeTexts, string[] pieces, Dictionary<string, int> ids, string sourceName)
    {
        var merges = new (string Left, string Right)[mergeTexts.Length];
        var available = new HashSet<string>(StringComparer.Ordinal) { BpeTokenizer.WordStartMarker };
        for (int id = BpeTokenizer.FirstLearnedId; id < pieces.Length; id++)
        {
            if (IsSingleRune(pieces[id], out _))
            {
                available.Add(pieces[id]);
            }
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < mergeTexts.Length; i++)
        {
            string text = mergeTexts[i];
            int space = text.IndexOf(' ');
            if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
            {
                throw Bad(sourceName, $"merge {i} (\"{text}\") must be two pieces separated by one space");
            }
            if (!seen.Add(text))
            {
                throw Bad(sourceName, $"merge {i} (\"{text}\") repeats an earlier merge");
            }
            string left = text[..space];
            string right = text[(space + 1)..];
            foreach (string part in (string[])[left, right])
            {
                if (!available.Contains(part))
                {
                    throw Bad(sourceName,
                        $"merge {i} (\"{text}\") uses \"{part}\", which is not a base character, the marker or the result of an earlier merge");
                }
            }
            string merged = left + right;
            if (!ids.TryGetValue(merged, out int resultId) || resultId < BpeTokenizer.FirstLearnedId)
            {
                throw Bad(sourceName, $"merge {i} (\"{text}\") produces \"{merged}\", which is not a learnt vocab entry");
            }
            available.Add(merged);
            merges[i] = (left, right);
        }
        for (int id = BpeTokenizer.FirstLearnedId; id < pieces.Length; id++)
        {
            if (!available.Contains(pieces[id]))
            {
                throw Bad(sourceName, $"vocab entry {id} (\"{pieces[id]}\") is neither a single character nor produced by a merge");
            }
        }
        return merges;
    }

    private static string[] RequireStrings(JsonElement root, string name, string sourceName)
    {
        JsonElement element = JsonModelFile.RequireArray(root, name, sourceName, Bad);
        var result = new string[element.GetArrayLength()];
        int i = 0;
        foreach (JsonElement item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw Bad(sourceName, $"\"{name}\"[{i}] must be a string but is {item.GetRawText()}");
            }
            result[i] = JsonModelFile.Text(item, $"\"{name}\"[{i}]", sourceName, Bad);
            i++;
        }
        return result;
    }

    // The problem quotes the file's own strings (a normalization, a piece, a merge), which may hold line breaks.
    private static InvalidDataException Bad(string source, string problem, Exception? inner = null) =>
        new($"{source}: invalid BPE model file: {IO.ErrorText.OneLine(problem)}.", inner);
}
