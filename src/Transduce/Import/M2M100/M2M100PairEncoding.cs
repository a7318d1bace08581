using Transduce.Text;

namespace Transduce.Import.M2M100;

/// <summary>
/// How an NLLB-200 / M2M100 model is fine-tuned, as transformers trains <c>M2M100ForConditionalGeneration</c> on what
/// <c>NllbTokenizer</c> / <c>M2M100Tokenizer</c> write with <c>src_lang</c> and <c>tgt_lang</c> set: the source is the
/// source language's token, its pieces, then <c>&lt;/s&gt;</c>; the labels are the target language's token, the target
/// pieces, then <c>&lt;/s&gt;</c>; the decoder input starts with the decoder start token <c>&lt;/s&gt;</c>, which the
/// converted vocabulary holds as its <c>&lt;bos&gt;</c> row. The languages are the run's <c>data.source_language</c> and
/// <c>data.target_language</c>, codes of the model's own table. The output bias is no parameter in transformers (its
/// <c>&lt;bos&gt;</c> row here is −∞): <c>decoder.dense.bias</c> stays fixed.
/// </summary>
internal sealed class M2M100PairEncoding : PairEncoding
{
    /// <summary>The one instance, registered as <c>m2m100</c>.</summary>
    public static M2M100PairEncoding Instance { get; } = new();

    private M2M100PairEncoding() : base("m2m100")
    {
    }

    /// <inheritdoc />
    public override IReadOnlyCollection<string> FixedParameters { get; } = ["decoder.dense.bias"];

    /// <summary>Refuses a run whose source or target language is missing or not one of the model's codes, naming the key.</summary>
    public override void Check(PairEncodingContext context)
    {
        Id(context.SourceLanguage, context.SourceLanguageIds, "source");
        Id(context.TargetLanguage, context.TargetLanguageIds, "target");
    }

    /// <inheritdoc />
    public override int[] Source(TextPipeline text, string sentence, PairEncodingContext context) =>
        [Id(context.SourceLanguage, context.SourceLanguageIds, "source"), .. base.Source(text, sentence, context)];

    /// <inheritdoc />
    public override int[] Target(TextPipeline text, string sentence, PairEncodingContext context) =>
        [Id(context.TargetLanguage, context.TargetLanguageIds, "target"), .. text.EncodeTarget(sentence)];

    private static int Id(string? code, IReadOnlyDictionary<string, int>? ids, string side)
    {
        string key = $"'data.{side}_language' (--{side}-language)";
        if (ids is null) throw new ArgumentException($"{key}: the model has no language table to fine-tune a multilingual model with");
        if (code is null)
            throw new ArgumentException($"{key}: fine-tuning a multilingual model needs the {side} language's code " +
                                        $"(e.g. {string.Join(", ", ids.Keys.Order(StringComparer.Ordinal).Take(3))})");
        return ids.TryGetValue(code, out int id) ? id : throw new ArgumentException($"{key}: {LanguageCodes.Unknown(code, ids.Keys)}");
    }
}
