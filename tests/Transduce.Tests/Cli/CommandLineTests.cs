using System.CommandLine;
using System.Text.RegularExpressions;
using Transduce.Cli.Commands;
using Transduce.Tests.Import.Marian;

namespace Transduce.Tests.Cli;

/// <summary>
/// Issue 26's "a CLI that refuses what it does not understand": usage errors (exit 2, a short message and the usage
/// line on standard error), flag values in plain words, help in one style. Parse-level cases run the real command line
/// in-process (<see cref="CliProgram.Run"/>, no model is loaded before the line is understood); the others run the program.
/// </summary>
public sealed partial class CommandLineTests
{
    private static (int Code, string Out, string Err) RunInProcess(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = CliProgram.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Asserts a usage error: exit 2, nothing on standard output, the message first and the usage line on standard error, and no more.</summary>
    private static string[] AssertUsageError((int Code, string Out, string Err) r, string command, string expected)
    {
        Assert.True(r.Code == 2, $"exit {r.Code}\n{r.Err}{r.Out}");
        Assert.Equal("", r.Out);
        var lines = r.Err.TrimEnd('\n').Split('\n');
        Assert.Contains(expected, lines[0]);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(lines, l => l.StartsWith($"Usage: transduce {command}", StringComparison.Ordinal));
        Assert.True(lines.Length <= 4, r.Err);
        Assert.DoesNotContain("System.", r.Err);
        return lines;
    }

    [Fact]
    public void ATypoOfAFlagIsAUsageErrorNamingTheNearestFlag()
    {
        // The issue's acceptance, as a user runs it: nothing is translated, exit 2.
        var r = CliTests.Run(null, "translate", "--model", MarianFolders.Shipped, "--beem", "4", "x");
        var lines = AssertUsageError(r, "translate [<sentences>...] [options]", "did you mean --beam");
        Assert.Equal("error: unknown option '--beem' (did you mean --beam?)", lines[0]);
        Assert.Contains("goes after '--'", r.Err);

        AssertUsageError(RunInProcess("translate", "--model", "m", "--beem=4", "x"), "translate", "unknown option '--beem=4' (did you mean --beam?)");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--n-bset", "2", "x"), "translate", "(did you mean --n-best?)");
        AssertUsageError(RunInProcess("train", "--epoch", "2"), "train [options]", "unknown option '--epoch' (did you mean --epochs?)");
        AssertUsageError(RunInProcess("serve", "--model", "m", "--max-batchs", "3"), "serve [options]", "(did you mean --max-batch?)");
        // Far from every flag: no guess.
        Assert.Equal("error: unknown option '--zzzzzzzz'", AssertUsageError(RunInProcess("doctor", "--zzzzzzzz"), "doctor [options]", "--zzzzzzzz")[0]);
        // An unknown command, and no command at all.
        AssertUsageError(RunInProcess("trian", "--data", "x"), "[command] [options]", "unknown command 'trian' (did you mean train?)");
        AssertUsageError(RunInProcess("translat"), "[command] [options]", "(did you mean translate?)");
        AssertUsageError(RunInProcess(), "[command] [options]", "a command is needed: train, prepare, translate");
        AssertUsageError(RunInProcess("doctor", "extra"), "doctor [options]", "unexpected argument 'extra'");
    }

    [Fact]
    public void ServeLimitsOutOfRangeOrInContradictionAreUsageErrors()
    {
        // Said before any model is loaded (the model does not exist), as the usage line says where the flags go.
        AssertUsageError(RunInProcess("serve", "--model", "/nonexistent", "--queue-limit", "-3"), "serve [options]", "--queue-limit must be positive (got -3)");
        AssertUsageError(RunInProcess("serve", "--model", "/nonexistent", "--max-sentences", "500", "--queue-limit", "100"), "serve [options]",
            "--max-sentences (500) exceeds --queue-limit (100)");
        AssertUsageError(RunInProcess("serve", "--model", "/nonexistent", "--timeout-s", "0"), "serve [options]", "--timeout-s must be positive");
        // A value that is not a number is still said as such, once.
        var lines = AssertUsageError(RunInProcess("serve", "--model", "/nonexistent", "--max-batch", "many"), "serve [options]", "--max-batch");
        Assert.Single(lines, l => l.StartsWith("error: ", StringComparison.Ordinal));
        // Limits in range go on to the run, where the missing model is a failure while running (exit 1).
        var run = RunInProcess("serve", "--model", "/nonexistent", "--max-batch", "8");
        Assert.Equal(1, run.Code);
    }

    [Fact]
    public void AHugeLineOfMistakesIsSaidInAFewLines()
    {
        // 100,000 unknown flags (and a 1 MB one): the first few are said, each clipped; nothing grows with the line.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        string[] args = ["translate", "--model", "m", "--" + new string('b', 1 << 20), .. Enumerable.Range(0, 100_000).Select(i => $"--flag{i}")];
        var r = RunInProcess(args);
        Assert.Equal(2, r.Code);
        var errors = r.Err.Split('\n').Where(l => l.StartsWith("error: ", StringComparison.Ordinal)).ToList();
        Assert.Equal(5, errors.Count);
        Assert.All(errors, l => Assert.True(l.Length < 200, l));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"{watch.Elapsed}");
        var words = RunInProcess(["doctor", .. Enumerable.Range(0, 100_000).Select(i => $"word{i}")]);
        Assert.Equal(2, words.Code);
        Assert.StartsWith("error: unexpected argument 'word0'\n", words.Err);
        Assert.Equal(5 + 2, words.Err.TrimEnd('\n').Split('\n').Length);
    }

