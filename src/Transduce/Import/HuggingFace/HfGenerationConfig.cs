using System.Text.Json.Nodes;
using Transduce.Inference;
using Transduce.Models;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// What a model family's configuration class gives the special ids when <c>config.json</c> leaves them out
/// (e.g. <c>MarianConfig</c>: pad 58100, eos 0, forced eos 0; <c>M2M100Config</c>: pad 1, bos 0, eos 2, decoder start 2).
/// </summary>
/// <param name="PadTokenId">Default <c>pad_token_id</c>.</param>
/// <param name="EosTokenId">Default <c>eos_token_id</c>.</param>
/// <param name="DecoderStartTokenId">Default <c>decoder_start_token_id</c>; null: the pad id.</param>
/// <param name="BosTokenId">Default <c>bos_token_id</c>, or null.</param>
/// <param name="ForcedEosTokenId">Default <c>forced_eos_token_id</c> of the config class (used only without <c>generation_config.json</c>), or null.</param>
internal sealed record HfConfigDefaults(int PadTokenId, int EosTokenId, int? DecoderStartTokenId = null, int? BosTokenId = null, int? ForcedEosTokenId = null);

/// <summary>
/// The decoding settings of a Hugging Face encoder–decoder folder as transformers' <c>generate</c> (5.x) applies them:
/// <c>generation_config.json</c> when present (transformers then reads it alone, but for the special ids, which fall back
/// to <c>config.json</c>), else the generation keys of <c>config.json</c>, else transformers' defaults. Every value is
/// checked when read (<see cref="Read"/>): ids inside the vocabulary, sizes bounded, so a hostile folder cannot make
/// decoding compute without end; an error is one line naming the file and the key.
/// </summary>
internal sealed record HfGenerationConfig
{
    /// <summary>File names of a Hugging Face folder.</summary>
    public const string ConfigFile = "config.json", GenerationConfigFile = "generation_config.json";

    /// <summary>The most <c>bad_words_ids</c> entries accepted (a bound on the work of each decoding step).</summary>
    public const int MaxBadWords = GenerationSettings.MaxBannedEntries;

    /// <summary>The largest <c>num_beams</c> accepted: the largest beam any caller may ask for.</summary>
    public const int MaxBeams = BeamSearchOptions.MaxBeamSize;

    /// <summary>New tokens transformers generates when neither <c>max_length</c> nor <c>max_new_tokens</c> is set (capped by the positions).</summary>
    public const int DefaultNewTokens = 20;

    /// <summary><c>decoder_start_token_id</c>: the first decoder input (Marian and T5: pad; NLLB: eos).</summary>
    public required int DecoderStartTokenId { get; init; }

    /// <summary><c>bos_token_id</c>, when set.</summary>
    public int? BosTokenId { get; init; }

    /// <summary><c>eos_token_id</c>: one id, or several (newer configs write a list; all of them end an output in transformers).</summary>
    public required IReadOnlyList<int> EosTokenIds { get; init; }

    /// <summary>The first of <see cref="EosTokenIds"/>, the one the searches end with.</summary>
    public int EosTokenId => EosTokenIds[0];

    /// <summary><c>pad_token_id</c>.</summary>
    public required int PadTokenId { get; init; }

    /// <summary><c>forced_bos_token_id</c>: when set, every output starts with this token (NLLB's target language).</summary>
    public int? ForcedBosTokenId { get; init; }

    /// <summary><c>forced_eos_token_id</c>: when set (it must be the end token), the last token the length limit allows is <c>&lt;eos&gt;</c>.</summary>
    public int? ForcedEosTokenId { get; init; }

    /// <summary><c>num_beams</c> (default 1, i.e. greedy).</summary>
    public int NumBeams { get; init; } = 1;

    /// <summary><c>max_length</c>: the longest output counting the decoder start token; null when the folder does not set it.</summary>
    public int? MaxLength { get; init; }

    /// <summary><c>max_new_tokens</c>: when set, overrides <see cref="MaxLength"/> (tokens after the start token, <c>&lt;eos&gt;</c> included).</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary><c>min_length</c> (default 0): counts the decoder start token, so <c>&lt;eos&gt;</c> may come after <c>min_length − 1</c> tokens.</summary>
    public int MinLength { get; init; }

    /// <summary><c>min_new_tokens</c>: when set, overrides <see cref="MinLength"/> (tokens before <c>&lt;eos&gt;</c> may come).</summary>
    public int? MinNewTokens { get; init; }

