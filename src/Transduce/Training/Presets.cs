namespace Transduce.Training;

/// <summary>A named, complete training setting (model sizes, optimisation and data selection).</summary>
public sealed record TrainingPreset
{
    /// <summary>Preset name, e.g. <c>d2l-gru</c>.</summary>
    public required string Name { get; init; }

    /// <summary>What it reproduces.</summary>
    public required string Description { get; init; }

    /// <summary>Architecture.</summary>
    public string Architecture { get; init; } = "gru";

    /// <summary>Embedding width.</summary>
    public int EmbeddingSize { get; init; } = 256;

    /// <summary>Hidden width.</summary>
    public int HiddenSize { get; init; } = 256;

    /// <summary>Layers.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Transformer attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Transformer FFN width.</summary>
    public int FfnSize { get; init; } = 64;

    /// <summary>Dropout.</summary>
    public double Dropout { get; init; } = 0.2;

    /// <summary>Training settings.</summary>
    public TrainingOptions Training { get; init; } = new();

    /// <summary>Truncation length (d2l's <c>num_steps</c>), or null for none.</summary>
    public int? MaxSteps { get; init; }

    /// <summary>Train on the first N pairs of the corpus, or all when null.</summary>
    public int? TrainPairs { get; init; }

    /// <summary>Build the vocabularies from the first N pairs (d2l uses train + validation), or from the training pairs when null.</summary>
    public int? VocabularyPairs { get; init; }

    /// <summary>Minimum token frequency for the vocabularies.</summary>
    public int MinFrequency { get; init; } = 1;

    /// <summary>Text normaliser name.</summary>
    public string Normalizer { get; init; } = "d2l";

    /// <summary>Tokenizer: <c>word</c> (the book's) or <c>bpe</c> (joint subwords learnt from the training data).</summary>
    public string Tokenizer { get; init; } = "word";

    /// <summary>BPE vocabulary size (with <see cref="Tokenizer"/> <c>bpe</c>).</summary>
    public int BpeVocabSize { get; init; } = 8000;

    /// <summary>Transformer: layer norm before each sub-layer (pre-norm) instead of after it.</summary>
    public bool PreNorm { get; init; }

    /// <summary>Transformer: the output projection shares the target embedding.</summary>
    public bool TieEmbeddings { get; init; }

    /// <summary>Transformer: encoder and decoder share one embedding (and one vocabulary).</summary>
    public bool ShareEmbeddings { get; init; }

    /// <summary>
    /// When <c>--data</c> is a folder: the training file to read from it, if present (a split such as <c>train.tsv</c>,
    /// so that held-out test sentences stay out of training); null reads the folder's default corpus file.
    /// </summary>
    public string? TrainFile { get; init; }

    /// <summary>When <c>--data</c> is a folder holding this file and no <c>--valid</c> is given: validate on it.</summary>
    public string? ValidFile { get; init; }

    /// <summary>Validate every N updates (with a validation file).</summary>
    public int? ValidEvery { get; init; }

    /// <summary>
    /// Validate every this fraction of the time limit (with a validation file and a time limit; without a time limit,
    /// at epoch ends): as many validations on a small corpus as on a large one, and on a slow machine as on a fast one.
    /// </summary>
    public double? ValidEveryFraction { get; init; }

    /// <summary>Sentences the book translates after training, with its references (empty for non-book presets).</summary>
    public IReadOnlyList<(string Source, string Reference)> Examples { get; init; } = [];

    /// <summary>The book's four example sentences and references (d2l §10.7).</summary>
    public static IReadOnlyList<(string Source, string Reference)> BookExamples { get; } =
    [
        ("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."), ("i'm home .", "je suis chez moi ."),
    ];

