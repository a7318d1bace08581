using System.Text.Json.Serialization;
using Transduce.Models;
using Transduce.Text;

namespace Transduce.Training;

/// <summary>
/// Everything a training run needs besides the data itself: the model, the text pipeline, the optimisation, the
/// validation and where the data is. It is the one place where a hyper-parameter is spelled: presets are such
/// configurations (embedded YAML files), <c>transduce train</c>'s flags set its keys, <c>train --config FILE</c> reads
/// it from YAML or JSON, and every run directory keeps it as <c>train.json</c>, so <c>--resume</c> needs nothing else.
/// </summary>
/// <example>
/// <code>
/// var config = RunConfig.FromPreset("d2l-gru") with { Training = RunConfig.FromPreset("d2l-gru").Training with { Epochs = 10 } };
/// var fromFile = RunConfig.Load("run.yaml");
/// </code>
/// </example>
public sealed record RunConfig
{
    /// <summary>What this configuration is for (shown by <c>train --help</c> for presets).</summary>
    public string? Description { get; init; }

    /// <summary>The preset this configuration started from, if any (a file may name one to build on).</summary>
    public string? Preset { get; init; }

    /// <summary>
    /// Fine-tuning: the model to start from — a Transduce checkpoint (a run directory, a <c>best/</c>) or a model folder
    /// <c>Checkpoint.Load</c> reads (a MarianMT / OPUS-MT folder, and the other pretrained families it knows). Its
    /// architecture, weights, tokenizers, vocabularies and text settings are kept, so the <see cref="Model"/> and
    /// <see cref="Text"/> sections are not used (a run says so; the SentencePiece files and <c>model.extra</c>, which
    /// only a new model would use, are refused); the corpus is encoded with the model's own tokenizers, the optimiser
    /// (Adam) starts afresh, and <see cref="Training"/>, <see cref="Validation"/> and <see cref="Data"/> apply as in any
    /// run. Null (the default) trains a new model.
    /// </summary>
    public string? Init { get; init; }

    /// <summary>The model: architecture and sizes.</summary>
    public ModelOptions Model { get; init; } = new();

    /// <summary>How text becomes tokens.</summary>
    public TextOptions Text { get; init; } = new();

    /// <summary>Optimisation, batching, stopping and saving.</summary>
    public TrainingOptions Training { get; init; } = new();

    /// <summary>Held-out scoring, the best model and early stopping.</summary>
    public ValidationOptions Validation { get; init; } = new();

    /// <summary>Where the training pairs come from.</summary>
    public DataOptions Data { get; init; } = new();

    /// <summary>Sentences translated after training and scored against their references (the book's four for the d2l presets).</summary>
    public IReadOnlyList<TranslationExample> Examples { get; init; } = [];

    /// <summary>The names of the presets shipped with the library.</summary>
    public static IReadOnlyList<string> PresetNames => RunConfigFile.PresetNames;

    /// <summary>A preset by name (see <see cref="PresetNames"/>); throws <see cref="ArgumentException"/> naming the known ones otherwise.</summary>
    public static RunConfig FromPreset(string name) => RunConfigFile.Preset(name);

    /// <summary>
    /// Reads a configuration file (<c>.json</c>, or YAML: <c>.yaml</c>/<c>.yml</c>/anything else). Keys it leaves out
    /// keep their value in <paramref name="over"/> (or the preset the file names under <c>preset</c>, or the defaults).
    /// An unknown key or a value of the wrong type is an <see cref="InvalidDataException"/> naming the file, line and key.
    /// </summary>
    public static RunConfig Load(string path, RunConfig? over = null) => RunConfigFile.Load(path, over);

    /// <summary>Parses configuration text (YAML, of which JSON is a subset); <paramref name="sourceName"/> names it in errors.</summary>
    public static RunConfig Parse(string text, string sourceName = "configuration", RunConfig? over = null) =>
        RunConfigFile.Parse(text, sourceName, over);

    /// <summary>
    /// This configuration with keys set by dotted name (<c>model.hidden_size</c> = 512), as <c>train</c>'s flags do.
    /// Values are numbers, booleans, strings (enum names as in the files) or null. An unknown key is an
    /// <see cref="ArgumentException"/> naming it and <paramref name="sourceName"/>.
    /// </summary>
    public RunConfig With(IEnumerable<KeyValuePair<string, object?>> values, string sourceName = "overrides") =>
        RunConfigFile.With(this, values, sourceName);

    /// <summary>The configuration as YAML (what <c>train --dump-config</c> prints); <see cref="Parse"/> reads it back to an equal configuration.</summary>
    public string ToYaml() => RunConfigFile.ToYaml(this);

