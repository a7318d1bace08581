using Transduce.Checkpoints;
using Transduce.Import.HuggingFace;
using Transduce.Import.Marian;
using Transduce.Text;

namespace Transduce.Import.T5;

/// <summary>
/// Turns a Hugging Face <c>T5ForConditionalGeneration</c> folder into a native <see cref="Checkpoint"/>: the same network
/// with its vocabulary rows in our layout (<see cref="T5Tokenizer.Layout"/>: our <c>&lt;bos&gt;</c> is T5's decoder start,
/// the pad row, excluded as an output by <see cref="VocabularyRemap"/>), <c>spiece.model</c> as the <c>t5</c> tokenizer,
/// the decoding defaults <c>generate</c> takes from the folder, and the tasks of its <c>task_specific_params</c>.
/// </summary>
internal static class T5Convert
{
    /// <summary>Makes <see cref="Checkpoint.Load"/> convert T5 folders (checkpoints sit below this folder and cannot name it).</summary>
#pragma warning disable CA2255 // a library's own registration of a format it contains, run before any load
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        ForeignFormats.Register("t5", IsT5Folder, ToCheckpoint);
        PairEncoding.Register(T5PairEncoding.Instance);
    }

    /// <summary>True when <paramref name="directory"/> looks like a T5 folder (<c>config.json</c> with <c>model_type: t5</c>).</summary>
    public static bool IsT5Folder(string directory) => HuggingFaceFolder.ModelType(directory) == "t5";

    /// <summary>T5Config's special ids: <c>&lt;pad&gt;</c> 0, which also starts the decoder, and <c>&lt;/s&gt;</c> 1.</summary>
    public static readonly HfConfigDefaults Defaults = new(PadTokenId: 0, EosTokenId: 1, DecoderStartTokenId: 0);

    /// <summary>The sentinel count when <c>tokenizer_config.json</c> does not give one (transformers' default).</summary>
    public const int DefaultExtraIds = 100;

    /// <summary>Loads and converts the T5 folder <paramref name="directory"/>.</summary>
    public static Checkpoint ToCheckpoint(string directory)
    {
        var folder = new HuggingFaceFolder(directory, T5Import.Family);
        var (extraIds, text) = ReadTokenizerConfig(folder);
        string spiecePath = folder.File(T5Import.SentencePieceFile);
        if (!File.Exists(spiecePath)) throw new FileNotFoundException($"{spiecePath}: not found — a T5 folder needs its SentencePiece model", spiecePath);
        var bytes = File.ReadAllBytes(spiecePath);
        var sentencePiece = SentencePieceModel.FromBytes(bytes, spiecePath); // errors name spiece.model
        var pieces = new SentencePiecePair(bytes, bytes, spiecePath, spiecePath);
        var (t5, config) = T5Import.LoadModel(folder);
        using (t5)
        {
            var generation = HfGenerationConfig.Read(folder.Directory, Defaults, config.TargetVocabSize);
            var tasks = HfTaskParams.Read(folder.Directory, generation, Defaults, config.TargetVocabSize);
            var (vocabulary, rows) = T5Tokenizer.Layout(sentencePiece, extraIds, config.TargetVocabSize, spiecePath);
            string configPath = folder.File(T5Import.ConfigFile);
            if (generation.EosTokenId != rows[vocabulary.EosId])
                throw new InvalidDataException($"{configPath}: 'eos_token_id' {generation.EosTokenId} is not the end piece '</s>' ({rows[vocabulary.EosId]}) of {T5Import.SentencePieceFile}");
            if ((uint)generation.DecoderStartTokenId >= (uint)config.TargetVocabSize)
                throw new InvalidDataException($"{configPath}: 'decoder_start_token_id' {generation.DecoderStartTokenId} is outside the vocabulary ({config.TargetVocabSize} rows)");
            rows[vocabulary.BosId] = generation.DecoderStartTokenId;

            var converted = config with { SourceVocabSize = vocabulary.Count, TargetVocabSize = vocabulary.Count, PadId = vocabulary.PadId, OutputBias = true };
            var model = VocabularyRemap.Reindex(t5, converted, rows, rows, vocabulary);
            return new Checkpoint
            {
                Model = model,
                ModelConfig = converted,
                TextConfig = text,
                SourceVocabulary = vocabulary,
                TargetVocabulary = vocabulary,
                SentencePiece = pieces,
                // generate()'s defaults for this folder: its beam size, stopping rule and length limit.
                Generation = VocabularyRemap.Generation(generation.ToSettings(), rows, vocabulary.BosId),
                PairEncoding = T5PairEncoding.Instance,
                // What a pipeline built for each task of task_specific_params uses: its prefix and decoding settings.
                Tasks = tasks.ToDictionary(t => t.Name,
                    t => new Inference.TaskSettings(t.Prefix, VocabularyRemap.Generation(t.Generation.ToSettings(), rows, vocabulary.BosId)), StringComparer.Ordinal),
                TrainingInfo = new Dictionary<string, string> { ["converted_from"] = "t5", ["source_folder"] = Path.GetFileName(folder.Directory.TrimEnd('/')) },
            };
        }
    }

    /// <summary>
    /// <c>tokenizer_config.json</c> (optional): the sentinel count <c>extra_ids</c>, <c>legacy</c> (absent or null: true, as
    /// <c>T5Tokenizer</c> defaults), <c>add_prefix_space</c> (default true), <c>clean_up_tokenization_spaces</c> (default
    /// false, transformers' default since 4.45) — and the text config of the <c>t5</c> tokenizer they make.
    /// </summary>
    private static (int ExtraIds, TextConfig Text) ReadTokenizerConfig(HuggingFaceFolder folder)
    {
        var json = folder.Json(T5Import.TokenizerConfigFile, required: false);
        int extraIds = json.Int("extra_ids") ?? DefaultExtraIds;
        if (extraIds is < 0 or > 100_000) throw json.Error($"'extra_ids' must be from 0 to 100000 (got {extraIds})");
        bool legacy = json.Bool("legacy") ?? true;
        // The non-legacy segmentation cuts the unknown token's text off a stretch: ours is <unk>, T5's default.
        if (!legacy && json.Node("unk_token") is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<string>(out var unk) && unk != Vocabulary.UnkToken)
            throw json.Error($"'unk_token' '{unk}' with 'legacy': false: only T5's '<unk>' is supported");
        return (extraIds, new TextConfig
        {
            Normalizer = "none", Tokenizer = "t5", Legacy = legacy,
            AddPrefixSpace = json.Bool("add_prefix_space") ?? true,
            CleanUpSpaces = json.Bool("clean_up_tokenization_spaces") ?? false,
        });
    }
}
