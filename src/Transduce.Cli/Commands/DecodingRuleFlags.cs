using System.CommandLine;
using Transduce.Translation;

namespace Transduce.Cli.Commands;

/// <summary>
/// The logit-rule flags of translate and evaluate (<c>--min-length</c>, <c>--no-repeat-ngram-size</c>,
/// <c>--repetition-penalty</c>), read into <see cref="TranslationOptions"/>; unset, each keeps the model's own setting.
/// </summary>
internal sealed class DecodingRuleFlags
{
    private readonly Option<int?> minLength = new("--min-length")
    {
        Description = "No </s> before an output holds N tokens (transformers' min_new_tokens). [default: the model's own, e.g. a Hugging Face folder's min_length − 1, else 0]",
    };

    private readonly Option<int?> noRepeat = new("--no-repeat-ngram-size")
    {
        Description = "No n-gram of N tokens occurs twice in an output (transformers' no_repeat_ngram_size; 0 turns it off). [default: the model's own]",
    };

    private readonly Option<double?> repetition = new("--repetition-penalty")
    {
        Description = "transformers' repetition_penalty: scores of tokens already in the output are multiplied (negative) or divided (positive) by it — logits in greedy search, log-probabilities in beam search (1 turns it off). [default: the model's own]",
    };

    /// <summary>The flags, to add to a command.</summary>
    public IEnumerable<Option> Options => [minLength, noRepeat, repetition];

    /// <summary><paramref name="options"/> with the rules the command line chose.</summary>
    public TranslationOptions Apply(ParseResult r, TranslationOptions options) => options with
    {
        MinLength = r.GetValue(minLength) ?? options.MinLength,
        NoRepeatNgramSize = r.GetValue(noRepeat) ?? options.NoRepeatNgramSize,
        RepetitionPenalty = r.GetValue(repetition) ?? options.RepetitionPenalty,
    };
}