    /// <summary><c>length_penalty</c> α: finished beams are ranked by log-probability / length^α.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    /// <summary><c>early_stopping</c>: <c>true</c>, <c>false</c> (transformers' default) or <c>"never"</c>.</summary>
    public EarlyStopping EarlyStopping { get; init; } = EarlyStopping.Heuristic;

    /// <summary><c>no_repeat_ngram_size</c> (0: off).</summary>
    public int NoRepeatNgramSize { get; init; }

    /// <summary><c>repetition_penalty</c> (1: off).</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>
    /// <c>bad_words_ids</c> without the entries that are a lone end token (transformers drops those): one-token entries
    /// are never generated, longer ones never completed.
    /// </summary>
    public IReadOnlyList<int[]> BadWordsIds { get; init; } = [];

    /// <summary>The single-token entries of <see cref="BadWordsIds"/> (OPUS-MT: <c>&lt;pad&gt;</c>).</summary>
    public IReadOnlyList<int> BannedTokens => BadWordsIds.Where(w => w.Length == 1).Select(w => w[0]).Distinct().ToArray();

    /// <summary>The entries of <see cref="BadWordsIds"/> with two or more tokens.</summary>
    public IReadOnlyList<int[]> BannedSequences => BadWordsIds.Where(w => w.Length > 1).ToArray();

    /// <summary>
    /// Tokens transformers generates at most after the start token, <c>&lt;eos&gt;</c> included: <see cref="MaxNewTokens"/>,
    /// else <see cref="MaxLength"/> − 1, else 20 (transformers 5's default, no more than the positions allow).
    /// </summary>
    public required int NewTokenLimit { get; init; }

    /// <summary>Tokens before <c>&lt;eos&gt;</c> may come: <see cref="MinNewTokens"/>, else <see cref="MinLength"/> − 1 (at least 0).</summary>
    public int MinNewTokenCount => MinNewTokens ?? Math.Max(0, MinLength - 1);

    /// <summary>
    /// The decoding settings that reproduce <c>generate</c> with this configuration, in the folder's id space: length
    /// normalisation and stopping rule, beam size, length limits and how an output ends there (a forced <c>&lt;eos&gt;</c>
    /// with <c>forced_eos_token_id</c>, else <see cref="LengthLimitRule.Stop"/>) and every logit rule.
    /// </summary>
    public GenerationSettings ToSettings() => new()
    {
        LengthNormalization = LengthNormalization.HuggingFace,
        LengthPenalty = LengthPenalty,
        BannedTokens = BannedTokens,
        BannedSequences = BannedSequences,
        EarlyStopping = EarlyStopping,
        NumBeams = NumBeams,
        MaxNewTokens = NewTokenLimit,
        // Without forced_eos_token_id, generate stops at the limit with whatever token came last.
        LengthLimit = ForcedEosTokenId is null ? LengthLimitRule.Stop : LengthLimitRule.ForcedEnd,
        MinLength = MinNewTokenCount,
        NoRepeatNgramSize = NoRepeatNgramSize,
        RepetitionPenalty = RepetitionPenalty,
        ForcedBosTokenId = ForcedBosTokenId,
    };

    /// <summary>
    /// Reads the decoding settings of the folder <paramref name="directory"/> (its <c>config.json</c> must exist).
    /// </summary>
    /// <param name="directory">The Hugging Face folder.</param>
    /// <param name="defaults">The model family's config-class defaults for the special ids.</param>
    /// <param name="vocabularySize">The decoder's vocabulary: every id must be below it.</param>
    /// <param name="maxPositions">The decoder's positions (<c>max_position_embeddings</c>), which cap the default length; null for no cap.</param>
    public static HfGenerationConfig Read(string directory, HfConfigDefaults defaults, int vocabularySize, int? maxPositions = null) =>
        ReadFiles(new HfJsonFile(Path.Combine(directory, ConfigFile), required: true),
            new HfJsonFile(Path.Combine(directory, GenerationConfigFile), required: false), defaults, vocabularySize, maxPositions);