    /// <summary>Every preset by name.</summary>
    public static IReadOnlyDictionary<string, TrainingPreset> All { get; } = new Dictionary<string, TrainingPreset>
    {
        ["d2l-gru"] = new()
        {
            Name = "d2l-gru",
            Description = "d2l §10.7: GRU seq2seq on the first 512 pairs of fra.txt (vocabularies from the first 640, min frequency 2), " +
                          "num_steps 9, batch 128, embed 256, hidden 256, 2 layers, dropout 0.2, Adam lr 0.005, 30 epochs, clip 1",
            Architecture = "gru", EmbeddingSize = 256, HiddenSize = 256, Layers = 2, Dropout = 0.2,
            Training = new TrainingOptions { Epochs = 30, BatchSize = 128, LearningRate = 0.005, GradientClip = 1 },
            MaxSteps = 9, TrainPairs = 512, VocabularyPairs = 640, MinFrequency = 2, Normalizer = "d2l",
            Examples = BookExamples,
        },
        ["d2l-bahdanau"] = new()
        {
            Name = "d2l-bahdanau",
            Description = "d2l §11.4: GRU encoder + Bahdanau-attention GRU decoder, same data as d2l-gru, " +
                          "embed 256, hidden 256, 2 layers, dropout 0.2, Adam lr 0.005, 30 epochs, clip 1",
            Architecture = "bahdanau", EmbeddingSize = 256, HiddenSize = 256, Layers = 2, Dropout = 0.2,
            Training = new TrainingOptions { Epochs = 30, BatchSize = 128, LearningRate = 0.005, GradientClip = 1 },
            MaxSteps = 9, TrainPairs = 512, VocabularyPairs = 640, MinFrequency = 2, Normalizer = "d2l",
            Examples = BookExamples,
        },
        ["d2l-transformer"] = new()
        {
            Name = "d2l-transformer",
            Description = "d2l §11.7: Transformer, same data as d2l-gru, 256 hidden, 2 blocks, 4 heads, FFN 64, dropout 0.2, " +
                          "Adam lr 0.001, 30 epochs, clip 1",
            Architecture = "transformer", EmbeddingSize = 256, HiddenSize = 256, Layers = 2, Heads = 4, FfnSize = 64, Dropout = 0.2,
            Training = new TrainingOptions { Epochs = 30, BatchSize = 128, LearningRate = 0.001, GradientClip = 1 },
            MaxSteps = 9, TrainPairs = 512, VocabularyPairs = 640, MinFrequency = 2, Normalizer = "d2l",
            Examples = BookExamples,
        },
        ["transformer-base-cpu"] = new()
        {
            Name = "transformer-base-cpu",
            Description = "The best BLEU one hour of training on a 2-core CPU gives on fra-eng train.tsv: joint BPE 8k, cased, no " +
                          "normalisation; pre-norm Transformer 3+3 layers, 256 wide, 4 heads, FFN 1024, shared and tied embeddings, " +
                          "dropout 0.1; batches of at most 4,096 padded tokens from length buckets; Adam lr 0.001 with 400 warm-up " +
                          "updates then 1/sqrt(step); label smoothing 0.1; clip 1; bf16 mixed precision; 60 minutes; validates on valid.tsv every tenth of the time limit",
            Architecture = "transformer", EmbeddingSize = 256, HiddenSize = 256, Layers = 3, Heads = 4, FfnSize = 1024, Dropout = 0.1,
            PreNorm = true, TieEmbeddings = true, ShareEmbeddings = true, Tokenizer = "bpe", BpeVocabSize = 8000, Normalizer = "none",
            Training = new TrainingOptions
            {
                Epochs = 100, BatchSize = 512, MaxTokens = 4096, Bucketed = true, LearningRate = 0.001, Schedule = "inverse-sqrt",
                WarmupSteps = 400, LabelSmoothing = 0.1, GradientClip = 1, TimeLimit = TimeSpan.FromMinutes(60),
                Precision = Models.ComputeType.BFloat16,
            },
            TrainFile = "train.tsv", ValidFile = "valid.tsv", ValidEveryFraction = 0.1,
        },
    };
}
