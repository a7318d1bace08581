using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Inference;
using static TorchSharp.torch;

namespace Transduce.Models.Marian;

/// <summary>
/// Loads a Hugging Face MarianMT folder (the format OPUS-MT models are published in): maps <c>config.json</c> onto a
/// <see cref="ModelConfig"/> for <see cref="TransformerSeq2Seq"/>, the safetensors weights onto its parameters, and
/// reads <c>generation_config.json</c> and <c>vocab.json</c>. Every problem throws naming the file and what is wrong.
/// </summary>
/// <remarks>
/// <para><b>Architecture.</b> MarianMT is a post-norm Transformer: LN(x + sublayer(x)) after self-attention,
/// cross-attention and the FFN, no embedding or final LayerNorm; embeddings × √d_model (<c>scale_embedding</c>);
/// sinusoidal positions 0, 1, … with sines in the first half of the columns and cosines in the second
/// (<see cref="SinusoidLayout.Halves"/>); biases on all attention projections; logits = lm_head(h) + final_logits_bias.</para>
/// <para><b>Parameter names</b> (Hugging Face → Transduce), for layer i:
/// <c>model.shared.weight</c> / <c>model.encoder.embed_tokens.weight</c> → <c>encoder.embedding.weight</c>;
/// <c>model.shared.weight</c> / <c>model.decoder.embed_tokens.weight</c> → <c>decoder.embedding.weight</c>;
/// <c>lm_head.weight</c> → <c>decoder.dense.weight</c> (the decoder embedding when <c>tie_word_embeddings</c>);
/// <c>final_logits_bias</c> (1, V) → <c>decoder.dense.bias</c> (V) (zeros when absent, as in transformers);
/// <c>model.encoder.layers.i.self_attn.{q,k,v,out}_proj</c> → <c>encoder.blocks.i.attention.W_{q,k,v,o}</c>,
/// <c>self_attn_layer_norm</c> → <c>addNorm1.norm</c>, <c>fc1</c>/<c>fc2</c> → <c>ffn.dense1</c>/<c>ffn.dense2</c>,
/// <c>final_layer_norm</c> → <c>addNorm2.norm</c>;
/// <c>model.decoder.layers.i.self_attn</c> → <c>decoder.blocks.i.SelfAttention</c>, <c>self_attn_layer_norm</c> → <c>addNorm1.norm</c>,
/// <c>encoder_attn</c> → <c>CrossAttention</c>, <c>encoder_attn_layer_norm</c> → <c>addNorm2.norm</c>, <c>fc1</c>/<c>fc2</c> →
/// <c>ffn.dense1</c>/<c>ffn.dense2</c>, <c>final_layer_norm</c> → <c>addNorm3.norm</c>.
/// <c>model.{encoder,decoder}.embed_positions.weight</c>, present in older checkpoints, must have shape
/// (max_position_embeddings, d_model) and is otherwise not read: the table is computed.</para>
/// </remarks>
public static class MarianImport
{
    /// <summary>File names inside a MarianMT folder.</summary>
    public const string ConfigFile = "config.json", GenerationConfigFile = "generation_config.json", WeightsFile = "model.safetensors",
        PyTorchWeightsFile = "pytorch_model.bin", VocabularyFile = "vocab.json", TargetVocabularyFile = "target_vocab.json",
        TokenizerConfigFile = "tokenizer_config.json";

