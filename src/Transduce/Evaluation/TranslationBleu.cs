using Transduce.Text;

namespace Transduce.Evaluation;

/// <summary>Corpus BLEU of a model's translations against raw references, the way the model's text pipeline calls for.</summary>
internal static class TranslationBleu
{
    /// <summary>
    /// A natural-text model (subwords, no normaliser) is scored like sacreBLEU: raw references, 13a tokenisation.
    /// A word-level model writes normalised, space-separated tokens; its references go through the same normaliser
    /// and tokenizer, and BLEU is computed on those tokens (sacreBLEU's tokenizer <c>none</c>).
    /// </summary>
    public static BleuScore Score(TextPipeline pipeline, IReadOnlyList<string> translations, IEnumerable<string> references)
    {
        var canonical = references.Select(pipeline.Canonical).ToList();
        return SacreBleu.CorpusScore(translations, [canonical], new BleuOptions { Tokenize = pipeline.ProducesNaturalText ? "13a" : "none" });
    }
}
