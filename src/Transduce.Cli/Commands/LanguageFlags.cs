using System.CommandLine;
using Transduce.Translation;

namespace Transduce.Cli.Commands;

/// <summary>The <c>--source-lang</c> / <c>--target-lang</c> flags of translate and evaluate, for multilingual models (NLLB).</summary>
internal static class LanguageFlags
{
    public static (Option<string?> Source, Option<string?> Target) Create() =>
        (new Option<string?>("--source-lang") { Description = "Source language of a multilingual model (NLLB: e.g. eng_Latn). [default: the folder's src_lang]" },
         new Option<string?>("--target-lang") { Description = "Target language of a multilingual model (NLLB: e.g. fra_Latn), forced as the first output token." });

    /// <summary><paramref name="options"/> with the languages given on the command line (unchanged when none is).</summary>
    public static TranslationOptions Apply(ParseResult r, (Option<string?> Source, Option<string?> Target) flags, TranslationOptions options) =>
        options with
        {
            SourceLanguage = r.GetValue(flags.Source) ?? options.SourceLanguage,
            TargetLanguage = r.GetValue(flags.Target) ?? options.TargetLanguage,
        };
}