    [Fact]
    public void TextThatStartsWithADashGoesAfterTheDoubleDash()
    {
        // After "--" a flag-like word is a sentence; "-5 °C" and "- item" are sentences anywhere, and "@home" is not a
        // response file to read arguments from.
        var r = CliTests.Run(null, "translate", "--model", MarianFolders.Shipped, "-5 °C", "- item", "@home", "--", "--beem", "-x");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(5, r.Out.TrimEnd('\n').Split('\n').Length);
        AssertUsageError(RunInProcess("translate", "--model", "m", "-x"), "translate", "unknown option '-x'");
    }

    [Fact]
    public void ValuesOfTheWrongKindAreSaidInPlainWords()
    {
        AssertUsageError(RunInProcess("translate", "--model", "m", "--beam", "abc", "x"), "translate", "--beam: 'abc' is not a whole number");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--beam", "300", "x"), "translate", "--beam: 300 is out of range (from 1 to 256)");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--beam", "1e30", "x"), "translate", "--beam: '1e30' is not a whole number");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--window", "99999999999", "x"), "translate", "--window: '99999999999' is out of range (from 1 to 2147483647)");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--batch-size", "-99999999999", "x"), "translate", "--batch-size: '-99999999999' is out of range (from -2147483648 to 2147483647)");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--repetition-penalty", "1,5", "x"), "translate", "--repetition-penalty: '1,5' is not a number");
        AssertUsageError(RunInProcess("train", "--lr", "NaN"), "train", "--lr: 'NaN' is not a finite number");
        AssertUsageError(RunInProcess("translate", "--model"), "translate", "--model needs a value");
        AssertUsageError(RunInProcess("translate", "x"), "translate", "--model is required");
        AssertUsageError(RunInProcess("convert", "--from", "hf", "--out", "o"), "convert <folder> [options]", "<folder> is required");
        AssertUsageError(RunInProcess("translate", "--model", "m", "--window", "0", "x"), "translate", "--window: 0 is out of range (at least 1)");
        AssertUsageError(RunInProcess("train", "--model", "lstm"), "train", "--model: 'lstm' is not one of gru, bahdanau, transformer");
        AssertUsageError(RunInProcess("serve", "--model", "m", "--log-format", "jsno"), "serve", "--log-format: 'jsno' is not one of text, json; did you mean json?");

        // Every number flag of every command reads its value the same way.
        var root = CliProgram.CreateRoot();
        int checkedFlags = 0;
        foreach (var command in root.Subcommands)
        {
            foreach (var option in command.Options)
            {
                var type = Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType;
                if (type != typeof(int) && type != typeof(long) && type != typeof(double)) continue;
                var r = RunInProcess(command.Name, option.Name, "abc");
                Assert.True(r.Code == 2, $"{command.Name} {option.Name}: exit {r.Code}");
                string expected = $"error: {option.Name}: 'abc' is not {(type == typeof(double) ? "a number" : "a whole number")}";
                Assert.True(r.Err.Split('\n').Contains(expected), $"{command.Name} {option.Name}: {r.Err}");
                checkedFlags++;
            }
        }
        Assert.True(checkedFlags > 40, $"{checkedFlags} number flags");
    }

    [Fact]
    public void ChoicesAreAcceptedInAnyCaseAndReadAsListed()
    {
        var root = CliProgram.CreateRoot();
        Assert.Equal("json", root.Parse(["serve", "--model", "m", "--log-format", "JSON"]).GetValue<string>("--log-format"));
        Assert.Equal("text", root.Parse(["serve", "--model", "m"]).GetValue<string>("--log-format"));
        Assert.Equal("int8", root.Parse(["translate", "--model", "m", "--compute-type", "Int8"]).GetValue<string>("--compute-type"));
        Assert.Equal("transformer", root.Parse(["train", "--model", "Transformer"]).GetValue<string>("--model"));
        Assert.Equal("inverse-sqrt", root.Parse(["train", "--schedule", "INVERSE-SQRT"]).GetValue<string>("--schedule"));
        Assert.Empty(root.Parse(["score", "--hyp", "h", "--ref", "r", "--tokenize", "INTL"]).Errors);
    }

    [Fact]
    public void HelpNamesTheToolListsChoicesInLowerCaseAndDefaultsOneWay()
    {
        var root = CliProgram.CreateRoot();
        foreach (var command in root.Subcommands.Prepend(root))
        {
            string[] args = command == root ? ["--help"] : [command.Name, "--help"];
            var r = RunInProcess(args);
            Assert.Equal(0, r.Code);
            Assert.Equal("", r.Err);
            string name = command == root ? "transduce" : $"transduce {command.Name}";
            Assert.Contains($"Usage:\n  {name} ", r.Out);
            Assert.DoesNotContain("Transduce.Cli", r.Out);
            Assert.Contains(CliProgram.Epilogue, r.Out);
            foreach (Match choice in ChoiceList().Matches(r.Out))
                Assert.True(choice.Value == choice.Value.ToLowerInvariant(), $"{name}: {choice.Value}");
            // One default style: "[default: …]" at the end of a description, never "(default …)" or "default: …" inside it.
            Assert.DoesNotMatch(@"\(default|; default|Default:", r.Out);
            Assert.Equal(CliProgram.Usage(command), Regex.Match(r.Out, @"Usage:\n  (.*)\n").Groups[1].Value);
        }
        Assert.Contains("goes after '--': transduce translate [options] -- <sentences>...", RunInProcess("translate", "--help").Out);
        var serve = RunInProcess("serve", "--help").Out;
        Assert.Contains("--log-format <json|text>", serve);
        Assert.Contains("[default: text]", serve);
        var train = RunInProcess("train", "--help").Out;
        Assert.Matches(@"Epochs\. \[training\.epochs\] \[default: \d+\]\n", train);
        Assert.Contains("[text.max_steps] [default: no cut]", train);
        Assert.DoesNotContain("[default: []]", train);
        // Help wins over other mistakes on the line, as it should.
        Assert.Equal(0, RunInProcess("translate", "--beem", "--help").Code);
    }

    [Fact]
    public void EmptyInputLinesGiveEmptyOutputLines()
    {
        using var temp = new TempDir();
        string input = temp.WriteText("in.txt", "Hello\n\n  \nWorld\n");
        string[] model = ["translate", "--model", MarianFolders.Shipped];
        var reference = CliTests.Run(null, [.. model, "Hello", "World"]);
        Assert.True(reference.Code == 0, reference.Err);
        var translated = reference.Out.TrimEnd('\n').Split('\n');
        Assert.All(translated, l => Assert.NotEqual("", l));

        var fromStdin = CliTests.Run("Hello\n\n  \nWorld\n", model);
        Assert.True(fromStdin.Code == 0, fromStdin.Err);
        Assert.Equal([translated[0], "", "", translated[1]], fromStdin.Out.TrimEnd('\n').Split('\n'));

        var fromFile = CliTests.Run(null, [.. model, "--input", input, "--window", "2"]);
        Assert.True(fromFile.Code == 0, fromFile.Err);
        Assert.Equal(fromStdin.Out, fromFile.Out);

        var nBest = CliTests.Run("\nHello\n", [.. model, "--beam", "2", "--n-best", "2"]);
        Assert.True(nBest.Code == 0, nBest.Err);
        var lines = nBest.Out.Split('\n');
        Assert.Equal("", lines[0]);
        Assert.Equal(4, lines[1].Split('\t').Length);
    }

    [GeneratedRegex(@"<[^<>\s]*\|[^<>\s]*>")]
    private static partial Regex ChoiceList();
}
