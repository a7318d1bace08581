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
/// <remarks>
/// With NLLB's <c>legacy_behaviour</c> (<see cref="Legacy"/>, <c>m2m100-legacy</c>) both sides are
/// <c>pieces &lt;/s&gt; [lang]</c> (<c>NllbTokenizer</c>'s suffix <c>[eos, lang_code]</c> and no prefix, for the source
/// and for <c>text_target</c>): the language code comes after the end token, so this encoding gives each sequence whole
/// and batching appends nothing (<see cref="SpecialIds.AppendEos"/> false). Decoding still forces the target code first,
/// as <c>generate</c> does with <c>forced_bos_token_id</c> in either mode.
/// </remarks>
internal sealed class M2M100PairEncoding : PairEncoding
{
    /// <summary>The encoding of the language code first, registered as <c>m2m100</c>.</summary>
    public static M2M100PairEncoding Instance { get; } = new("m2m100", legacy: false);

    /// <summary>NLLB's <c>legacy_behaviour</c> (the code after <c>&lt;/s&gt;</c>), registered as <c>m2m100-legacy</c>.</summary>
    public static M2M100PairEncoding Legacy { get; } = new("m2m100-legacy", legacy: true);

    private readonly bool legacy;

    private M2M100PairEncoding(string name, bool legacy) : base(name) => this.legacy = legacy;

    /// <summary>
    /// A sequence of a multilingual family around its <paramref name="pieces"/>, up to the end token batching appends:
    /// <c>[code] pieces</c>, or whole with <paramref name="legacy"/>: <c>pieces &lt;/s&gt; [code]</c>.
    /// </summary>
    internal static int[] Around(int[] pieces, int code, int eos, bool legacy) => legacy ? [.. pieces, eos, code] : [code, .. pieces];

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
        Around(base.Source(text, sentence, context), Id(context.SourceLanguage, context.SourceLanguageIds, "source"), text.Source.Vocabulary.EosId, legacy);

    /// <inheritdoc />
    public override int[] Target(TextPipeline text, string sentence, PairEncodingContext context) =>
        Around(text.EncodeTarget(sentence), Id(context.TargetLanguage, context.TargetLanguageIds, "target"), text.Target.Vocabulary.EosId, legacy);

    /// <inheritdoc />
    public override SpecialIds Ids(Vocabulary target) => base.Ids(target) with { AppendEos = !legacy };

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
