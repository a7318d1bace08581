using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Import.HuggingFace;
using Transduce.Inference;

using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>Reading a MarianMT folder's JSON files: the model config, the generation settings, the vocabularies.</summary>
internal static partial class MarianImport
{
    /// <summary>Maps a MarianMT <c>config.json</c> onto the <see cref="TransformerConfig"/> of an equivalent <see cref="TransformerSeq2Seq"/>.</summary>
    public static TransformerConfig ReadModelConfig(string configPath)
    {
        var json = new JsonFile(configPath, required: true);
        string? modelType = json.String("model_type");
        if (modelType is not null && modelType != "marian")
            throw json.Error($"'model_type' is '{modelType}', not 'marian'");

        int dModel = json.Size("d_model", ModelConfig.MaxWidth) ?? 1024;
        int encoderHeads = json.Size("encoder_attention_heads", ModelConfig.MaxHeads) ?? 16, decoderHeads = json.Size("decoder_attention_heads", ModelConfig.MaxHeads) ?? 16;
        int encoderFfn = json.Size("encoder_ffn_dim", ModelConfig.MaxFfn) ?? 4096, decoderFfn = json.Size("decoder_ffn_dim", ModelConfig.MaxFfn) ?? 4096;
        int encoderLayers = json.Size("encoder_layers", ModelConfig.MaxLayers) ?? 12, decoderLayers = json.Size("decoder_layers", ModelConfig.MaxLayers) ?? 12;
        if (encoderHeads != decoderHeads)
            throw json.Error($"'encoder_attention_heads' {encoderHeads} and 'decoder_attention_heads' {decoderHeads} differ, which is not supported");
        if (encoderFfn != decoderFfn)
            throw json.Error($"'encoder_ffn_dim' {encoderFfn} and 'decoder_ffn_dim' {decoderFfn} differ, which is not supported");
        string activation = json.String("activation_function") ?? "gelu";
        string mapped = activation switch
        {
            "swish" or "silu" => "swish",
            "gelu" => "gelu",
            "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh" => "gelu_tanh",
            "relu" => "relu",
            _ => throw json.Error($"unknown 'activation_function' '{activation}' (supported: swish, silu, gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, relu)"),
        };
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

        var config = new TransformerConfig
        {
            SourceVocabSize = vocab,
            TargetVocabSize = decoderVocab,
            EmbeddingSize = dModel,
            HiddenSize = dModel,
            Layers = encoderLayers,
            DecoderLayers = decoderLayers == encoderLayers ? null : decoderLayers,
            Heads = encoderHeads,
            FfnSize = encoderFfn,
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

    private static void RequireFlag(JsonFile json, string key, bool required)
    {
        if (json.Bool(key) is bool value && value != required)
            throw json.Error($"'{key}': {(value ? "true" : "false")} is not supported (MarianMT uses {(required ? "true" : "false")})");
    }

    /// <summary>
    /// Reads the decoding settings: <c>generation_config.json</c> when present, else <c>config.json</c>, else transformers' defaults.
    /// </summary>
    public static MarianGenerationConfig ReadGenerationConfig(string directory)
    {
        var model = new JsonFile(Path.Combine(directory, ConfigFile), required: true);
        var generation = new JsonFile(Path.Combine(directory, GenerationConfigFile), required: false);
        var source = generation.Exists ? generation : model;
        int? Id(string key) => generation.TokenId(key) ?? model.TokenId(key);

        int pad = Id("pad_token_id") ?? 58100;
        int eos = Id("eos_token_id") ?? 0;
        int start = Id("decoder_start_token_id") ?? pad;
        // transformers reads generation_config.json alone when it exists; otherwise it derives it from config.json (MarianConfig default 0).
        int? forced = generation.Exists || model.Has("forced_eos_token_id") ? source.TokenId("forced_eos_token_id") : 0;
        if (forced is int f && f != eos)
            throw source.Error($"'forced_eos_token_id' {f} differs from 'eos_token_id' {eos}, which is not supported");

        var banned = new List<int>();
        if (source.Node("bad_words_ids") is JsonArray bad)
        {
            foreach (var entry in bad)
            {
                if (entry is not JsonArray { Count: 1 } single || single[0] is not JsonValue v || !v.TryGetValue<int>(out int id))
                    throw source.Error("'bad_words_ids': only single-token entries such as [[pad]] are supported");
                banned.Add(id);
            }
        }
        var earlyStopping = source.Node("early_stopping") switch
        {
            null => EarlyStopping.Heuristic,
            JsonValue b when b.TryGetValue<bool>(out bool flag) => flag ? EarlyStopping.WhenFull : EarlyStopping.Heuristic,
            JsonValue s when s.TryGetValue<string>(out string? text) && text == "never" => EarlyStopping.Never,
            var other => throw source.Error($"'early_stopping' must be true, false or \"never\" (got {other.ToJsonString()})"),
        };
        var result = new MarianGenerationConfig
        {
            DecoderStartTokenId = start,
            EosTokenId = eos,
            PadTokenId = pad,
            ForcedEosTokenId = forced,
            NumBeams = source.Size("num_beams", 1024) ?? 1,
            MaxLength = source.Size("max_length", ModelConfig.MaxPositionCount) ?? 20,
            MaxNewTokens = source.Size("max_new_tokens", ModelConfig.MaxPositionCount),
            LengthPenalty = source.Double("length_penalty") ?? 1.0,
            EarlyStopping = earlyStopping,
            BannedTokens = banned,
        };
        if (result.NumBeams < 1) throw source.Error($"'num_beams' must be at least 1 (got {result.NumBeams})");
        if (result.NewTokenLimit < 1) throw source.Error("'max_length' / 'max_new_tokens' leave no room for a generated token");
        return result;
    }

    /// <summary>
    /// Reads <c>vocab.json</c> (and <c>target_vocab.json</c> when <c>tokenizer_config.json</c> says <c>separate_vocabs</c>):
    /// piece → id maps whose ids must fit the model and whose <c>&lt;/s&gt;</c> and <c>&lt;pad&gt;</c> must be the config's ids.
    /// </summary>
    public static (IReadOnlyDictionary<string, int> Source, IReadOnlyDictionary<string, int> Target) ReadVocabularies(
        string directory, ModelConfig config, MarianGenerationConfig generation)
    {
        var tokenizer = new JsonFile(Path.Combine(directory, TokenizerConfigFile), required: false);
        bool separate = tokenizer.Bool("separate_vocabs") ?? false;
        var source = ReadVocabulary(Path.Combine(directory, VocabularyFile), config.SourceVocabSize, generation);
        var target = separate ? ReadVocabulary(Path.Combine(directory, TargetVocabularyFile), config.TargetVocabSize, generation) : source;
        if (!separate && config.TargetVocabSize != config.SourceVocabSize && source.Values.Any(id => id >= config.TargetVocabSize))
            throw new InvalidDataException(
                $"{Path.Combine(directory, VocabularyFile)}: ids reach beyond 'decoder_vocab_size' {config.TargetVocabSize} and there is no separate target vocabulary");
        return (source, target);
    }

    private static Dictionary<string, int> ReadVocabulary(string path, int size, MarianGenerationConfig generation)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found — a MarianMT folder needs its vocabulary", path);
        Dictionary<string, int> vocabulary;
        try
        {
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(path))
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
