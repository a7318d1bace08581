using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Transduce.IO;

namespace Transduce.Cli.Commands;

/// <summary>
/// The <c>transduce</c> command line: its commands, and what it does with a line it does not understand. A usage error
/// (an unknown flag or command, a missing or malformed value) is a short message and the command's usage line on
/// standard error and exit code 2; a failure while running (a bad file, a bad model) is one <c>error:</c> line and exit
/// code 1 (<see cref="CliErrors"/>).
/// </summary>
internal static class CliProgram
{
    /// <summary>Exit code of a command line that was not understood.</summary>
    public const int UsageError = 2;

    /// <summary>What every <c>--help</c> ends with.</summary>
    internal const string Epilogue =
        "Exit codes: 0 done; 1 failed while running (a bad file, model or setting: one 'error:' line on standard error); " +
        "2 the command line was not understood (an unknown flag or command, a missing or malformed value: the message and the usage line on standard error).";

    /// <summary>The root command, <c>transduce</c>, with every subcommand.</summary>
    public static Command CreateRoot()
    {
        // A Command, not a RootCommand: the root's name is the executable's file name (Transduce.Cli under `dotnet`).
        var root = new Command("transduce", "Transduce: encoder–decoder sequence-to-sequence models for .NET (train, prepare, translate, evaluate, score, serve, convert, average, doctor).")
        {
            TrainCommand.Create(),
            PrepareCommand.Create(),
            TranslateCommand.Create(),
            EvaluateCommand.Create(),
            ScoreCommand.Create(),
            ServeCommand.Create(),
            ConvertCommand.Create(),
            AverageCommand.Create(),
            DoctorCommand.Create(),
        };
        var help = new HelpOption();
        help.Action = new HelpWithEpilogue((SynchronousCommandLineAction)help.Action!);
        root.Options.Add(help);
        root.Options.Add(new VersionOption());
        CliValues.UsePlainParsers(root);
        return root;
    }