    /// <summary>As <see cref="Read"/>, from the folder's two files already read.</summary>
    internal static HfGenerationConfig ReadFiles(HfJsonFile model, HfJsonFile generation, HfConfigDefaults defaults, int vocabularySize, int? maxPositions)
    {
        var source = generation.Exists ? generation : model;
        // The file a special id came from, for its errors.
        HfJsonFile Owner(string key) => generation.Has(key) && generation.Node(key) is not null ? generation : model;
        int? InVocabulary(HfJsonFile file, string key)
        {
            int? id = file.TokenId(key);
            if (id is int v && (v < 0 || v >= vocabularySize))
                throw file.Error($"'{key}' {v} is outside the vocabulary of {vocabularySize}");
            return id;
        }
        // config.json's special ids are checked even where generation_config.json overrides them: the model's own
        // configuration (its padding row, its decoder start in training) reads them, and a folder that lies is refused
        // (config.json's end and forced ids are checked with its rules below).
        foreach (string key in new[] { "pad_token_id", "decoder_start_token_id", "bos_token_id" }) InVocabulary(model, key);
        int? Id(string key) => InVocabulary(Owner(key), key);

        int pad = Id("pad_token_id") ?? defaults.PadTokenId;
        int[] modelEos = EndTokens(model, vocabularySize) ?? [defaults.EosTokenId];
        int[] eos = generation.Exists ? EndTokens(generation, vocabularySize) ?? modelEos : modelEos;
        int start = Id("decoder_start_token_id") ?? defaults.DecoderStartTokenId ?? pad;
        int? bos = Id("bos_token_id") ?? defaults.BosTokenId;
        foreach (var (key, value) in new[] { ("pad_token_id", pad), ("decoder_start_token_id", start) })
            if (value < 0 || value >= vocabularySize) throw model.Error($"'{key}' {value} is outside the vocabulary of {vocabularySize}");

        // transformers reads generation_config.json alone when it exists; otherwise it derives it from config.json, whose
        // class supplies its default for a key the file leaves out. The rules config.json carries are checked either way.
        if (generation.Exists) ReadRules(model, vocabularySize, maxPositions, modelEos);
        var rules = ReadRules(source, vocabularySize, maxPositions, eos);
        int? forcedEos = generation.Exists || model.Has("forced_eos_token_id") ? rules.ForcedEos : defaults.ForcedEosTokenId;

        return new HfGenerationConfig
        {
            DecoderStartTokenId = start,
            BosTokenId = bos,
            EosTokenIds = eos,
            PadTokenId = pad,
            ForcedBosTokenId = rules.ForcedBos,
            ForcedEosTokenId = forcedEos,
            NumBeams = rules.NumBeams,
            MaxLength = rules.MaxLength,
            MaxNewTokens = rules.MaxNewTokens,
            MinLength = rules.MinLength,
            MinNewTokens = rules.MinNewTokens,
            LengthPenalty = rules.LengthPenalty,
            EarlyStopping = rules.EarlyStopping,
            NoRepeatNgramSize = rules.NoRepeat,
            RepetitionPenalty = rules.Repetition,
            BadWordsIds = rules.BadWords,
            NewTokenLimit = rules.Limit,
        };
    }

    /// <summary>The end tokens <paramref name="file"/> names (null when it names none), each inside the vocabulary, all one id.</summary>
    private static int[]? EndTokens(HfJsonFile file, int vocabularySize)
    {
        int[]? eos = file.TokenIds("eos_token_id");
        if (eos is null) return null;
        foreach (int e in eos)
            if (e < 0 || e >= vocabularySize) throw file.Error($"'eos_token_id' {e} is outside the vocabulary of {vocabularySize}");
        if (eos.Distinct().Count() > 1)
            throw file.Error($"'eos_token_id': several end tokens ({string.Join(", ", eos)}) are not supported");
        return eos;
    }

    /// <summary>The decoding rules of one file, each checked and bounded.</summary>
    private sealed record Rules(
        int? ForcedEos, int? ForcedBos, EarlyStopping EarlyStopping, int NumBeams, int? MaxLength, int? MaxNewTokens, int MinLength,
        int? MinNewTokens, int NoRepeat, double Repetition, double LengthPenalty, int[][] BadWords, int Limit);

