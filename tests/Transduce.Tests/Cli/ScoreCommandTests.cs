using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Evaluation;

namespace Transduce.Tests.Cli.Score;

/// <summary>Files holding the hypotheses and references of <c>../shared/testdata/sacrebleu/fra-test.json</c>.</summary>
public sealed class FraTestFiles : IDisposable
{
    public FraTestFiles()
    {
        Directory.CreateDirectory(Dir);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(JsonPath));
        var root = doc.RootElement;
        Hyps = Strings(root.GetProperty("hyps"));
        var refs = root.GetProperty("refs").EnumerateArray().Select(Strings).ToList();
        Cases = root.GetProperty("cases").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.Clone());

        // Trailing newline on the hypotheses, none on the first reference, CRLF line ends on the second:
        // all three must read as the same number of segments.
        Hyp = Write("hyp.txt", string.Join('\n', Hyps) + "\n");
        Ref1 = Write("ref1.txt", string.Join('\n', refs[0]));
        Ref2 = Write("ref2.txt", string.Join("\r\n", refs[1]) + "\r\n");
        ShortRef = Write("short-ref.txt", string.Join('\n', refs[0].Take(refs[0].Count - 1)) + "\n");
    }

    public static string JsonPath =>
        Path.GetFullPath(Path.Combine(TestPaths.SharedData, "..", "testdata", "sacrebleu", "fra-test.json"));

    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "transduce-score-" + Guid.NewGuid().ToString("N"));

    public List<string> Hyps { get; }

    public Dictionary<string, JsonElement> Cases { get; }

    public string Hyp { get; }

    public string Ref1 { get; }

    public string Ref2 { get; }

    public string ShortRef { get; }

    public string Write(string name, string content)
    {
        string path = Path.Combine(Dir, name);
        File.WriteAllText(path, content, new UTF8Encoding(false));
        return path;
    }

    public void Dispose() => Directory.Delete(Dir, recursive: true);

    private static List<string> Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToList();
}

/// <summary><c>transduce score</c> against the figures sacreBLEU 2.6.0 computed, run as a child process.</summary>
public sealed class ScoreCommandTests(FraTestFiles files) : IClassFixture<FraTestFiles>
{
    private const double Tolerance = 0.01;

    // Independent child processes run side by side: most of each one's time is start-up.
    private static (int Code, string Out, string Err)[] RunAll(params string[][] argSets) =>
        Task.WhenAll(argSets.Select(a => Task.Run(() => CliTests.Run(null, ["score", .. a])))).GetAwaiter().GetResult();

    private void AssertCase(JsonNode actual, string caseName)
    {
        var expected = files.Cases[caseName];
        Assert.Equal(expected.GetProperty("signature").GetString(), actual["signature"]!.GetValue<string>());
        double score = expected.GetProperty("score").GetDouble();
        Assert.InRange(actual["score"]!.GetValue<double>(), score - Tolerance, score + Tolerance);
        if (expected.GetProperty("counts").ValueKind == JsonValueKind.Array)
        {
            Assert.Equal("BLEU", actual["name"]!.GetValue<string>());
            Assert.Equal(expected.GetProperty("counts").EnumerateArray().Select(e => e.GetInt64()),
                actual["counts"]!.AsArray().Select(n => n!.GetValue<long>()));
            Assert.Equal(expected.GetProperty("totals").EnumerateArray().Select(e => e.GetInt64()),
                actual["totals"]!.AsArray().Select(n => n!.GetValue<long>()));
            Assert.Equal(expected.GetProperty("sys_len").GetInt64(), actual["sys_len"]!.GetValue<long>());
            Assert.Equal(expected.GetProperty("ref_len").GetInt64(), actual["ref_len"]!.GetValue<long>());
            Assert.Equal(expected.GetProperty("bp").GetDouble(), actual["bp"]!.GetValue<double>(), 1e-9);
        }
    }

    [Fact]
    public void CorpusScoresMatchSacreBleu()
    {
        Assert.True(File.Exists(FraTestFiles.JsonPath), $"sacreBLEU test vectors not found at '{FraTestFiles.JsonPath}'.");
        var runs = RunAll(
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--metric", "bleu,chrf", "--metric", "chrf++", "--json"],
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--ref", files.Ref2, "--json"],
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--tokenize", "intl", "--json"],
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--lowercase", "--json"],
            ["--hyp", files.Hyp, "--ref", files.Ref1]);
        foreach (var r in runs) Assert.True(r.Code == 0, r.Err + r.Out);

        var several = JsonNode.Parse(runs[0].Out)!.AsArray();
        Assert.Equal(["BLEU", "chrF2", "chrF2++"], several.Select(n => n!["name"]!.GetValue<string>()));
        AssertCase(several[0]!, "bleu-13a");
        AssertCase(several[1]!, "chrf");
        AssertCase(several[2]!, "chrf++");
        AssertCase(JsonNode.Parse(runs[1].Out)!, "bleu-13a-2refs");
        AssertCase(JsonNode.Parse(runs[2].Out)!, "bleu-intl");
        AssertCase(JsonNode.Parse(runs[3].Out)!, "bleu-lowercase");

        // Text: sacreBLEU's `-f text` line with its default width of one decimal.
        Assert.Equal(
            "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 61.5 78.0/65.8/57.0/48.9 " +
            "(BP = 1.000 ratio = 1.053 hyp_len = 3707 ref_len = 3522)\n",
            runs[4].Out);
    }

