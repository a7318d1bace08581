using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using Transduce.IO;

namespace Transduce.Cli.Commands;

/// <summary>
/// How flag values are read: numbers in the invariant culture with errors in plain words ("--beam: 'abc' is not a
/// whole number"), and choices matched case-insensitively, listed in lower case in the help.
/// </summary>
internal static class CliValues
{
    /// <summary>
    /// Gives every number flag of <paramref name="command"/> and its subcommands that has no parser of its own the
    /// plain-words one (System.CommandLine's says "expected type 'System.Nullable`1[System.Int32]'").
    /// </summary>
    public static void UsePlainParsers(Command command)
    {
        foreach (var option in command.Options)
        {
            switch (option)
            {
                case Option<int> o when o.CustomParser is null: o.CustomParser = r => Number<int>(r) ?? 0; break;
                case Option<int?> o when o.CustomParser is null: o.CustomParser = r => Number<int>(r); break;
                case Option<long> o when o.CustomParser is null: o.CustomParser = r => Number<long>(r) ?? 0; break;
                case Option<long?> o when o.CustomParser is null: o.CustomParser = r => Number<long>(r); break;
                case Option<double> o when o.CustomParser is null: o.CustomParser = r => Number<double>(r) ?? 0; break;
                case Option<double?> o when o.CustomParser is null: o.CustomParser = r => Number<double>(r); break;
            }
        }
        foreach (var sub in command.Subcommands) UsePlainParsers(sub);
    }

    /// <summary>
    /// The number a flag was given, within [<paramref name="min"/>, <paramref name="max"/>] when those are set; otherwise
    /// an error on <paramref name="result"/> naming the flag and saying what is wrong, and null.
    /// </summary>
    public static T? Number<T>(ArgumentResult result, T? min = null, T? max = null) where T : struct, INumber<T>
    {
        string name = FlagName(result);
        string text = string.Join(' ', result.Tokens.Select(t => t.Value));
        bool whole = typeof(T) != typeof(double) && typeof(T) != typeof(float);
        var styles = whole ? NumberStyles.Integer : NumberStyles.Float;
        if (!T.TryParse(text, styles, CultureInfo.InvariantCulture, out T value))
        {
            bool tooLarge = whole && BigInteger.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out _);
            result.AddError(tooLarge
                ? $"{name}: '{Quote(text)}' is out of range (from {Invariant(min ?? MinOf<T>())} to {Invariant(max ?? MaxOf<T>())})"
                : $"{name}: '{Quote(text)}' is not {(whole ? "a whole number" : "a number")}");
            return null;
        }
        if (!whole && !double.IsFinite(double.CreateChecked(value)))
        {
            result.AddError($"{name}: '{Quote(text)}' is not a finite number");
            return null;
        }
        if ((min is { } lo && value < lo) || (max is { } hi && value > hi))
        {
            string range = (min, max) switch
            {
                ({ } a, { } b) => $"from {Invariant(a)} to {Invariant(b)}",
                ({ } a, null) => $"at least {Invariant(a)}",
                _ => $"at most {Invariant(max!.Value)}",
            };
            result.AddError($"{name}: {Invariant(value)} is out of range ({range})");
            return null;
        }
        return value;
    }

    /// <summary>
    /// Makes <paramref name="option"/> accept one of <paramref name="choices"/>, in any case (the value read is the
    /// choice as listed), and list them as <c>&lt;a|b|c&gt;</c> in the help; anything else is an error naming the flag,
    /// the choices and the nearest one.
    /// </summary>
    public static void OneOf(Option option, IReadOnlyList<string> choices)
    {
        var text = option as Option<string> ?? throw new ArgumentException($"{option.Name} is not a text option", nameof(option));
        text.CustomParser = result =>
        {
            if (result.Tokens.Count == 0) return null;
            string given = result.Tokens[0].Value;
            if (choices.FirstOrDefault(c => string.Equals(c, given, StringComparison.OrdinalIgnoreCase)) is { } choice) return choice;
            string hint = ErrorText.Closest(given.ToLowerInvariant(), choices) is { } near ? $"; did you mean {near}?" : "";
            result.AddError($"{FlagName(result)}: '{Quote(given)}' is not one of {string.Join(", ", choices)}{hint}");
            return null;
        };
        option.CompletionSources.Add(choices.ToArray());
    }

    /// <summary>The values of <typeparamref name="TEnum"/> as the command line and configuration files spell them (kebab-case, lower case).</summary>
    public static string[] Names<TEnum>() where TEnum : struct, Enum =>
        [.. Enum.GetNames<TEnum>().Select(n => System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(n))];

    /// <summary>The <typeparamref name="TEnum"/> value a choice of <see cref="Names{TEnum}"/> names.</summary>
    public static TEnum Parse<TEnum>(string name) where TEnum : struct, Enum =>
        Enum.GetValues<TEnum>()[Array.FindIndex(Names<TEnum>(), n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) is int i and >= 0
            ? i : throw new ArgumentException($"'{name}' is not one of {string.Join(", ", Names<TEnum>())}")];

    private static string FlagName(ArgumentResult result) =>
        result.Parent is OptionResult option ? option.Option.Name : result.Argument.Name;

    private static string Quote(string text) => ErrorText.OneLine(text, 60);

    private static string Invariant<T>(T value) where T : INumber<T> => value.ToString(null, CultureInfo.InvariantCulture);

    private static T MinOf<T>() where T : struct, INumber<T> =>
        typeof(T) == typeof(int) ? T.CreateChecked(int.MinValue) : T.CreateChecked(long.MinValue);

    private static T MaxOf<T>() where T : struct, INumber<T> =>
        typeof(T) == typeof(int) ? T.CreateChecked(int.MaxValue) : T.CreateChecked(long.MaxValue);
}
