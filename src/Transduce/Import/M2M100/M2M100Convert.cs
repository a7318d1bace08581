using Transduce.Checkpoints;
using Transduce.Import.HuggingFace;
using Transduce.Text;

namespace Transduce.Import.M2M100;

/// <summary>
/// Turns an NLLB folder into a native <see cref="Checkpoint"/>, so <c>Checkpoint.Load</c>, <c>translate --model DIR</c> and
/// <c>serve --model DIR</c> take it: the same network with its vocabulary rows in our layout (<c>&lt;pad&gt; &lt;bos&gt;
/// &lt;eos&gt; &lt;unk&gt;</c>, then NLLB's ids in order: <c>&lt;s&gt;</c>, the pieces, the language codes, <c>&lt;mask&gt;</c>,
/// any rows beyond the tokenizer), the SentencePiece model as the <c>spm</c> tokenizer, a <see cref="LanguageTable"/> and
/// decoding defaults that follow <c>generate</c>. Our <c>&lt;bos&gt;</c> row is NLLB's decoder start token (<c>&lt;/s&gt;</c>),
/// so decoding starts exactly as transformers does; being a copy of the end token's row it is banned as an output.
/// </summary>
internal static class M2M100Convert
{
    /// <summary>Makes <see cref="Checkpoint.Load"/> convert NLLB / M2M100 folders (checkpoints sit below this folder and cannot name it).</summary>
#pragma warning disable CA2255 // a library's own registration of a format it contains, run before any load
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        ForeignFormats.Register(M2M100Import.ModelType, IsM2M100Folder, ToCheckpoint);
        PairEncoding.Register(M2M100PairEncoding.Instance);
        PairEncoding.Register(M2M100PairEncoding.Legacy);
    }

    /// <summary>True when <paramref name="directory"/>'s <c>config.json</c> says <c>model_type: m2m_100</c>.</summary>
    public static bool IsM2M100Folder(string directory) => HuggingFaceFolder.ModelType(directory) == M2M100Import.ModelType;

    /// <summary>Loads and converts the folder <paramref name="directory"/>.</summary>
    public static Checkpoint ToCheckpoint(string directory)
    {
        using var nllb = M2M100Import.Load(directory);
        var folder = new HuggingFaceFolder(directory, M2M100Import.Family);
        var tokenizer = nllb.Tokenizer;
        var gen = nllb.Generation;
        int rows = nllb.Config.TargetVocabSize;

        // For each of our ids, the folder's row it takes, and its token text.
        var tokens = new List<string> { Vocabulary.PadToken, Vocabulary.BosToken, Vocabulary.EosToken, Vocabulary.UnkToken };
        var map = new List<int> { gen.PadTokenId, gen.DecoderStartTokenId, gen.EosTokenId, NllbTokenizer.UnkId };
        for (int id = 0; id < rows; id++)
        {
            if (id == gen.PadTokenId || id == gen.EosTokenId || id == NllbTokenizer.UnkId) continue;
            tokens.Add(tokenizer.Token(id) ?? $"<row {id}>");
            map.Add(id);
        }
        var vocabulary = Vocabulary.FromTokens(tokens, Path.Combine(folder.Directory, MultilingualTokenizer.ModelFile));
        var ourId = new Dictionary<int, int>();
        for (int i = map.Count - 1; i >= 0; i--) ourId[map[i]] = i; // the first of our ids that takes each NLLB row

        var config = nllb.Config with { SourceVocabSize = vocabulary.Count, TargetVocabSize = vocabulary.Count, PadId = vocabulary.PadId, OutputBias = true };
        var mapArray = map.ToArray();
        var model = VocabularyRemap.Reindex(nllb.Model, config, mapArray, mapArray, vocabulary);
        var languages = tokenizer.Languages.ToDictionary(kv => kv.Key, kv => ourId[kv.Value], StringComparer.Ordinal);
        var specials = tokenizer.SpecialIds.Where(ourId.ContainsKey).Select(id => ourId[id]).Where(id => id > vocabulary.UnkId).ToHashSet();
        var table = new LanguageTable(languages, languages, specials, tokenizer.DefaultSourceLanguage, tokenizer.DefaultTargetLanguage);
        var settings = gen.ToSettings();
        byte[] spm = File.ReadAllBytes(folder.File(MultilingualTokenizer.ModelFile));
        return new Checkpoint
        {
            Model = model,
            ModelConfig = config,
            TextConfig = new TextConfig
            {
                Normalizer = "none", Tokenizer = "spm", CleanUpSpaces = tokenizer.CleanUpSpaces,
                // The specials and codes typed in a text, with our ids (a typed </s> is our end token).
                AddedTokens = [.. tokenizer.Added.Where(t => ourId.ContainsKey(t.Id))
                    .Select(t => t with { Id = t.Id == gen.EosTokenId ? vocabulary.EosId : ourId[t.Id] })],
            },
            SourceVocabulary = vocabulary,
            TargetVocabulary = vocabulary,
            SentencePiece = new SentencePiecePair(spm, spm, folder.File(MultilingualTokenizer.ModelFile), folder.File(MultilingualTokenizer.ModelFile)),
            Languages = table,
            PairEncoding = tokenizer.Legacy ? M2M100PairEncoding.Legacy : M2M100PairEncoding.Instance,
            Generation = VocabularyRemap.Generation(settings, mapArray, vocabulary.BosId),
            TrainingInfo = new Dictionary<string, string> { ["converted_from"] = "nllb", ["source_folder"] = Path.GetFileName(folder.Directory.TrimEnd('/')) },
        };
    }
}
