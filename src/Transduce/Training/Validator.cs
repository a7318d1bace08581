using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Evaluation;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Training;

/// <summary>One validation: teacher-forced loss and greedy corpus BLEU on the validation pairs.</summary>
/// <param name="Step">Optimiser updates at the time.</param>
/// <param name="Loss">Token-weighted mean masked cross-entropy.</param>
/// <param name="Bleu">Corpus BLEU of greedy translations (13a on natural text, else on the normalised tokens).</param>
public sealed record ValidationResult(int Step, double Loss, double Bleu)
{
    /// <summary>Which weights were measured: <c>update 500</c>, <c>the final weights (update 953)</c>, <c>the average of the last 5 saves (…)</c>.</summary>
    public string? Weights { get; init; }

    /// <summary>True when these weights were the average of several saves (<see cref="TrainingOptions.AverageLast"/>).</summary>
    public bool Averaged { get; init; }

    /// <summary>True when this validation beat every earlier one and its weights went to <c>best/</c>.</summary>
    public bool IsBest { get; init; }
}

/// <summary>
/// Scores a model during training on held-out pairs. The model is put in eval mode for the measurement and back
/// in training mode afterwards; no random numbers are drawn, so validating does not change the training run.
/// </summary>
internal sealed class Validator
{
    private readonly IReadOnlyList<SentencePair> pairs;
    private readonly int batchSize;
    private readonly PairEncodingContext context;
    private IReadOnlyList<EncodedPair>? encoded;

    /// <summary>
    /// Validates on <paramref name="pairs"/>, decoding <paramref name="batchSize"/> sentences at a time (one run: its vocabularies
    /// must not change between calls); the loss is measured on pairs encoded as the run's training pairs (<paramref name="context"/>).
    /// </summary>
    public Validator(IReadOnlyList<SentencePair> pairs, int batchSize = 64, PairEncodingContext? context = null)
    {
        if (pairs.Count == 0) throw new ArgumentException("validation: no pairs", nameof(pairs));
        this.pairs = pairs;
        this.batchSize = batchSize;
        this.context = context ?? new PairEncodingContext();
    }

    /// <summary>Measures <paramref name="checkpoint"/>'s model as it is now.</summary>
    public ValidationResult Run(Checkpoint checkpoint, int step)
    {
        var model = checkpoint.Model;
        var pipeline = checkpoint.CreateTextPipeline();
        var ids = checkpoint.PairEncoding.Ids(checkpoint.TargetVocabulary);
        // The vocabularies of a run do not change: tokenise the validation pairs once.
        encoded ??= TranslationData.Encode(pairs, pipeline, checkpoint.PairEncoding, context).Pairs;
        int? maxSteps = Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength);
        model.eval();
        try
        {
            double lossSum = 0;
            long tokens = 0;
            using (no_grad())
            {
                foreach (var chunk in encoded.Chunk(batchSize))
                {
                    using var scope = NewDisposeScope();
                    using var batch = Batching.Build(chunk, ids, maxSteps);
                    var logits = model.call(batch.Source, batch.SourceValidLengths, batch.TargetInput);
                    lossSum += Seq2SeqLoss.MaskedCrossEntropy(logits, batch.TargetOutput, ids.Pad).item<float>() * batch.TargetTokens;
                    tokens += batch.TargetTokens;
                }
            }
            using var translator = new Translator(checkpoint, ownsCheckpoint: false);
            // Decoded as the pairs were encoded: the run's source prefix, and its languages for a multilingual model.
            bool multilingual = checkpoint.Languages is not null;
            var options = new TranslationOptions
            {
                BatchSize = batchSize, Prefix = context.SourcePrefix,
                SourceLanguage = multilingual ? context.SourceLanguage : null, TargetLanguage = multilingual ? context.TargetLanguage : null,
            };
            var outputs = translator.Translate(pairs.Select(p => p.Source).ToList(), options);
            var bleu = TranslationBleu.Score(pipeline, outputs, pairs.Select(p => p.Target));
            return new ValidationResult(step, lossSum / Math.Max(1, tokens), bleu.Score);
        }
        finally
        {
            model.train();
        }
    }
}