    /// <summary>The configuration as indented JSON (the run directory's <c>train.json</c>).</summary>
    public string ToJson() => RunConfigFile.ToJson(this);

    /// <summary>Checks every setting; throws <see cref="ArgumentException"/> naming the key and the problem.</summary>
    public void Validate() => RunConfigFile.Validate(this);

    /// <summary>Value equality over every section, examples included.</summary>
    public bool Equals(RunConfig? other) => other is not null && ToJson() == other.ToJson();

    /// <inheritdoc />
    public override int GetHashCode() => ToJson().GetHashCode(StringComparison.Ordinal);
}

/// <summary>A sentence to translate after training, with the reference it is scored against.</summary>
/// <param name="Source">The source sentence.</param>
/// <param name="Reference">The expected translation.</param>
public sealed record TranslationExample(string Source, string Reference);

/// <summary>The model section of a <see cref="RunConfig"/>: architecture and sizes (vocabulary sizes come from the data).</summary>
public sealed record ModelOptions
{
    /// <summary>
    /// Architecture: one of <see cref="Architectures"/> — <c>gru</c> (d2l §10.7), <c>bahdanau</c> (§11.4),
    /// <c>transformer</c> (§11.7), or one added with <see cref="ModelRegistry.Register"/>.
    /// </summary>
    public string Architecture { get; init; } = "gru";

    /// <summary>The architecture names the library knows: the built-in ones and those registered in this process.</summary>
    public static IReadOnlyList<string> Architectures => ModelRegistry.Names;

    /// <summary>Embedding width of the recurrent models (a Transformer's embeddings are <see cref="HiddenSize"/> wide).</summary>
    public int EmbeddingSize { get; init; } = 256;

    /// <summary>Hidden (model) width.</summary>
    public int HiddenSize { get; init; } = 256;

    /// <summary>Recurrent layers, or Transformer blocks, in the encoder and in the decoder.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Transformer: attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Transformer: inner width of the position-wise feed-forward network.</summary>
    public int FfnSize { get; init; } = 64;

    /// <summary>Transformer: feed-forward activation.</summary>
    public FeedForwardActivation Activation { get; init; } = FeedForwardActivation.Relu;

    /// <summary>Transformer: layer norm before each sub-layer (pre-norm) instead of after it (post-norm, the book's).</summary>
    public bool PreNorm { get; init; }

    /// <summary>Transformer: the output projection shares the target embedding.</summary>
    public bool TieEmbeddings { get; init; }

    /// <summary>Transformer: encoder and decoder share one embedding (and so one joint vocabulary).</summary>
    public bool ShareEmbeddings { get; init; }

    /// <summary>Dropout probability while training.</summary>
    public double Dropout { get; init; } = 0.2;

    /// <summary>
    /// Settings of a registered architecture of your own that the keys above do not cover, by key, as text
    /// (<c>model.extra</c>: a mapping whose values are numbers, booleans or text, all read as text); its <c>configure</c>
    /// function gets them as <see cref="ModelSettings.Extra"/>. The built-in architectures take none. Null (the default)
    /// is none, and leaves the key out of the files written.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? Extra { get; init; }

    /// <summary>The common settings this section gives every architecture's <c>configure</c> function.</summary>
    public ModelSettings ToModelSettings() =>
        new(EmbeddingSize, HiddenSize, Layers, Heads, FfnSize,
            Activation switch
            {
                FeedForwardActivation.Relu => "relu",
                FeedForwardActivation.Gelu => "gelu",
                FeedForwardActivation.GeluTanh => "gelu_tanh",
                FeedForwardActivation.Swish => "swish",
                FeedForwardActivation.GatedGeluTanh => "gated_gelu_tanh",
                FeedForwardActivation.Swiglu => "swiglu",
                _ => throw new ArgumentOutOfRangeException(nameof(Activation), Activation, "unknown feed-forward activation"),
            },
            PreNorm, TieEmbeddings, ShareEmbeddings, Dropout) { Extra = new Dictionary<string, string>(Extra ?? new Dictionary<string, string>(), StringComparer.Ordinal) };

    /// <summary>The model configuration for vocabularies of these sizes (the one mapping from this section to a model).</summary>
    internal ModelConfig ToModelConfig(int sourceVocabSize, int targetVocabSize, int padId) =>
        ModelRegistry.Get(Architecture).Configure(ToModelSettings(), sourceVocabSize, targetVocabSize, padId);
}

/// <summary>A Transformer's feed-forward activation.</summary>
public enum FeedForwardActivation
{
    /// <summary>max(0, x), the paper's and the book's.</summary>
    Relu,

    /// <summary>Gaussian error linear unit.</summary>
    Gelu,

