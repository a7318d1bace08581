using Transduce.Text;

namespace Transduce.Import.T5;

/// <summary>
/// How a T5 / Flan-T5 model is fine-tuned, as transformers trains <c>T5ForConditionalGeneration</c>: the source is the
/// task prefix (the run's <c>data.source_prefix</c>, if any, which every encoding puts first) and the sentence as one text,
/// its pieces then <c>&lt;/s&gt;</c>;
/// the labels are the target pieces then <c>&lt;/s&gt;</c>; the decoder input starts with the decoder start token
/// <c>&lt;pad&gt;</c>, which the converted vocabulary holds as its <c>&lt;bos&gt;</c> row. The output bias is no parameter
/// in transformers (its <c>&lt;bos&gt;</c> row here is −∞): <c>decoder.dense.bias</c> stays fixed.
/// </summary>
internal sealed class T5PairEncoding : PairEncoding
{
    /// <summary>The one instance, registered as <c>t5</c>.</summary>
    public static T5PairEncoding Instance { get; } = new();

    private T5PairEncoding() : base("t5")
    {
    }

    /// <inheritdoc />
    public override IReadOnlyCollection<string> FixedParameters { get; } = ["decoder.dense.bias"];
}
