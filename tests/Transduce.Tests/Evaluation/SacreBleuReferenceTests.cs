using System.Text.Json;
using Transduce.Evaluation;

namespace Transduce.Tests.Evaluation;

/// <summary>
/// Checks BLEU and chrF against the figures sacreBLEU itself computed for
/// <c>../shared/testdata/sacrebleu/fra-test.json</c> (see that folder's README). Each case's settings are
/// read from its sacreBLEU signature, so every case in the file is exercised.
/// </summary>
public sealed class SacreBleuReferenceTests
{
    private const string MissingMarker = "<fra-test.json missing>";
    private const double Tolerance = 0.01;

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        string? path = TestDataPath();
        if (path is null || !File.Exists(path))
        {
            data.Add(MissingMarker);
            return data;
        }
        foreach (var c in Load().RootElement.GetProperty("cases").EnumerateArray())
            data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Fact]
    public void TestDataFileIsPresent()
    {
        string? path = TestDataPath();
        Assert.True(path is not null && File.Exists(path),
            $"sacreBLEU test vectors not found at '{path ?? "<no Transduce.sln above " + AppContext.BaseDirectory + ">"}'. " +
            "They live in <repo>/../shared/testdata/sacrebleu/fra-test.json.");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesSacreBleu(string caseName)
    {
        if (caseName == MissingMarker)
            Assert.Fail($"sacreBLEU test vectors not found at '{TestDataPath()}'; cannot verify the metrics.");

        using var doc = Load();
        var root = doc.RootElement;
        var hyps = Strings(root.GetProperty("hyps"));
        var streams = root.GetProperty("refs").EnumerateArray().Select(Strings).ToList();
        var c = root.GetProperty("cases").EnumerateArray().Single(x => x.GetProperty("name").GetString() == caseName);

        string signature = c.GetProperty("signature").GetString()!;
        var sig = signature.Split('|').Select(p => p.Split(':', 2)).ToDictionary(p => p[0], p => p[1]);
        int nrefs = int.Parse(sig["nrefs"], System.Globalization.CultureInfo.InvariantCulture);
        var refs = streams.Take(nrefs).ToList();
        Assert.Equal(nrefs, refs.Count);
        bool sentence = c.GetProperty("kind").GetString() == "sentence";

        if (sig.ContainsKey("tok"))
        {
            var options = new BleuOptions(
                Tokenize: sig["tok"],
                Lowercase: sig["case"] == "lc",
                Smooth: sig["smooth"].Split('[')[0],
                EffectiveOrder: sig["eff"] == "yes");
            if (sentence)
            {
                CheckSentences(c, hyps, refs, signature,
                    (h, r) => { var s = SacreBleu.SentenceScore(h, r, options); return (s.Score, s.Signature); });
            }
            else
            {
                var s = SacreBleu.CorpusScore(hyps, refs, options);
                Assert.Equal(signature, s.Signature);
                Assert.InRange(s.Score, c.GetProperty("score").GetDouble() - Tolerance, c.GetProperty("score").GetDouble() + Tolerance);
                Assert.Equal(Longs(c.GetProperty("counts")), s.Counts);
                Assert.Equal(Longs(c.GetProperty("totals")), s.Totals);
                Assert.Equal(c.GetProperty("sys_len").GetInt64(), s.SysLen);
                Assert.Equal(c.GetProperty("ref_len").GetInt64(), s.RefLen);
                Assert.Equal(c.GetProperty("bp").GetDouble(), s.BrevityPenalty, 1e-9);
                var precisions = c.GetProperty("precisions").EnumerateArray().Select(p => p.GetDouble()).ToList();
                for (int i = 0; i < precisions.Count; i++) Assert.Equal(precisions[i], s.Precisions[i], 1e-9);
            }
        }
        else if (sig.ContainsKey("nc"))
        {
            var options = new ChrFOptions(
                CharOrder: int.Parse(sig["nc"], System.Globalization.CultureInfo.InvariantCulture),
                WordOrder: int.Parse(sig["nw"], System.Globalization.CultureInfo.InvariantCulture),
                Lowercase: sig["case"] == "lc",
                Whitespace: sig["space"] == "yes",
                EpsSmoothing: sig["eff"] == "no");
            if (sentence)
            {
                CheckSentences(c, hyps, refs, signature,
                    (h, r) => { var s = ChrF.SentenceScore(h, r, options); return (s.Score, s.Signature); });
            }
            else
            {
                var s = ChrF.CorpusScore(hyps, refs, options);
                Assert.Equal(signature, s.Signature);
                double expected = c.GetProperty("score").GetDouble();
                Assert.InRange(s.Score, expected - Tolerance, expected + Tolerance);
            }
        }
        else
        {
            Assert.Fail($"Case '{caseName}' has a signature of an unsupported metric: {signature}");
        }
    }

    private static void CheckSentences(JsonElement c, List<string> hyps, List<List<string>> refs, string signature,
        Func<string, IReadOnlyList<string>, (double Score, string Signature)> score)
    {
        var expected = c.GetProperty("scores").EnumerateArray().Select(e => e.GetDouble()).ToList();
        Assert.NotEmpty(expected);
        var failures = new List<string>();
        for (int i = 0; i < expected.Count; i++)
        {
            var (actual, sig) = score(hyps[i], refs.Select(r => r[i]).ToList());
            Assert.Equal(signature, sig);
            if (Math.Abs(actual - expected[i]) > Tolerance)
                failures.Add($"#{i} '{hyps[i]}': expected {expected[i]:R}, got {actual:R}");
        }
        Assert.True(failures.Count == 0,
            $"{failures.Count} of {expected.Count} sentence scores differ:\n" + string.Join('\n', failures.Take(10)));
    }

    private static List<string> Strings(JsonElement array) =>
        array.EnumerateArray().Select(e => e.GetString()!).ToList();

    private static long[] Longs(JsonElement array) =>
        array.EnumerateArray().Select(e => e.GetInt64()).ToArray();

    private static JsonDocument Load() => JsonDocument.Parse(File.ReadAllBytes(TestDataPath()!));

    // <repo root, the folder holding Transduce.sln>/../shared/testdata/sacrebleu/fra-test.json
    private static string? TestDataPath()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Transduce.sln")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "testdata", "sacrebleu", "fra-test.json"));
        }
        return null;
    }
}
