using Transduce.Text;

namespace Transduce.Import.Marian;

/// <summary>
/// How a MarianMT model is fine-tuned, as transformers trains <c>MarianMTModel</c>: the source is its SentencePiece pieces
/// then <c>&lt;/s&gt;</c>; the labels are the target pieces (target SentencePiece model) then <c>&lt;/s&gt;</c>; the decoder
/// input starts with the decoder start token <c>&lt;pad&gt;</c>, which the converted vocabulary holds as its <c>&lt;bos&gt;</c>
/// row — the framing batching gives every pair, so the ids are the pipeline's. <c>final_logits_bias</c> is a buffer in
/// transformers, never trained: its row here, <c>decoder.dense.bias</c>, stays fixed.
/// </summary>
internal sealed class MarianPairEncoding : PairEncoding
{
    /// <summary>The one instance, registered as <c>marian</c>.</summary>
    public static MarianPairEncoding Instance { get; } = new();

    private MarianPairEncoding() : base("marian")
    {
    }

    /// <inheritdoc />
    public override IReadOnlyCollection<string> FixedParameters { get; } = ["decoder.dense.bias"];
}