    [Fact]
    public void SentenceScoresMatchSacreBleu()
    {
        var runs = RunAll(
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--sentence", "--metric", "chrf", "--json"],
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--sentence", "--width", "3"]);
        foreach (var r in runs) Assert.True(r.Code == 0, r.Err + r.Out);

        var chrf = JsonNode.Parse(runs[0].Out)!.AsArray();
        Assert.Equal(files.Hyps.Count, chrf.Count);
        var expectedChrF = files.Cases["chrf-sentence"];
        var chrfScores = expectedChrF.GetProperty("scores").EnumerateArray().Select(e => e.GetDouble()).ToList();
        for (int i = 0; i < chrfScores.Count; i++)
        {
            Assert.Equal(i + 1, chrf[i]!["line"]!.GetValue<int>());
            Assert.Equal(expectedChrF.GetProperty("signature").GetString(), chrf[i]!["signature"]!.GetValue<string>());
            Assert.InRange(chrf[i]!["score"]!.GetValue<double>(), chrfScores[i] - Tolerance, chrfScores[i] + Tolerance);
        }

        var lines = runs[1].Out.TrimEnd('\n').Split('\n');
        Assert.Equal(files.Hyps.Count, lines.Length);
        var expectedBleu = files.Cases["bleu-13a-sentence"];
        string prefix = "BLEU|" + expectedBleu.GetProperty("signature").GetString() + " = ";
        var bleuScores = expectedBleu.GetProperty("scores").EnumerateArray().Select(e => e.GetDouble()).ToList();
        for (int i = 0; i < bleuScores.Count; i++)
        {
            Assert.StartsWith(prefix, lines[i]);
            double score = double.Parse(lines[i][prefix.Length..].Split(' ')[0], CultureInfo.InvariantCulture);
            Assert.InRange(score, bleuScores[i] - Tolerance, bleuScores[i] + Tolerance);
        }
    }

    [Fact]
    public void BadInputsEndWithOneClearLineAndExitCodeOne()
    {
        string missing = Path.Combine(files.Dir, "missing-ref.txt");
        string badUtf8 = Path.Combine(files.Dir, "bad-utf8.txt");
        File.WriteAllBytes(badUtf8, [(byte)'o', (byte)'k', (byte)'\n', 0xC3, 0x28, (byte)'\n']);
        string twoLines = files.Write("two.txt", "a b\nc d\n");
        var runs = RunAll(
            ["--hyp", files.Hyp, "--ref", files.Ref1, "--ref", files.ShortRef],
            ["--hyp", files.Hyp, "--ref", missing],
            ["--hyp", badUtf8, "--ref", twoLines],
            ["--hyp", twoLines, "--ref", twoLines, "--metric", "bleu,ter"],
            ["--hyp", twoLines, "--ref", twoLines, "--metric", "bleu,chrf", "--sentence"]);

        foreach (var r in runs)
        {
            Assert.Equal(1, r.Code);
            Assert.StartsWith("error: ", r.Err);
            Assert.DoesNotContain("   at ", r.Err);
            Assert.Equal("", r.Out);
        }
        Assert.Contains($"{files.Hyp} has 600 lines but {files.ShortRef} has 599", runs[0].Err);
        Assert.Contains(missing, runs[1].Err);
        Assert.Contains($"{badUtf8}:2:", runs[2].Err);
        Assert.Contains("unknown metric 'ter'", runs[3].Err);
        Assert.Contains("--sentence", runs[4].Err);
    }

    [Fact]
    public void SegmentFilesReadLikeSacreBleu()
    {
        string path = files.Write("segments.txt", "one  \r\n\ntwo\t\nthree\n");
        Assert.Equal(["one", "", "two", "three"], SegmentFiles.Read(path));
        File.WriteAllText(path, "");
        Assert.Empty(SegmentFiles.Read(path));
        File.WriteAllText(path, "\n");
        Assert.Equal([""], SegmentFiles.Read(path));
    }

    [Theory]
    [InlineData(6.25, 1, "6.2")]
    [InlineData(6.35, 1, "6.3")] // 6.35 is stored as 6.3499999…
    [InlineData(0.125, 2, "0.12")]
    [InlineData(2.5, 0, "2")]
    [InlineData(61.48482115206891, 1, "61.5")]
    [InlineData(1.0, 3, "1.000")]
    [InlineData(100.00000000000004, 1, "100.0")]
    [InlineData(0.0, 2, "0.00")]
    public void FixedFormatsLikePython(double value, int decimals, string expected) =>
        Assert.Equal(expected, ScoreFormat.Fixed(value, decimals));
}
