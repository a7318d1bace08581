using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Import.HuggingFace;

using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>Reading a MarianMT folder's JSON files: the model config, the generation settings, the vocabularies.</summary>
internal static partial class MarianImport
{
    /// <summary>Maps a MarianMT <c>config.json</c> onto the <see cref="TransformerConfig"/> of an equivalent <see cref="TransformerSeq2Seq"/>.</summary>
    public static TransformerConfig ReadModelConfig(string configPath)
    {
        var json = new HfJsonFile(configPath, required: true, "Hugging Face MarianMT");
        string? modelType = json.String("model_type");
        if (modelType is not null && modelType != "marian")
            throw json.Error($"'model_type' is '{modelType}', not 'marian'");

        var stacks = BartLayout.ReadStacks(json);
        string mapped = HfActivations.Read(json, "gelu");
        // Keys of the BART-era MarianConfig that today's transformers ignores; anything but their Marian values would
        // describe a different network (and tensors this import does not map), so refuse it rather than run it wrongly.
        RequireFlag(json, "normalize_before", false);
        RequireFlag(json, "normalize_embedding", false);
        RequireFlag(json, "add_final_layer_norm", false);
        RequireFlag(json, "add_bias_logits", false);
        RequireFlag(json, "static_position_embeddings", true);

        int vocab = json.Size("vocab_size", ModelConfig.MaxVocabulary) ?? 58101;
        int decoderVocab = json.Size("decoder_vocab_size", ModelConfig.MaxVocabulary) ?? vocab;
        bool share = json.Bool("share_encoder_decoder_embeddings") ?? true;
        if (share && decoderVocab != vocab)
            throw json.Error($"'share_encoder_decoder_embeddings' needs 'vocab_size' ({vocab}) = 'decoder_vocab_size' ({decoderVocab})");
        double dropout = json.Double("dropout") ?? 0.1;

        var config = stacks with
        {
            SourceVocabSize = vocab,
            TargetVocabSize = decoderVocab,
            Activation = mapped,
            Dropout = dropout,
            PadId = json.Int("pad_token_id") ?? 58100,
            PreNorm = false,
            AttentionBias = true,
            ScaleEmbedding = json.Bool("scale_embedding") ?? false,
            MaxPositions = json.Size("max_position_embeddings", ModelConfig.MaxPositionCount) ?? 1024,
            ShareEmbeddings = share,
            TieEmbeddings = json.Bool("tie_word_embeddings") ?? true,
            PositionalLayout = "halves",
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw json.Error(e.Message);
        }
        return config;
    }

    private static void RequireFlag(HfJsonFile json, string key, bool required)
    {
        if (json.Bool(key) is bool value && value != required)
            throw json.Error($"'{key}': {(value ? "true" : "false")} is not supported (MarianMT uses {(required ? "true" : "false")})");
    }

    /// <summary>The config-class defaults of <c>MarianConfig</c>, which apply to keys <c>config.json</c> leaves out.</summary>
    public static readonly HfConfigDefaults Defaults = new(PadTokenId: 58100, EosTokenId: 0, ForcedEosTokenId: 0);

    /// <summary>
    /// Reads the decoding settings (<see cref="HfGenerationConfig.Read"/>): <c>generation_config.json</c> when present,
    /// else <c>config.json</c>, else transformers' defaults; ids checked against <paramref name="config"/>'s target vocabulary.
    /// </summary>
    public static HfGenerationConfig ReadGenerationConfig(string directory, TransformerConfig config) =>
        HfGenerationConfig.Read(directory, Defaults, config.TargetVocabSize, config.MaxPositions);

    /// <summary>
    /// Reads <c>vocab.json</c> (and <c>target_vocab.json</c> when <c>tokenizer_config.json</c> says <c>separate_vocabs</c>):
    /// piece → id maps whose ids must fit the model and whose <c>&lt;/s&gt;</c> and <c>&lt;pad&gt;</c> must be the config's ids.
    /// </summary>
    public static (IReadOnlyDictionary<string, int> Source, IReadOnlyDictionary<string, int> Target) ReadVocabularies(
        string directory, ModelConfig config, HfGenerationConfig generation)
    {
        var tokenizer = new HfJsonFile(Path.Combine(directory, TokenizerConfigFile), required: false);
        bool separate = tokenizer.Bool("separate_vocabs") ?? false;
        var source = ReadVocabulary(Path.Combine(directory, VocabularyFile), config.SourceVocabSize, generation);
        var target = separate ? ReadVocabulary(Path.Combine(directory, TargetVocabularyFile), config.TargetVocabSize, generation) : source;
        if (!separate && config.TargetVocabSize != config.SourceVocabSize && source.Values.Any(id => id >= config.TargetVocabSize))
            throw new InvalidDataException(
                $"{Path.Combine(directory, VocabularyFile)}: ids reach beyond 'decoder_vocab_size' {config.TargetVocabSize} and there is no separate target vocabulary");
        return (source, target);
    }

    private static Dictionary<string, int> ReadVocabulary(string path, int size, HfGenerationConfig generation)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found — a MarianMT folder needs its vocabulary", path);
        Dictionary<string, int> vocabulary;
        try
        {
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(Text.StrictUtf8.ReadText(path))
                ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a JSON object of piece → id ({e.Message})", e);
        }
        var outOfRange = vocabulary.FirstOrDefault(kv => kv.Value < 0 || kv.Value >= size);
        if (outOfRange.Key is not null)
            throw new InvalidDataException($"{path}: piece '{outOfRange.Key}' has id {outOfRange.Value}, outside the model's vocabulary of {size}");
        if (vocabulary.TryGetValue("</s>", out int eos) && eos != generation.EosTokenId)
            throw new InvalidDataException($"{path}: '</s>' has id {eos} but 'eos_token_id' is {generation.EosTokenId}");
        if (vocabulary.TryGetValue("<pad>", out int pad) && pad != generation.PadTokenId)
            throw new InvalidDataException($"{path}: '<pad>' has id {pad} but 'pad_token_id' is {generation.PadTokenId}");
        return vocabulary;
    }
}