    /// <summary>
    /// Reads and checks the decoding rules of <paramref name="file"/>: ids inside the vocabulary, the beam within
    /// <see cref="MaxBeams"/>, lengths within the longest supported sequence (the default one within <paramref name="maxPositions"/>).
    /// </summary>
    private static Rules ReadRules(HfJsonFile file, int vocabularySize, int? maxPositions, int[] eos)
    {
        int? SourceId(string key)
        {
            int? id = file.TokenId(key);
            if (id is int v && (v < 0 || v >= vocabularySize))
                throw file.Error($"'{key}' {v} is outside the vocabulary of {vocabularySize}");
            return id;
        }
        int? forcedEos = SourceId("forced_eos_token_id");
        if (forcedEos is int f && f != eos[0])
            throw file.Error($"'forced_eos_token_id' {f} differs from 'eos_token_id' {eos[0]}, which is not supported");
        int? forcedBos = SourceId("forced_bos_token_id");

        var earlyStopping = file.Node("early_stopping") switch
        {
            null => EarlyStopping.Heuristic,
            JsonValue b when b.TryGetValue<bool>(out bool flag) => flag ? EarlyStopping.WhenFull : EarlyStopping.Heuristic,
            JsonValue s when s.TryGetValue<string>(out string? text) && text == "never" => EarlyStopping.Never,
            var other => throw file.Error($"'early_stopping' must be true, false or \"never\" (got {other.ToJsonString()})"),
        };

        int numBeams = file.Int("num_beams") ?? 1;
        if (numBeams is < 1 or > MaxBeams) throw file.Error($"'num_beams' must be between 1 and {MaxBeams} (got {numBeams})");
        // Lengths beyond the positions are accepted, as transformers accepts them; decoding stops where the positions end.
        int? maxLength = file.Size("max_length", ModelConfig.MaxPositionCount);
        int? maxNewTokens = file.Size("max_new_tokens", ModelConfig.MaxPositionCount);
        int minLength = Count(file, "min_length") ?? 0;
        int? minNewTokens = Count(file, "min_new_tokens");
        int noRepeat = Count(file, "no_repeat_ngram_size") ?? 0;
        double repetition = file.Double("repetition_penalty") ?? 1.0;
        if (!(repetition > 0) || double.IsInfinity(repetition))
            throw file.Error($"'repetition_penalty' must be a positive finite number (got {repetition})");
        double lengthPenalty = file.Double("length_penalty") ?? 1.0;
        if (!double.IsFinite(lengthPenalty)) throw file.Error("'length_penalty' must be a finite number");

        int limit = maxNewTokens
            ?? (maxLength is int m ? m - 1 : Math.Min(DefaultNewTokens, maxPositions is int p ? p - 1 : DefaultNewTokens));
        if (limit < 1) throw file.Error("'max_length' / 'max_new_tokens' leave no room for a generated token");
        int minimum = minNewTokens ?? Math.Max(0, minLength - 1);
        if (minimum > limit)
            throw file.Error($"'{(minNewTokens is null ? "min_length" : "min_new_tokens")}' asks for more tokens ({minimum}) than the length limit allows ({limit})");
        return new Rules(forcedEos, forcedBos, earlyStopping, numBeams, maxLength, maxNewTokens, minLength, minNewTokens, noRepeat,
            repetition, lengthPenalty, BadWords(file, vocabularySize, eos), limit);
    }

    /// <summary>A non-negative count no larger than the longest supported sequence.</summary>
    private static int? Count(HfJsonFile file, string key)
    {
        int? value = file.Int(key);
        if (value is < 0) throw file.Error($"'{key}' must not be negative (got {value})");
        if (value > ModelConfig.MaxPositionCount) throw file.Error($"'{key}' {value} is larger than any supported model (at most {ModelConfig.MaxPositionCount})");
        return value;
    }

    /// <summary><c>bad_words_ids</c>: a list of non-empty lists of ids inside the vocabulary; lone end tokens dropped, as transformers does.</summary>
    private static int[][] BadWords(HfJsonFile file, int vocabularySize, int[] eos)
    {
        var node = file.Node("bad_words_ids");
        if (node is null) return [];
        if (node is not JsonArray entries || entries.Count == 0)
            throw file.Error("'bad_words_ids' must be a non-empty list of lists of token ids");
        if (entries.Count > MaxBadWords)
            throw file.Error($"'bad_words_ids' has {entries.Count} entries, more than the {MaxBadWords} supported");
        var words = new List<int[]>(entries.Count);
        foreach (var entry in entries)
        {
            if (entry is not JsonArray { Count: > 0 } list || list.Count > ModelConfig.MaxPositionCount)
                throw file.Error($"'bad_words_ids': each entry must be a non-empty list of token ids (got {entry?.ToJsonString() ?? "null"})");
            var word = new int[list.Count];
            for (int i = 0; i < word.Length; i++)
            {
                if (list[i] is not JsonValue v || !v.TryGetValue<int>(out int id))
                    throw file.Error($"'bad_words_ids': each entry must be a list of token ids (got {list.ToJsonString()})");
                if (id < 0 || id >= vocabularySize)
                    throw file.Error($"'bad_words_ids': id {id} is outside the vocabulary of {vocabularySize}");
                word[i] = id;
            }
            if (word.Length == 1 && eos.Contains(word[0])) continue;
            words.Add(word);
        }
        return [.. words];
    }
}
