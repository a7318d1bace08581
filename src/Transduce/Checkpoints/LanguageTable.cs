using Transduce.Text;

namespace Transduce.Checkpoints;

/// <summary>
/// The languages of a multilingual model (NLLB-200, M2M100): each code's token in the source and the target vocabulary.
/// A source sentence starts with its language's token, decoding forces the target language's token first, and <see cref="TargetSpecials"/> (codes, <c>&lt;mask&gt;</c>)
/// are left out of the output text as transformers' <c>skip_special_tokens</c> leaves them out.
/// </summary>
/// <param name="Source">Code → source vocabulary id.</param>
/// <param name="Target">Code → target vocabulary id.</param>
/// <param name="TargetSpecials">Target ids that are never text.</param>
/// <param name="DefaultSource">The source language when a call names none (the folder's <c>src_lang</c>), or null to require one.</param>
/// <param name="DefaultTarget">The target language when a call names none (the folder's <c>tgt_lang</c>), or null to require one.</param>
internal sealed record LanguageTable(
    IReadOnlyDictionary<string, int> Source, IReadOnlyDictionary<string, int> Target, IReadOnlySet<int> TargetSpecials,
    string? DefaultSource, string? DefaultTarget)
{
    /// <summary>The codes, sorted.</summary>
    public IReadOnlyList<string> Codes => [.. Target.Keys.Order(StringComparer.Ordinal)];

    /// <summary>The source id of <paramref name="code"/> (or the default); unknown or missing throws <see cref="ArgumentException"/> naming close codes.</summary>
    public int SourceId(string? code) => Id(Source, code ?? DefaultSource, "source");

    /// <summary>The target id of <paramref name="code"/> (or the default); unknown or missing throws <see cref="ArgumentException"/> naming close codes.</summary>
    public int TargetId(string? code) => Id(Target, code ?? DefaultTarget, "target");

    private static int Id(IReadOnlyDictionary<string, int> ids, string? code, string side)
    {
        if (code is null) throw new ArgumentException($"this model is multilingual: name the {side} language (e.g. {string.Join(", ", ids.Keys.Order(StringComparer.Ordinal).Take(3))})");
        return ids.TryGetValue(code, out int id) ? id : throw new ArgumentException($"{side} language: {LanguageCodes.Unknown(code, ids.Keys)}");
    }
}
