using System.Text.Json.Nodes;
using Transduce.Import.HuggingFace;
using Transduce.Text;

namespace Transduce.Import.M2M100;

/// <summary>
/// transformers' <c>NllbTokenizer</c> over <c>sentencepiece.bpe.model</c>: fairseq's ids — <c>&lt;s&gt;</c> 0, <c>&lt;pad&gt;</c> 1,
/// <c>&lt;/s&gt;</c> 2, <c>&lt;unk&gt;</c> 3, SentencePiece piece p at p + 1 (its unknown piece becomes 3) — then the language
/// codes, then <c>&lt;mask&gt;</c>. A source is <c>[src_lang] pieces &lt;/s&gt;</c>, or <c>pieces &lt;/s&gt; [src_lang]</c> when
/// <c>tokenizer_config.json</c> sets <c>legacy_behaviour</c>. Ids come from the folder's <c>added_tokens_decoder</c> when
/// <c>tokenizer_config.json</c> has one (what <c>save_pretrained</c> writes), else from the classic layout.
/// </summary>
internal sealed class NllbTokenizer : MultilingualTokenizer
{
    /// <summary>fairseq's special ids.</summary>
    public const int BosId = 0, PadId = 1, EosId = 2, UnkId = 3;

    private const int Offset = 1;
    private readonly SentencePieceModel model;
    private readonly Dictionary<string, int> languages;
    private readonly HashSet<int> special;

    private NllbTokenizer(SentencePieceModel model, Dictionary<string, int> languages, int maskId, bool legacy, string defaultSource, string? defaultTarget, HfJsonFile config)
    {
        string[] fixedTokens = ["<s>", "<pad>", "</s>", "<unk>"];
        Added = [.. fixedTokens.Select((t, id) => Token(config, t, id)), .. languages.Select(kv => Token(config, kv.Key, kv.Value)), Token(config, "<mask>", maskId, lstrip: true)];
        CleanUpSpaces = ReadCleanUp(config);
        DefaultTargetLanguage = defaultTarget;
        this.model = model;
        this.languages = languages;
        MaskId = maskId;
        Legacy = legacy;
        DefaultSourceLanguage = defaultSource;
        special = [BosId, PadId, EosId, UnkId, maskId, .. languages.Values];
    }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, int> Languages => languages;

    /// <inheritdoc />
    public override IReadOnlySet<int> SpecialIds => special;

    /// <inheritdoc />
    public override string? DefaultTargetLanguage { get; }

    /// <summary>The id of <c>&lt;mask&gt;</c>.</summary>
    public int MaskId { get; }

    /// <summary>The folder's <c>legacy_behaviour</c>: the language code after <c>&lt;/s&gt;</c> instead of first.</summary>
    public override bool Legacy { get; }

    /// <summary><c>src_lang</c> of <c>tokenizer_config.json</c>, else <c>eng_Latn</c>.</summary>
    public override string DefaultSourceLanguage { get; }

    /// <summary>The largest id this tokenizer produces, plus one.</summary>
    public override int Size => Math.Max(MaskId, languages.Values.DefaultIfEmpty(0).Max()) + 1;

