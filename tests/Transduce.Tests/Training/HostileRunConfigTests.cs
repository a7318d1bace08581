using Transduce.Tests.Cli;
using Transduce.Training;

namespace Transduce.Tests.Training;

/// <summary>
/// Run configurations written to hurt: aliases that make a cycle or a billion nodes, deep nesting, huge files and
/// durations past what a <see cref="TimeSpan"/> holds are each one error naming the file and where, read from a real file.
/// </summary>
public sealed class HostileRunConfigTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("transduce-hostile-config-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string File(string name, string text)
    {
        string path = Path.Combine(dir, name);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    private static void OneLine(string message)
    {
        Assert.DoesNotContain('\n', message);
        Assert.True(message.Length < 400, message);
    }

    private string Refused(string name, string text, string expected)
    {
        string path = File(name, text);
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
        OneLine(e.Message);
        return e.Message;
    }

    [Fact]
    public void ARecursiveAliasIsRefusedAtItsAnchor()
    {
        string message = Refused("cycle.yaml", "description: x\na: &a [*a]\n", "anchors are not read (&a)");
        Assert.StartsWith(Path.Combine(dir, "cycle.yaml") + ":2:", message);
    }

    [Fact]
    public void BillionLaughsIsRefusedBeforeAnythingIsExpanded()
    {
        var text = new System.Text.StringBuilder("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (char c = 'b'; c <= 'i'; c++)
            text.Append(c).Append(": &").Append(c).Append(" [").AppendJoin(',', Enumerable.Repeat("*" + (char)(c - 1), 9)).Append("]\n");
        string message = Refused("laughs.yaml", text.ToString(), "anchors are not read");
        Assert.Contains(":1:", message);
    }

    [Fact]
    public void AnAliasAloneIsRefusedToo()
    {
        // YamlDotNet would report an unknown anchor; a known one is no more welcome: aliases are not part of a configuration.
        Refused("alias.yaml", "model:\n  architecture: *gru\n", ":2: YAML aliases are not read (*gru)");
        Refused("merge.yaml", "base: &base {layers: 2}\nmodel:\n  <<: *base\n", ":1: YAML anchors are not read (&base)");
    }

    [Fact]
    public void NestingIsBoundedBeforeTheTreeIsBuilt()
    {
        int deep = 100_000;
        Refused("deep.yaml", new string('[', deep) + new string(']', deep) + "\n", $"nest more than {32} deep");
        Refused("deep-block.yaml", string.Concat(Enumerable.Range(0, 40).Select(i => new string(' ', 2 * i) + "k:\n")) + "\n", "nest more than 32 deep");
        // A JSON configuration is held to the JSON reader's own bound (64).
        string json = File("deep.json", new string('[', deep) + new string(']', deep));
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(json));
        Assert.StartsWith(json + ":1: not valid JSON", e.Message);
        OneLine(e.Message);
        // The depth a real configuration has is read as before.
        Assert.Equal("a", RunConfig.Load(File("examples.yaml", "examples:\n  - source: a\n    reference: b\n")).Examples[0].Source);
    }

    [Fact]
    public void AFileLargerThanAMebibyteIsRefusedBeforeItIsRead()
    {
        string big = File("big.yaml", "# " + new string('x', 1 << 20) + "\n");
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(big));
        Assert.Equal($"{big}: {(1 << 20) + 3:N0} bytes; a run configuration is at most {1 << 20:N0}", e.Message);
        string bigJson = File("big.json", "{}" + new string(' ', 1 << 20));
        Assert.Contains("a run configuration is at most", Assert.Throws<InvalidDataException>(() => RunConfig.Load(bigJson)).Message);
        Assert.Contains("a run configuration is at most", Assert.Throws<InvalidDataException>(() => RunConfig.Parse(new string(' ', (1 << 20) + 1), "text")).Message);
    }

    [Theory]
    [InlineData("99999999999h")]
    [InlineData("1e300m")]
    [InlineData("1e300s")]
    [InlineData("Infinityh")]
    [InlineData("8761h")]
    [InlineData("366.00:00:00")]
    [InlineData("10675199.00:00:00")]
    public void ADurationBeyondAYearIsOneLineNamingTheField(string duration)
    {
        string message = Refused("long.yaml", $"training:\n  epochs: 2\n  time_limit: {duration}\n",
            $":3: 'training.time_limit' must be at most 365 days (8760h) (got \"{duration}\")");
        Assert.StartsWith(Path.Combine(dir, "long.yaml") + ":3:", message);
        Assert.Contains("at most 365 days", Refused("long.json", $$"""{ "training": { "time_limit": "{{duration}}" } }""", "'training.time_limit' must be at most 365 days"));
    }

    [Fact]
    public void DurationsUpToAYearAreRead()
    {
        Assert.Equal(TimeSpan.FromDays(365), RunConfig.Parse("training:\n  time_limit: 8760h\n").Training.TimeLimit);
        Assert.Equal(TimeSpan.FromDays(365), RunConfig.Parse("training:\n  time_limit: 365.00:00:00\n").Training.TimeLimit);
        Assert.Equal(TimeSpan.FromMinutes(90), RunConfig.Parse("training:\n  time_limit: 1.5h\n").Training.TimeLimit);
        Refused("negative.yaml", "training:\n  time_limit: -5m\n", ":2: 'training.time_limit' must be positive (got \"-5m\")");
        // Built in code, the same bound holds when the configuration is checked.
        var config = new RunConfig { Training = new RunConfig().Training with { TimeLimit = TimeSpan.FromDays(400) } };
        Assert.Equal("'training.time_limit' must be at most 365 days (8760h) (got 400 days)", Assert.Throws<ArgumentException>(config.Validate).Message);
    }

    [Fact]
    public void AHugeUnknownKeyOrValueIsClippedInTheErrorLine()
    {
        // YAML's plain keys stop at 1,024 characters; JSON's do not.
        Assert.Contains("…", Refused("key.yaml", $"model:\n  {new string('k', 1000)}: 1\n", ":2: unknown key 'model.kkkk"));
        Assert.Contains("…", Refused("key.json", $$"""{ "model": { "{{new string('k', 200_000)}}": 1 } }""", ": unknown key 'model.kkkk"));
        Refused("value.yaml", $"training:\n  epochs: \"{new string('9', 200_000)}\"\n", ":2: 'training.epochs' must be a whole number");
    }

    [Fact]
    public void TheCliRefusesTheProbesWithOneLineAndExitCode1()
    {
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--time-limit", "1e300"], "error: flags: 'training.time_limit' must be at most 365 days (8760h) (got \"1E+300m\")"),
            (["--time-limit", "-5"], "error: flags: 'training.time_limit' must be positive (got \"-5m\")"),
            (["--config", File("cycle.yaml", "a: &a [*a]\n")], $"error: {Path.Combine(dir, "cycle.yaml")}:1: YAML anchors are not read (&a); write the value out where it is used"),
            (["--config", File("limit.yaml", "training:\n  time_limit: 99999999999h\n")],
                $"error: {Path.Combine(dir, "limit.yaml")}:2: 'training.time_limit' must be at most 365 days (8760h) (got \"99999999999h\")"),
        })
        {
            var r = CliTests.Run(null, ["train", .. args, "--dump-config"]);
            Assert.True(r.Code == 1, r.Err + r.Out);
            Assert.Equal(expected, r.Err.TrimEnd('\n'));
        }
        var ok = CliTests.Run(null, "train", "--time-limit", "525600", "--dump-config");
        Assert.True(ok.Code == 0, ok.Err);
        Assert.Contains("time_limit: 8760h", ok.Out);
    }
}