    /// <summary>x · sigmoid(x) (SiLU), as Marian models use.</summary>
    Swish,

    /// <summary>GELU with the tanh approximation (transformers' <c>gelu_new</c>).</summary>
    GeluTanh,

    /// <summary>Gated GELU (tanh approximation): W₂(gelu(W₁x) ⊙ Vx), as T5 v1.1 and Flan-T5.</summary>
    GatedGeluTanh,

    /// <summary>Gated SiLU (SwiGLU): W₂(silu(W₁x) ⊙ Vx).</summary>
    Swiglu,
}

/// <summary>The text section of a <see cref="RunConfig"/>: normalisation, tokenisation and vocabularies.</summary>
public sealed record TextOptions
{
    /// <summary>
    /// Word tokens (the book's), joint BPE subwords learnt from the training data (cased, natural output), or the
    /// SentencePiece model of <see cref="SpmModel"/> (trained beforehand, e.g. with <c>spm_train</c>).
    /// </summary>
    public TokenizerKind Tokenizer { get; init; } = TokenizerKind.Word;

    /// <summary>
    /// With the <c>spm</c> tokenizer: the SentencePiece model file (<c>.model</c>) of the source side, and of the target
    /// side too unless <see cref="SpmTargetModel"/> is set. The vocabularies hold the pieces the training data uses
    /// (at least <see cref="MinFrequency"/> times; one joint vocabulary with <see cref="ModelOptions.ShareEmbeddings"/>);
    /// the models travel in the checkpoint.
    /// </summary>
    public string? SpmModel { get; init; }

    /// <summary>With the <c>spm</c> tokenizer: the target side's SentencePiece model file (default: <see cref="SpmModel"/>).</summary>
    public string? SpmTargetModel { get; init; }

    /// <summary>Text normalisation; null picks the tokenizer's usual one (<c>d2l</c> for words, <c>none</c> for subwords).</summary>
    public NormalizerKind? Normalizer { get; init; }

    /// <summary>BPE vocabulary size (with the <c>bpe</c> tokenizer).</summary>
    public int BpeVocabSize { get; init; } = 8000;

    /// <summary>
    /// Most training pairs the BPE model is learnt from (as spm_train's <c>input_sentence_size</c>): a larger corpus is
    /// sampled uniformly under the run's seed, in one pass, so that <c>prepare</c> streams a corpus larger than memory.
    /// </summary>
    public int BpeSamplePairs { get; init; } = 1_000_000;

    /// <summary>Minimum token frequency for word vocabularies.</summary>
    public int MinFrequency { get; init; } = 1;

    /// <summary>Cut sentences to this many tokens including <c>&lt;eos&gt;</c> (d2l's <c>num_steps</c>); null keeps them whole.</summary>
    public int? MaxSteps { get; init; }

    /// <summary>The normaliser in effect: <see cref="Normalizer"/>, or the tokenizer's usual one.</summary>
    [JsonIgnore]
    public NormalizerKind EffectiveNormalizer => Normalizer ?? (Tokenizer == TokenizerKind.Word ? NormalizerKind.D2l : NormalizerKind.None);

    internal TextConfig ToTextConfig() => new()
    {
        Normalizer = EffectiveNormalizer == NormalizerKind.D2l ? "d2l" : "none",
        Tokenizer = Tokenizer switch { TokenizerKind.Bpe => "bpe", TokenizerKind.Spm => "spm", _ => "word" },
        MaxSteps = MaxSteps,
    };
}

/// <summary>How training text is split into tokens.</summary>
public enum TokenizerKind
{
    /// <summary>Split on spaces after normalisation (d2l).</summary>
    Word,

    /// <summary>Joint byte-pair-encoding subwords learnt from the training data.</summary>
    Bpe,

    /// <summary>A SentencePiece model per side, trained beforehand (<see cref="TextOptions.SpmModel"/>).</summary>
    Spm,
}

/// <summary>How text is normalised before tokenisation.</summary>
public enum NormalizerKind
{
    /// <summary>d2l's: lower-case, non-breaking spaces to spaces, a space before punctuation.</summary>
    D2l,

    /// <summary>Text as it is.</summary>
    None,
}

/// <summary>The validation section of a <see cref="RunConfig"/>: held-out scoring, the best model, early stopping.</summary>
public sealed record ValidationOptions
{
    /// <summary>Validation corpus (tab-separated); null: no validation, unless the data folder has <see cref="DataOptions.ValidFile"/>.</summary>
    public string? File { get; init; }

    /// <summary>Validate every N updates; null validates at every epoch end. The final weights are always validated too.</summary>
    public int? Every { get; init; }

