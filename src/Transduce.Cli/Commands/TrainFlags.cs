using System.CommandLine;
using System.Text.Json.Nodes;
using Transduce.Models;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary>
/// <c>train</c>'s flags: each sets keys of the run configuration (<see cref="RunConfig"/>), over the preset and the
/// <c>--config</c> file. Defaults are not repeated here: the help shows the configuration's own.
/// </summary>
internal static class TrainFlags
{
    /// <summary>A flag and the configuration keys it sets when given.</summary>
    internal sealed record Flag(Option Option, Func<ParseResult, IEnumerable<KeyValuePair<string, object?>>> Values);

    private static readonly JsonObject Defaults = JsonNode.Parse(new RunConfig().ToJson())!.AsObject();

    /// <summary>The description, the configuration key, and the key's default as System.CommandLine shows an option's ("[default: 10]").</summary>
    private static string WithDefault(string description, string key)
    {
        JsonNode? node = Defaults;
        foreach (string part in key.Split('.')) node = node?[part];
        int verbal = description.LastIndexOf(" [default: ", StringComparison.Ordinal);   // a default said in words, not a value
        if (verbal >= 0) return $"{description[..verbal]} [{key}]{description[verbal..]}";
        return node is null or JsonArray { Count: 0 } ? $"{description} [{key}]" : $"{description} [{key}] [default: {node.ToJsonString().Trim('"')}]";
    }

    private static Flag Value<T>(string name, string key, string description, Func<T, object?>? convert = null, string[]? choices = null)
    {
        var option = new Option<T>(name) { Description = WithDefault(description, key) };
        if (choices is not null) CliValues.OneOf(option, choices);
        return new Flag(option, r => r.GetResult(option) is { Implicit: false }
            ? [new(key, convert is null ? r.GetValue(option) : convert(r.GetValue(option)!))]
            : []);
    }

    private static Flag Switch(string name, string key, string description)
    {
        var option = new Option<bool>(name) { Description = description + $" [{key}]" };
        return new Flag(option, r => r.GetResult(option) is { Implicit: false } ? [new(key, r.GetValue(option))] : []);
    }

    // Declared before All, which uses it.
    private static Option<int?> MaxPairs { get; } = new("--max-pairs") { Description = "Train on the first N pairs only (vocabularies from the same pairs). [data.max_pairs]" };

