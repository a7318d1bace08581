using Transduce.Checkpoints;
using Transduce.Import.HuggingFace;
using Transduce.Inference;
using Transduce.Text;
using static TorchSharp.torch;

using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>
/// Turns a Hugging Face MarianMT folder into a native Transduce <see cref="Checkpoint"/>: the same network with its
/// vocabulary rows reordered into our layout (<c>&lt;pad&gt; &lt;bos&gt; &lt;eos&gt; &lt;unk&gt;</c> first, then Marian's pieces in
/// Marian's order), the two SentencePiece models as the <c>spm</c> tokenizer, and decoding defaults that follow
/// <c>generate</c> (Hugging Face length normalisation, banned tokens). Our <c>&lt;bos&gt;</c> row is Marian's decoder start
/// token (<c>&lt;pad&gt;</c>), so decoding starts exactly as transformers does.
/// </summary>
internal static class MarianConvert
{
    /// <summary>
    /// Makes <see cref="Checkpoint.Load"/> convert MarianMT folders and find Marian's pair encoding by name (checkpoints sit
    /// below this folder and cannot name it).
    /// </summary>
#pragma warning disable CA2255 // a library's own registration of a format it contains, run before any load
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        ForeignFormats.Register("marian", IsMarianFolder, ToCheckpoint);
        PairEncoding.Register(MarianPairEncoding.Instance);
    }

    /// <summary>True when <paramref name="directory"/> looks like a MarianMT folder (<c>config.json</c> with <c>model_type: marian</c>).</summary>
    public static bool IsMarianFolder(string directory) => HuggingFaceFolder.ModelType(directory) == "marian";

    /// <summary>Loads and converts the MarianMT folder <paramref name="directory"/>.</summary>
    public static Checkpoint ToCheckpoint(string directory)
    {
        using var marian = MarianImport.Load(directory);
        var sentencePiece = new SentencePiecePair(ReadRequired(directory, "source.spm"), ReadRequired(directory, "target.spm"),
            Path.Combine(directory, "source.spm"), Path.Combine(directory, "target.spm"));
        var gen = marian.Generation;
        int unkSource = UnknownId(directory, marian.SourceVocabulary);
        int unkTarget = UnknownId(directory, marian.TargetVocabulary);
        var (source, sourceMap) = Remap(marian.SourceVocabulary, gen, unkSource);
        var (target, targetMap) = ReferenceEquals(marian.SourceVocabulary, marian.TargetVocabulary)
            ? (source, sourceMap)
            : Remap(marian.TargetVocabulary, gen, unkTarget);

        var config = marian.Config with { SourceVocabSize = source.Count, TargetVocabSize = target.Count, PadId = source.PadId };
        var model = VocabularyRemap.Reindex(marian.Model, config, sourceMap, targetMap, target);

        return new Checkpoint
        {
            Model = model,
            ModelConfig = config,
            TextConfig = new TextConfig { Normalizer = "none", Tokenizer = "spm" },
            SourceVocabulary = source,
            TargetVocabulary = target,
            SentencePiece = sentencePiece,
            // generate()'s defaults for this folder: its beam size, stopping rule and length limit.
            Generation = VocabularyRemap.Generation(gen.ToSettings(), targetMap, target.BosId),
            PairEncoding = MarianPairEncoding.Instance,
            TrainingInfo = new Dictionary<string, string> { ["converted_from"] = "marian", ["source_folder"] = Path.GetFileName(Path.GetFullPath(directory).TrimEnd('/')) },
        };
    }

    private static byte[] ReadRequired(string directory, string file)
    {
        string path = new HuggingFaceFolder(directory, MarianImport.Family).File(file);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found — a MarianMT folder needs its SentencePiece model", path);
        return File.ReadAllBytes(path);
    }

    private static int UnknownId(string directory, IReadOnlyDictionary<string, int> vocabulary) =>
        vocabulary.TryGetValue("<unk>", out int unk) ? unk
        : throw new InvalidDataException($"{Path.Combine(directory, MarianImport.VocabularyFile)}: has no '<unk>' piece");

    /// <summary>Our vocabulary for a Marian piece → id map, and for each of our ids the Marian row it takes.</summary>
    private static (Vocabulary Vocabulary, int[] OurToMarian) Remap(IReadOnlyDictionary<string, int> marian, HfGenerationConfig gen, int unk)
    {
        var specials = new HashSet<string>(StringComparer.Ordinal) { "</s>", "<unk>", "<pad>" };
        var pieces = marian.Where(kv => !specials.Contains(kv.Key)).OrderBy(kv => kv.Value).ToList();
        var tokens = new List<string> { Vocabulary.PadToken, Vocabulary.BosToken, Vocabulary.EosToken, Vocabulary.UnkToken };
        var map = new List<int> { gen.PadTokenId, gen.DecoderStartTokenId, gen.EosTokenId, unk };
        foreach (var (piece, id) in pieces)
        {
            tokens.Add(piece);
            map.Add(id);
        }
        return (Vocabulary.FromTokens(tokens, "vocab.json"), map.ToArray());
    }
}