    /// <summary>Parses <paramref name="args"/> and runs the command they name; returns the process's exit code.</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        var root = CreateRoot();
        // No response files: a sentence that starts with '@' is a sentence, not a file to read arguments from.
        var parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        var io = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        if (output is not null) io.Output = output;
        if (error is not null) io.Error = error;
        bool ownAction = parse.Action is not null && parse.Action == parse.CommandResult.Command.Action;
        if (parse.Action is ParseErrorAction || (ownAction && UnknownFlags(parse).Count > 0) || parse.Action is null)
        {
            WriteUsageError(parse, io.Error);
            return UsageError;
        }
        return CliErrors.Run(() => parse.Invoke(io));
    }

    /// <summary>The usage line of <paramref name="command"/>, as the help shows it: <c>transduce translate [&lt;sentences&gt;...] [options]</c>.</summary>
    public static string Usage(Command command)
    {
        var parts = Path(command).Select(c => c.Name).ToList();
        if (command.Subcommands.Count > 0) parts.Add("[command]");
        foreach (var argument in command.Arguments.Where(a => !a.Hidden))
        {
            string label = $"<{argument.HelpName ?? argument.Name}>" + (argument.Arity.MaximumNumberOfValues > 1 ? "..." : "");
            parts.Add(argument.Arity.MinimumNumberOfValues == 0 ? $"[{label}]" : label);
        }
        if (VisibleOptions(command).Any()) parts.Add("[options]");
        return string.Join(' ', parts);
    }

    private static void WriteUsageError(ParseResult parse, TextWriter error)
    {
        var command = parse.CommandResult.Command;
        var lines = new List<string>();
        var unknown = UnknownFlags(parse);
        bool isRoot = parse.CommandResult.Parent is null;
        // At the root, the first word that is not a command is the mistake; the flags after it were meant for that command.
        foreach (string token in isRoot ? unknown.Take(1) : unknown)
        {
            string shown = ErrorText.OneLine(token, 60);
            if (LooksLikeFlag(token))
            {
                string name = token.Split('=', ':')[0];
                string? near = ErrorText.Closest(name, VisibleOptions(command).Select(o => o.Name));
                lines.Add($"unknown option '{shown}'" + (near is null ? "" : $" (did you mean {near}?)"));
            }
            else if (isRoot)
            {
                string? near = ErrorText.Closest(token, command.Subcommands.Select(c => c.Name));
                lines.Add($"unknown command '{shown}'" + (near is null ? "" : $" (did you mean {near}?)"));
            }
            else
            {
                lines.Add($"unexpected argument '{shown}'");
            }
        }
        foreach (var e in parse.Errors)
        {
            if (lines.Count >= MaxReported) break;
            if (e.SymbolResult is CommandResult && isRoot)
            {
                // "Required command was not provided."
                if (unknown.Count == 0) lines.Add($"a command is needed: {string.Join(", ", command.Subcommands.Select(c => c.Name))}");
                continue;
            }
            // The unmatched tokens are said above, with a suggestion (all of them, unless there are more than can be said).
            if (e.SymbolResult is CommandResult && unknown.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal))) continue;
            lines.Add(Say(e));
        }
        if (lines.Count == 0) lines.Add("a command is needed");
        WriteUsageError(command, lines, error);
    }

    /// <summary>
    /// For a command line read word by word whose values do not fit (a limit out of range, two that contradict each
    /// other): <paramref name="message"/> as a usage error, before the command does anything. Returns the exit code, 2.
    /// </summary>
    public static int RefuseValues(ParseResult parse, string message)
    {
        WriteUsageError(parse.CommandResult.Command, [ErrorText.OneLine(message)], parse.InvocationConfiguration.Error);
        return UsageError;
    }

    private static void WriteUsageError(Command command, List<string> lines, TextWriter error)
    {
        foreach (string line in lines.Distinct()) error.WriteLine($"error: {line}");
        error.WriteLine($"Usage: {Usage(command)}");
        string help = string.Join(' ', Path(command).Select(c => c.Name)) + " --help";
        error.WriteLine(command.Arguments.Count > 0
            ? $"'{help}' lists the options; an argument that starts with '-' goes after '--'."
            : $"'{help}' lists the options.");
    }

    /// <summary>System.CommandLine's message in plain words where it has a plainer one.</summary>
    private static string Say(ParseError e) => e.SymbolResult switch
    {
        OptionResult { IdentifierTokenCount: 0 } o => $"{o.Option.Name} is required",
        OptionResult { Tokens.Count: 0 } o when o.Option.Arity.MinimumNumberOfValues > 0 => $"{o.Option.Name} needs a value",
        ArgumentResult { Tokens.Count: 0 } a when a.Argument.Arity.MinimumNumberOfValues > 0 => $"<{a.Argument.Name}> is required",
        CommandResult c when c.Command.Arguments.FirstOrDefault(a => a.Arity.MinimumNumberOfValues > 0 && c.GetResult(a) is null or { Tokens.Count: 0 }) is { } missing
            => $"<{missing.Name}> is required",
        _ => ErrorText.OneLine(e.Message),
    };

    /// <summary>
    /// Tokens the parser could not place, and those that look like a flag (<c>-x</c>, <c>--x</c>) but were taken as a
    /// command's argument because no flag has that name: a typo of a flag is an error, not a sentence to translate.
    /// After <c>--</c> every token is an argument.
    /// </summary>
    internal static List<string> UnknownFlags(ParseResult parse)
    {
        // At most MaxReported of them: a command line of 100,000 words is read once, not compared with itself.
        var unknown = new List<string>(parse.UnmatchedTokens.Take(MaxReported));
        var beforeDoubleDash = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        foreach (var token in parse.Tokens)
        {
            if (token.Type == TokenType.DoubleDash) break;
            beforeDoubleDash.Add(token);
        }
        for (SymbolResult? result = parse.CommandResult; result is not null; result = result.Parent)
        {
            if (result is not CommandResult commandResult) continue;
            foreach (var argument in commandResult.Children.OfType<ArgumentResult>())
            {
                foreach (var token in argument.Tokens)
                {
                    if (unknown.Count >= MaxReported) return unknown;
                    if (LooksLikeFlag(token.Value) && beforeDoubleDash.Contains(token) && !unknown.Contains(token.Value)) unknown.Add(token.Value);
                }
            }
        }
        return unknown;
    }

    /// <summary>Mistakes said at most: the first few are enough to fix a command line.</summary>
    private const int MaxReported = 5;

    /// <summary><c>--x…</c> or <c>-x…</c> with a letter (or <c>-?</c>): "-5 °C", "- item" and "-- so" are text.</summary>
    private static bool LooksLikeFlag(string token) =>
        token.Length >= 2 && token[0] == '-' && (char.IsAsciiLetter(token[1]) || token[1] == '?' || (token[1] == '-' && token.Length > 2 && char.IsAsciiLetter(token[2])));

    private static IEnumerable<Command> Path(Command command)
    {
        var path = new List<Command>();
        for (Command? c = command; c is not null; c = c.Parents.OfType<Command>().FirstOrDefault()) path.Insert(0, c);
        return path;
    }

    /// <summary>The options a command takes: its own, and its parents' recursive ones (--help).</summary>
    private static IEnumerable<Option> VisibleOptions(Command command) =>
        command.Options.Concat(Path(command).SkipLast(1).SelectMany(c => c.Options.Where(o => o.Recursive))).Where(o => !o.Hidden);

    /// <summary>The help, then the exit codes (and where a sentence that starts with '-' goes).</summary>
    private sealed class HelpWithEpilogue(SynchronousCommandLineAction help) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            int code = help.Invoke(parseResult);
            var output = parseResult.InvocationConfiguration.Output;
            var command = parseResult.CommandResult.Command;
            if (command.Arguments.Count > 0)
            {
                output.WriteLine($"An argument that starts with '-' goes after '--': {string.Join(' ', Path(command).Select(c => c.Name))} [options] -- <{command.Arguments[^1].Name}>...");
                output.WriteLine();
            }
            output.WriteLine(Epilogue);
            return code;
        }
    }
}
