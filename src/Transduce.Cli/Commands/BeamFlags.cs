using System.CommandLine;
using System.CommandLine.Parsing;
using Transduce.Inference;

namespace Transduce.Cli.Commands;

/// <summary>
/// The beam-size flags (<c>--beam</c>, <c>--n-best</c>, <c>--max-beam</c>): integers from 1 to
/// <see cref="BeamSearchOptions.MaxBeamSize"/>, anything else one error naming the flag and the range.
/// </summary>
internal static class BeamFlags
{
    /// <summary>An optional <c>--beam</c> (unset: the model's own).</summary>
    public static Option<int?> Beam(string description) =>
        new("--beam") { Description = description, CustomParser = Parse };

    /// <summary>A beam-size flag with a default.</summary>
    public static Option<int> WithDefault(string name, string description, int fallback) =>
        new(name) { Description = description, CustomParser = r => Parse(r) ?? fallback, DefaultValueFactory = _ => fallback };

    private static int? Parse(ArgumentResult result) => CliValues.Number<int>(result, 1, BeamSearchOptions.MaxBeamSize);
}