    /// <summary>
    /// Validate every this fraction of <see cref="TrainingOptions.TimeLimit"/> of training time (0.1: ten times in the run),
    /// so a small corpus and a large one, a slow machine and a fast one, get as many validations. Used when
    /// <see cref="Every"/> is not set and the run has a time limit; otherwise validation follows <see cref="Every"/> or epoch ends.
    /// </summary>
    public double? EveryFraction { get; init; }

    /// <summary>Validate on the first N pairs only.</summary>
    public int? MaxPairs { get; init; }

    /// <summary>The measure that chooses the best model (kept in <c>best/</c>) and drives early stopping.</summary>
    public ValidationMetric Metric { get; init; } = ValidationMetric.Bleu;

    /// <summary>Stop after this many validations without improvement; null never stops early.</summary>
    public int? Patience { get; init; }
}

/// <summary>What makes one model better than another on the validation pairs.</summary>
public enum ValidationMetric
{
    /// <summary>Higher corpus BLEU of greedy translations.</summary>
    Bleu,

    /// <summary>Lower teacher-forced cross-entropy.</summary>
    Loss,
}

/// <summary>One corpus of <see cref="DataOptions.Corpora"/>.</summary>
public sealed record CorpusSource
{
    /// <summary>A tab-separated corpus file, a folder holding <c>fra.txt</c> or <c>train.tsv</c>, or a known corpus name.</summary>
    public string? Path { get; init; }

    /// <summary>How often an epoch sees each of its pairs on average (positive; fractions are sampled under the seed).</summary>
    public double Weight { get; init; } = 1;
}

/// <summary>The data section of a <see cref="RunConfig"/>: where the training pairs come from.</summary>
public sealed record DataOptions
{
    /// <summary>
    /// The corpus: a tab-separated file, a folder (its <see cref="TrainFile"/> if present, else <c>fra.txt</c>/<c>train.tsv</c>),
    /// a source-side text file (with <see cref="Target"/>), or a known corpus name (<c>fra-eng</c>, downloaded into the cache).
    /// Null when the pairs are given in memory.
    /// </summary>
    public string? Train { get; init; }

    /// <summary>
    /// Several corpora instead of <see cref="Train"/>, each a file or folder (or a known corpus name) with a weight: an epoch
    /// sees each pair of a corpus <c>weight</c> times on average — weight 2 twice, weight 0.5 with probability one half,
    /// drawn under the seed for each epoch. The corpora are prepared one after the other into one set of token shards
    /// (the text side is learnt from all of them, exact repeats are dropped across them) and trained from the mapped shards.
    /// </summary>
    public IReadOnlyList<CorpusSource>? Corpora { get; init; }

    /// <summary>Target-side text file aligned line by line with the source file <see cref="Train"/>.</summary>
    public string? Target { get; init; }

    /// <summary>When <see cref="Train"/> is a folder holding this file: train on it (a split such as <c>train.tsv</c>, keeping test sentences out).</summary>
    public string? TrainFile { get; init; }

    /// <summary>When <see cref="Train"/> is a folder holding this file and no validation file is set: validate on it.</summary>
    public string? ValidFile { get; init; }

    /// <summary>Train on the first N pairs only.</summary>
    public int? MaxPairs { get; init; }

    /// <summary>With <see cref="MaxPairs"/>: build the word vocabularies from the first N pairs (d2l counts train + validation).</summary>
    public int? VocabularyPairs { get; init; }

    /// <summary>Skip malformed corpus lines (and count them) instead of stopping at the first.</summary>
    public bool SkipInvalid { get; init; }

    /// <summary>Drop training pairs with a side longer than this many tokens (after tokenization, as the model sees them).</summary>
    public int? MaxLength { get; init; }

    /// <summary>Drop training pairs whose longer side has more than this many times the tokens of the shorter (at least 1).</summary>
    public double? MaxLengthRatio { get; init; }

    /// <summary>Drop training pairs whose source and target are the same text.</summary>
    public bool DropIdentical { get; init; }

    /// <summary>Drop training pairs that repeat an earlier pair exactly.</summary>
    public bool DropDuplicates { get; init; }

    /// <summary>Name of the source language, shown by <c>serve</c> (e.g. English); a multilingual model's code (NLLB: eng_Latn) when one is fine-tuned.</summary>
    public string? SourceLanguage { get; init; }

    /// <summary>Name of the target language, shown by <c>serve</c> (e.g. French); a multilingual model's code (NLLB: fra_Latn) when one is fine-tuned.</summary>
    public string? TargetLanguage { get; init; }

    /// <summary>Text put before each source sentence when a pretrained model that takes its task as a prefix (T5) is fine-tuned, e.g. "translate English to French: ".</summary>
    public string? SourcePrefix { get; init; }
}