    /// <summary>Every configuration flag, in the order <c>--help</c> lists them.</summary>
    public static IReadOnlyList<Flag> All { get; } =
    [
        Value<string>("--data", "data.train", "Corpus: a tab-separated file, a folder (its train split if the preset names one), a source-side text file (with --data-target), or a known corpus name (fra-eng, downloaded into the cache)."),
        Value<string>("--data-target", "data.target", "Target-side text file aligned line by line with the --data source file."),
        Value<string>("--init", "init", "Fine-tune: start from this model, a Transduce checkpoint (a run directory, a best/) or an OPUS-MT (MarianMT) folder. Its architecture, weights, tokenizers and text settings are kept (the model and text flags are not used); Adam starts afresh."),
        Value<string>("--model", "model.architecture", $"Architecture: {string.Join(", ", ModelOptions.Architectures)}.", choices: [.. ModelOptions.Architectures]),
        Value<int>("--embed", "model.embedding_size", "Embedding size of the recurrent models."),
        Value<int>("--hidden", "model.hidden_size", "Hidden size."),
        Value<int>("--layers", "model.layers", "Layers."),
        Value<int>("--heads", "model.heads", "Transformer attention heads."),
        Value<int>("--ffn", "model.ffn_size", "Transformer feed-forward width."),
        Value<string>("--activation", "model.activation", "Transformer feed-forward activation.", choices: CliValues.Names<FeedForwardActivation>()),
        Switch("--pre-norm", "model.pre_norm", "Transformer: layer norm before each sub-layer (off: post-norm, as the book)."),
        Switch("--tie-embeddings", "model.tie_embeddings", "Transformer: output projection shares the target embedding."),
        Switch("--share-embeddings", "model.share_embeddings", "Transformer: encoder and decoder share one embedding (builds one joint vocabulary)."),
        Value<double>("--dropout", "model.dropout", "Dropout."),
        Value<string>("--tokenizer", "text.tokenizer", "word (d2l: split on spaces), bpe (joint subword vocabulary trained on the data; cased, natural output) or spm (a SentencePiece model trained beforehand, --spm-model).", choices: CliValues.Names<TokenizerKind>()),
        Value<string>("--spm-model", "text.spm_model", "SentencePiece model file (e.g. from spm_train) for --tokenizer spm: the source side's, and the target side's unless --spm-target-model is given."),
        Value<string>("--spm-target-model", "text.spm_target_model", "SentencePiece model file of the target side (with --tokenizer spm)."),
        Value<string>("--normalize", "text.normalizer", "Text normaliser: d2l (lower-case, space before punctuation) or none. [default: d2l for words, none for bpe]", choices: CliValues.Names<NormalizerKind>()),
        Value<int>("--bpe-vocab", "text.bpe_vocab_size", "BPE vocabulary size (with --tokenizer bpe)."),
        Value<int>("--min-freq", "text.min_frequency", "Minimum token frequency for the word vocabularies."),
        Value<int>("--max-steps", "text.max_steps", "Cut sentences to this many tokens incl. <eos> (d2l's num_steps). [default: no cut]"),
        Value<int>("--epochs", "training.epochs", "Epochs."),
        Value<int>("--batch-size", "training.batch_size", "Sentence pairs per batch."),
        Value<double>("--lr", "training.learning_rate", "Adam learning rate."),
        Value<string>("--schedule", "training.schedule", "Learning-rate schedule: constant or inverse-sqrt (linear warm-up, then 1/√step).", choices: CliValues.Names<LearningRateSchedule>()),
        Value<int>("--warmup", "training.warmup_steps", "Warm-up updates of the inverse-sqrt schedule."),
        Value<string>("--freeze", "training.freeze", "Keep these parts of the model fixed (comma-separated): embeddings (token embeddings, learned positions and what shares them, e.g. a tied output layer), encoder.",
            convert: s => new JsonArray([.. s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => (JsonNode)JsonValue.Create(p))])),
        Value<double>("--label-smoothing", "training.label_smoothing", "Label smoothing ε."),
        Value<int>("--accumulate", "training.accumulate_steps", "Mini-batches per optimiser update (gradient accumulation)."),
        Value<double>("--clip", "training.gradient_clip", "Gradient-norm clip, 0 for none."),
        Value<int>("--seed", "training.seed", "Random seed (initialisation, dropout, batch order)."),
        Switch("--bucketed", "training.bucketed", "Length-bucketed batches: similar lengths together, little padding."),
        Value<int>("--max-tokens", "training.max_tokens", "Length-bucketed batches of at most N padded tokens (implies --bucketed)."),
        Value<double>("--time-limit", "training.time_limit", "Stop after this many minutes of training (the final weights are saved and validated).",
            minutes => JsonValue.Create(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{minutes:R}m"))),   // bounded as a file's duration is
        Value<int>("--max-updates", "training.max_updates", "Stop after this many optimiser updates."),
        Value<int>("--save-every", "training.save_every_steps", "Also write a resumable checkpoint every N updates (it is written at every epoch end)."),
        Value<int>("--keep-last", "training.keep_last", "Also keep the models of the last K saves in OUT/history (for transduce average)."),
        Value<int>("--average-last", "training.average_last", "At the end, average the last K saves, validate the average and keep it in OUT/best if it wins."),
        Value<string>("--precision", "training.precision", "Compute precision: fp32, bf16 (matmuls in bfloat16; weights, optimiser state, layer norms, softmax and loss in float32; checkpoints stay float32), or auto (the faster of the two on this machine, measured when the run starts).",
            convert: s => TrainingPrecisions.Parse(s).Name(), choices: ["fp32", "bf16", "float32", "bfloat16", "auto"]),
        Value<int>("--threads", "training.threads", "libtorch intra-op threads. [default: all cores]"),
        Value<string>("--valid", "validation.file", "Validation corpus (tab-separated): loss and greedy BLEU at every epoch end (or --valid-every), and on the final weights."),
        Value<int>("--valid-every", "validation.every", "Validate every N updates instead of at epoch ends."),
        Value<double>("--valid-fraction", "validation.every_fraction", "Validate every this fraction of --time-limit (0.1: every 6 minutes of a 60-minute run) instead of at epoch ends; --valid-every wins when both are set."),
        Value<int>("--valid-max", "validation.max_pairs", "Validate on the first N pairs only."),
        Value<string>("--keep-best", "validation.metric", "Keep the best model in OUT/best by this validation metric: bleu or loss.", choices: CliValues.Names<ValidationMetric>()),
        Value<int>("--patience", "validation.patience", "Stop early after N validations without improvement."),
        new Flag(MaxPairs, r => r.GetResult(MaxPairs) is { Implicit: false }
            ? [new("data.max_pairs", r.GetValue(MaxPairs)), new("data.vocabulary_pairs", null)]
            : []),
        Switch("--skip-invalid", "data.skip_invalid", "Skip malformed corpus lines (and count them) instead of stopping."),
        Value<int>("--filter-max-length", "data.max_length", "Drop training pairs with a side over N tokens (after tokenization)."),
        Value<double>("--filter-length-ratio", "data.max_length_ratio", "Drop training pairs whose longer side has more than R times the tokens of the shorter."),
        Switch("--drop-identical", "data.drop_identical", "Drop training pairs whose source and target are the same text."),
        Switch("--drop-duplicates", "data.drop_duplicates", "Drop training pairs that repeat an earlier pair exactly."),
        Value<string>("--source-language", "data.source_language", "Name of the source language, shown by serve (e.g. English); the language code when fine-tuning a multilingual model (NLLB: eng_Latn)."),
        Value<string>("--target-language", "data.target_language", "Name of the target language, shown by serve (e.g. French); the language code when fine-tuning a multilingual model (NLLB: fra_Latn)."),
        Value<string>("--source-prefix", "data.source_prefix", "Text put before each source sentence when fine-tuning a model that takes its task as a prefix (T5: \"translate English to French: \")."),
    ];

    /// <summary><c>--preset NAME</c>: the configuration to start from.</summary>
    public static Option<string?> PresetOption()
    {
        var preset = new Option<string?>("--preset") { Description = $"Start from a preset: {string.Join(", ", RunConfig.PresetNames)}. --config and flags override it." };
        CliValues.OneOf(preset, [.. RunConfig.PresetNames]);
        return preset;
    }

    /// <summary><c>--config FILE</c>: a configuration file over the preset.</summary>
    public static Option<string?> ConfigOption() =>
        new("--config") { Description = "Run configuration file (YAML or JSON, as train --dump-config prints); flags override it." };

    /// <summary>The run configuration of a command line: the preset, then the file, then the flags.</summary>
    public static RunConfig Compose(ParseResult result, Option<string?> preset, Option<string?> config)
    {
        var settings = result.GetValue(preset) is { } name ? RunConfig.FromPreset(name) : new RunConfig();
        if (result.GetValue(config) is { } file) settings = RunConfig.Load(file, settings);
        return settings.With(Given(result), "flags");
    }

    /// <summary>The keys the given flags set, in flag order.</summary>
    public static List<KeyValuePair<string, object?>> Given(ParseResult result) => [.. All.SelectMany(f => f.Values(result))];

    /// <summary>The names of the given flags other than those in <paramref name="allowed"/>.</summary>
    public static IEnumerable<string> GivenNames(ParseResult result, params string[] allowed) =>
        All.Where(f => f.Values(result).Any() && !allowed.Contains(f.Option.Name)).Select(f => f.Option.Name);
}