    /// <summary>Reads the tokenizer of <paramref name="folder"/>; a missing or malformed file throws naming it and the field.</summary>
    public static NllbTokenizer Load(HuggingFaceFolder folder)
    {
        string modelPath = folder.File(ModelFile);
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"{modelPath}: not found — an NLLB folder needs its SentencePiece model", modelPath);
        var model = SentencePieceModel.Load(modelPath);
        if (model.UnkId != 0)
            throw new InvalidDataException($"{modelPath}: the unknown piece has id {model.UnkId}; fairseq's layout (and NllbTokenizer) needs it at 0");
        var config = folder.Json(HuggingFaceFolder.TokenizerConfigFile, required: false);
        bool legacy = config.Bool("legacy_behaviour") ?? false;
        int pieces = model.Count + Offset;
        var languages = new Dictionary<string, int>(StringComparer.Ordinal);
        int mask;
        if (config.Node("added_tokens_decoder") is JsonObject added)
        {
            mask = -1;
            foreach (var (key, node) in added)
            {
                if (!int.TryParse(key, out int id) || id < 0 || node is not JsonObject entry || entry["content"] is not JsonValue v || !v.TryGetValue<string>(out var content))
                    throw config.Error($"'added_tokens_decoder': entry '{key}' must be an id with a 'content' string");
                string? fixedToken = id switch { BosId => "<s>", PadId => "<pad>", EosId => "</s>", UnkId => "<unk>", _ => null };
                if (fixedToken is not null)
                {
                    if (content != fixedToken) throw config.Error($"'added_tokens_decoder': id {id} is '{content}', NllbTokenizer needs '{fixedToken}'");
                    continue;
                }
                if (id < pieces) throw config.Error($"'added_tokens_decoder': '{content}' has id {id}, inside the {pieces} SentencePiece ids");
                if (content == "<mask>") mask = id;
                else if (!languages.TryAdd(content, id)) throw config.Error($"'added_tokens_decoder': '{content}' appears twice");
            }
            if (mask < 0) mask = pieces + languages.Count;
        }
        else
        {
            var codes = Strings(config, "additional_special_tokens")
                ?? Strings(folder.Json(HuggingFaceFolder.SpecialTokensMapFile, required: false), "additional_special_tokens")
                ?? FairseqLanguages.Nllb;
            foreach (var code in codes)
                if (!languages.TryAdd(code, pieces + languages.Count))
                    throw config.Error($"'additional_special_tokens': '{code}' appears twice");
            mask = pieces + languages.Count;
        }
        string source = config.String("src_lang") ?? "eng_Latn";
        return new NllbTokenizer(model, languages, mask, legacy, source, config.String("tgt_lang"), config);
    }

    private static IReadOnlyList<string>? Strings(HfJsonFile file, string key)
    {
        if (file.Node(key) is not { } node) return null;
        if (node is not JsonArray list) throw file.Error($"'{key}' must be a list of strings");
        return list.Select(item => item switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
            _ => throw file.Error($"'{key}' must be a list of strings (got {item?.ToJsonString() ?? "null"})"),
        }).ToList();
    }

    /// <inheritdoc />
    public override IReadOnlyList<AddedToken> Added { get; }

    /// <inheritdoc />
    protected override int[] SegmentIds(string stretch) =>
        model.Encode(stretch).Select(p => p.Id == 0 ? UnkId : p.Id + Offset).ToArray();

    /// <inheritdoc />
    public override string? Token(int id) => id switch
    {
        BosId => "<s>", PadId => "<pad>", EosId => "</s>", UnkId => "<unk>",
        _ when id == MaskId => "<mask>",
        _ when languages.ContainsValue(id) => languages.First(kv => kv.Value == id).Key,
        _ => id > UnkId && id - Offset < model.Count ? model.IdToPiece(id - Offset) : null,
    };

    /// <summary>
    /// Text for <paramref name="ids"/> as <c>decode(ids, skip_special_tokens=True)</c>: the specials, language codes and
    /// <c>&lt;mask&gt;</c> are dropped, the pieces joined, <c>▁</c> made a space and the ends stripped.
    /// </summary>
    public override string Decode(IEnumerable<int> ids)
    {
        var text = new System.Text.StringBuilder();
        foreach (int id in ids)
        {
            if (special.Contains(id)) continue;
            int piece = id - Offset;
            if ((uint)piece >= (uint)model.Count) continue; // beyond the tokenizer (a model row no token names)
            text.Append(model.IdToPiece(piece));
        }
        return PyText.Strip(text.Replace(SentencePieceModel.SpaceSymbol, " ").ToString());
    }
}