    /// <summary>Loads the folder <paramref name="directory"/> as a ready-to-run model in eval mode.</summary>
    public static MarianModel Load(string directory)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"{directory}: MarianMT folder not found");
        string configPath = Path.Combine(directory, ConfigFile);
        var config = ReadModelConfig(configPath);
        var generation = ReadGenerationConfig(directory);
        var (sourceVocabulary, targetVocabulary) = ReadVocabularies(directory, config, generation);
        string weights = WeightsPath(directory);

        config.CheckFits(WeightFiles.Describe(weights), configPath);
        var model = new TransformerSeq2Seq(config);
        try
        {
            LoadWeights(model, config, weights);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return new MarianModel(model, config, generation, sourceVocabulary, targetVocabulary);
    }

    /// <summary>
    /// The safetensors weights of <paramref name="directory"/>. A folder with only <c>pytorch_model.bin</c> (or no weights)
    /// throws <see cref="FileNotFoundException"/> saying so.
    /// </summary>
    public static string WeightsPath(string directory)
    {
        string path = Path.Combine(directory, WeightsFile);
        if (File.Exists(path)) return path;
        string pickled = Path.Combine(directory, PyTorchWeightsFile);
        if (File.Exists(pickled)) return pickled;
        throw new FileNotFoundException($"{path}: not found — a MarianMT folder needs its weights as {WeightsFile} or {PyTorchWeightsFile}", path);
    }

    /// <summary>
    /// Reads a weights file: safetensors, or a PyTorch state dict saved with <c>torch.save</c> (<c>pytorch_model.bin</c>,
    /// read by <see cref="WeightFiles"/>' restricted reader, which rebuilds tensors and plain containers only; tied
    /// weights that share one storage are read once).
    /// </summary>
    public static Dictionary<string, Tensor> ReadWeights(string path) => WeightFiles.Load(path);

    /// <summary>Maps a MarianMT <c>config.json</c> onto the <see cref="ModelConfig"/> of an equivalent <see cref="TransformerSeq2Seq"/>.</summary>
    public static ModelConfig ReadModelConfig(string configPath)
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

        var config = new ModelConfig
        {
            Architecture = "transformer",
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

    /// <summary>
    /// For each tensor of a <see cref="TransformerSeq2Seq"/> built from <paramref name="config"/>, the Hugging Face names that
    /// can supply it, preferred first (several when weights are shared or tied: they must then hold equal values).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> ParameterNames(ModelConfig config)
    {
        const string shared = "model.shared.weight", encoderEmbed = "model.encoder.embed_tokens.weight",
            decoderEmbed = "model.decoder.embed_tokens.weight", lmHead = "lm_head.weight";
        var names = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        string[] decoderEmbedding = config.ShareEmbeddings ? [shared, encoderEmbed, decoderEmbed] : [decoderEmbed];
        names["encoder.embedding.weight"] = config.ShareEmbeddings ? decoderEmbedding : [encoderEmbed, shared];
        names["decoder.embedding.weight"] = config.TieEmbeddings ? [.. decoderEmbedding, lmHead] : decoderEmbedding;
        names["decoder.dense.weight"] = config.TieEmbeddings ? names["decoder.embedding.weight"] : [lmHead];
        names["decoder.dense.bias"] = ["final_logits_bias"];
        if (config.ShareEmbeddings) names["encoder.embedding.weight"] = names["decoder.embedding.weight"];

        static void Attention(Dictionary<string, IReadOnlyList<string>> names, string ours, string theirs)
        {
            foreach (var (o, t) in new[] { ("W_q", "q_proj"), ("W_k", "k_proj"), ("W_v", "v_proj"), ("W_o", "out_proj") })
                foreach (var p in new[] { "weight", "bias" })
                    names[$"{ours}.{o}.{p}"] = [$"{theirs}.{t}.{p}"];
        }
        static void Module(Dictionary<string, IReadOnlyList<string>> names, string ours, string theirs)
        {
            foreach (var p in new[] { "weight", "bias" }) names[$"{ours}.{p}"] = [$"{theirs}.{p}"];
        }
        for (int i = 0; i < config.Layers; i++)
        {
            string o = $"encoder.blocks.{i}", t = $"model.encoder.layers.{i}";
            Attention(names, $"{o}.attention", $"{t}.self_attn");
            Module(names, $"{o}.addNorm1.norm", $"{t}.self_attn_layer_norm");
            Module(names, $"{o}.ffn.dense1", $"{t}.fc1");
            Module(names, $"{o}.ffn.dense2", $"{t}.fc2");
            Module(names, $"{o}.addNorm2.norm", $"{t}.final_layer_norm");
        }
        for (int i = 0; i < config.DecoderLayerCount; i++)
        {
            string o = $"decoder.blocks.{i}", t = $"model.decoder.layers.{i}";
            Attention(names, $"{o}.SelfAttention", $"{t}.self_attn");
            Module(names, $"{o}.addNorm1.norm", $"{t}.self_attn_layer_norm");
            Attention(names, $"{o}.CrossAttention", $"{t}.encoder_attn");
            Module(names, $"{o}.addNorm2.norm", $"{t}.encoder_attn_layer_norm");
            Module(names, $"{o}.ffn.dense1", $"{t}.fc1");
            Module(names, $"{o}.ffn.dense2", $"{t}.fc2");
            Module(names, $"{o}.addNorm3.norm", $"{t}.final_layer_norm");
        }
        return names;
    }

    /// <summary>
    /// Copies a MarianMT weights file (safetensors or pytorch_model.bin) into <paramref name="model"/>. Missing and unexpected tensors, shape mismatches and
    /// shared/tied tensors that differ are reported together, by their Hugging Face names, in one <see cref="InvalidDataException"/>.
    /// </summary>
    public static void LoadWeights(TransformerSeq2Seq model, ModelConfig config, string path)
    {
        var loaded = ReadWeights(path);
        try
        {
            var expected = model.state_dict();
            var names = ParameterNames(config);
            var problems = new List<string>();
            var used = new HashSet<string>(StringComparer.Ordinal);
            var plan = new List<(Tensor Target, Tensor? Source)>();
            foreach (var (ours, target) in expected)
            {
                if (ours.EndsWith(".positions.table", StringComparison.Ordinal)) continue; // the sinusoid table is computed, not loaded
                if (!names.TryGetValue(ours, out var candidates))
                {
                    problems.Add($"model tensor '{ours}' has no Hugging Face counterpart (internal error)");
                    continue;
                }
                var present = candidates.Where(loaded.ContainsKey).ToList();
                used.UnionWith(present);
                if (present.Count == 0)
                {
                    if (ours == "decoder.dense.bias") plan.Add((target, null)); // transformers, too, starts a missing final_logits_bias at zero
                    else problems.Add($"missing tensor '{candidates[0]}'" + (candidates.Count > 1 ? $" (or any of '{string.Join("', '", candidates.Skip(1))}')" : ""));
                    continue;
                }
                var source = loaded[present[0]];
                long[] shape = ours == "decoder.dense.bias" && source.shape is [1, var v] ? [v] : source.shape;
                if (!shape.SequenceEqual(target.shape))
                {
                    long[] theirs = ours == "decoder.dense.bias" ? [1, .. target.shape] : target.shape;
                    problems.Add($"tensor '{present[0]}' has shape [{string.Join(", ", source.shape)}], the model needs [{string.Join(", ", theirs)}]");
                    continue;
                }
                foreach (var other in present.Skip(1))
                    if (!SameValues(loaded[other], source))
                        problems.Add($"tensors '{present[0]}' and '{other}' must be one shared/tied weight (config) but differ");
                plan.Add((target, source));
            }
            foreach (var name in loaded.Keys.Where(k => !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal))
            {
                if (name is "model.encoder.embed_positions.weight" or "model.decoder.embed_positions.weight")
                {
                    if (!loaded[name].shape.SequenceEqual([config.MaxPositions, config.HiddenSize]))
                        problems.Add($"tensor '{name}' has shape [{string.Join(", ", loaded[name].shape)}], the model needs [{config.MaxPositions}, {config.HiddenSize}]");
                    continue;
                }
                problems.Add($"unexpected tensor '{name}'");
            }
            if (problems.Count > 0)
                throw new InvalidDataException($"{path}: weights do not fit the MarianMT config: {string.Join("; ", problems)}");
            using var _ = no_grad();
            foreach (var (target, source) in plan)
            {
                if (source is null)
                {
                    target.zero_();
                    continue;
                }
                using var view = source.reshape(target.shape);
                target.copy_(view);
            }
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    private static bool SameValues(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var same = a.eq(b);
        using var all = same.all();
        return all.item<bool>();
    }

    /// <summary>A JSON object file with typed, error-reporting accessors.</summary>
    private sealed class JsonFile
    {
        private readonly string path;
        private readonly JsonObject? root;

        public JsonFile(string path, bool required)
        {
            this.path = path;
            if (!File.Exists(path))
            {
                if (required) throw new FileNotFoundException($"{path}: not found — is this a Hugging Face MarianMT folder?", path);
                return;
            }
            try
            {
                root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
            }
        }

        public bool Exists => root is not null;

        public InvalidDataException Error(string message) => new($"{path}: {message}");

        public bool Has(string key) => root?.ContainsKey(key) == true;

        public JsonNode? Node(string key) => root?[key];

        private T? Get<T>(string key, string kind) where T : struct
        {
            var node = Node(key);
            if (node is null) return null;
            if (node is JsonValue v && v.TryGetValue<T>(out var value)) return value;
            if (typeof(T) == typeof(int) && node is JsonValue d && d.TryGetValue<double>(out double x) && x == Math.Floor(x) && Math.Abs(x) <= int.MaxValue)
                return (T)(object)(int)x;
            if (typeof(T) == typeof(double) && node is JsonValue n && n.TryGetValue<long>(out long l)) return (T)(object)(double)l;
            throw Error($"'{key}' must be {kind} (got {node.ToJsonString()})");
        }

        public int? Int(string key) => Get<int>(key, "an integer");

        /// <summary>A size: an integer from 1 to <paramref name="max"/> (a bound far above any real model).</summary>
        public int? Size(string key, int max)
        {
            int? value = Int(key);
            if (value is <= 0) throw Error($"'{key}' must be positive (got {value})");
            if (value > max) throw Error($"'{key}' {value} is larger than any supported model (at most {max})");
            return value;
        }

        public double? Double(string key) => Get<double>(key, "a number");

        public bool? Bool(string key) => Get<bool>(key, "true or false");

        public string? String(string key)
        {
            var node = Node(key);
            if (node is null) return null;
            return node is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Error($"'{key}' must be a string (got {node.ToJsonString()})");
        }

        /// <summary>A token id that may be written as a one-element list (transformers allows lists of eos ids).</summary>
        public int? TokenId(string key)
        {
            if (Node(key) is JsonArray list)
            {
                if (list.Count == 1 && list[0] is JsonValue v && v.TryGetValue<int>(out int id)) return id;
                throw Error($"'{key}': only a single id is supported (got {list.ToJsonString()})");
            }
            return Int(key);
        }
    }
}
