using System.Diagnostics;
using System.Text;
using Transduce.Data;

namespace Transduce.Tests.Data;

public sealed class ParallelCorpusTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static byte[] Utf8(string s) => new UTF8Encoding(false).GetBytes(s);

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static CorpusFormatException AssertFormatError(string path, int line, string reason, Action read)
    {
        var ex = Assert.Throws<CorpusFormatException>(read);
        Assert.Equal(path, ex.FilePath);
        Assert.Equal(line, ex.LineNumber);
        Assert.Contains(Path.GetFileName(path), ex.Message);
        Assert.Contains($":{line}: ", ex.Message);
        Assert.Contains(reason, ex.Message);
        return ex;
    }

    [Fact]
    public void ReadsTsvWithAnAttributionColumnTrimmingAndFinalNewline()
    {
        string path = _tmp.WriteText("fra.txt",
            "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\nHi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123\n" +
            "  Run! \t Cours\u202F! \tCC-BY 2.0\n");
        var result = ParallelCorpus.ReadTsv(path);
        Assert.Equal(
            [new SentencePair("Go.", "Va !", 1), new SentencePair("Hi.", "Salut !", 2), new SentencePair("Run!", "Cours\u202F!", 3)],
            result.Pairs);
        Assert.Equal(0, result.SkippedLines);
        Assert.Empty(result.SkipReasons);
    }

    [Fact]
    public void HandlesBomCrlfAndMissingFinalNewline()
    {
        string path = _tmp.WriteBytes("bom.tsv", Concat([0xEF, 0xBB, 0xBF], Utf8("Go.\tVa !\r\nÇa va ?\tFine.\r\nEnd\tFin")));
        var pairs = ParallelCorpus.ReadTsv(path).Pairs;
        Assert.Equal(3, pairs.Count);
        Assert.Equal(new SentencePair("Go.", "Va !", 1), pairs[0]);
        Assert.Equal(new SentencePair("Ça va ?", "Fine.", 2), pairs[1]);
        Assert.Equal(new SentencePair("End", "Fin", 3), pairs[2]);
    }

    [Fact]
    public void EmptyFileGivesNoPairs()
    {
        Assert.Empty(ParallelCorpus.ReadTsv(_tmp.WriteText("empty.tsv", "")).Pairs);
    }

    [Fact]
    public void LongLinesSpanningBuffersAreRead()
    {
        string longSource = new('x', 200_000);
        string path = _tmp.WriteText("long.tsv", $"a\tb\n{longSource}\télan\nc\td\n");
        var pairs = ParallelCorpus.ReadTsv(path).Pairs;
        Assert.Equal(3, pairs.Count);
        Assert.Equal(longSource, pairs[1].Source);
        Assert.Equal("élan", pairs[1].Target);
        Assert.Equal(new SentencePair("c", "d", 3), pairs[2]);
    }

    [Fact]
    public void MissingTabIsReportedWithFileAndLine()
    {
        string path = _tmp.WriteText("notab.tsv", "Go.\tVa !\nHi. Salut !\n");
        AssertFormatError(path, 2, "missing tab between source and target", () => ParallelCorpus.ReadTsv(path));
    }

    [Theory]
    [InlineData("a\tb\n\tVa !\n", 2, "empty source sentence")]
    [InlineData("a\tb\nc\td\nGo.\t  \n", 3, "empty target sentence")]
    [InlineData("a\tb\tc\nGo.\t\tattribution\n", 2, "empty target sentence")]
    [InlineData("a\tb\n\nc\td\n", 2, "empty line")]
    [InlineData("a\tb\r\n\r\nc\td\r\n", 2, "empty line")]
    [InlineData("\na\tb\n", 1, "empty line")]
    public void EmptySidesAndEmptyLinesAreErrors(string content, int line, string reason)
    {
        string path = _tmp.WriteText("empty-side.tsv", content);
        AssertFormatError(path, line, reason, () => ParallelCorpus.ReadTsv(path));
    }

    [Theory]
    [InlineData("Go.\tVa !\nHi.\tSalut\t!\n", 2, "3 tab-separated fields, but the file's first line has 2")]
    [InlineData("Go.\tVa !\tCC-BY\nHi.\tSalut !\n", 2, "2 tab-separated fields, but the file's first line has 3")]
    [InlineData("Go.\tVa !\nHi.\tSa\tlu\tt\n", 2, "4 tab-separated fields; expected source<TAB>target")]
    [InlineData("Go.\tVa !\nHi.\tSal\0ut !\n", 2, "control character U+0000 at column 8")]
    [InlineData("Go.\tVa \u001B[31m!\n", 1, "control character U+001B at column 8")]
    [InlineData("Go.\tVa !\nHi.\rSalut !\tx\n", 2, "control character U+000D at column 4")]
    public void ExtraTabsAndControlCharactersAreErrorsNamingTheLine(string content, int line, string reason)
    {
        string path = _tmp.WriteText("columns.tsv", content);
        AssertFormatError(path, line, reason, () => ParallelCorpus.ReadTsv(path));
        // With --skip-invalid the line is skipped and counted instead, and the others are read.
        var result = ParallelCorpus.ReadTsv(path, new CorpusReadOptions { SkipInvalid = true });
        Assert.Equal(1, result.SkippedLines);
        Assert.Contains(reason, result.SkipReasons.Single());
    }

    [Fact]
    public void ControlCharactersInAlignedFilesNameTheFileAndLine()
    {
        string source = _tmp.WriteText("c.en", "Go.\nHi\0.\n");
        string target = _tmp.WriteText("c.fr", "Va !\nSalut.\n");
        var ex = AssertFormatError(source, 2, "control character U+0000", () => ParallelCorpus.ReadAligned(source, target));
        Assert.Contains("c.en", ex.Message);
    }

    [Fact]
    public void InvalidUtf8IsReportedWithFileAndLine()
    {
        string path = _tmp.WriteBytes("bad.tsv", Concat(Utf8("Go.\tVa !\nHi.\tSal"), [0xFF], Utf8("ut\n")));
        var ex = AssertFormatError(path, 2, "invalid UTF-8", () => ParallelCorpus.ReadTsv(path));
        Assert.Contains("0xFF", ex.Message);
    }

    [Fact]
    public void TruncatedUtf8SequenceAtLineEndIsInvalid()
    {
        // 0xC3 starts a two-byte sequence but the line ends; must not borrow the '\n'.
        string path = _tmp.WriteBytes("trunc.tsv", Concat(Utf8("a\tb\nc\td\nCa\tGar"), [0xC3], Utf8("\nx\ty\n")));
        AssertFormatError(path, 3, "invalid UTF-8", () => ParallelCorpus.ReadTsv(path));
    }

    [Fact]
    public void MissingFileThrowsFileNotFoundWithPath()
    {
        string path = _tmp.File("does-not-exist.txt");
        var ex = Assert.Throws<FileNotFoundException>(() => ParallelCorpus.ReadTsv(path));
        Assert.Contains(path, ex.Message);
        var ex2 = Assert.Throws<FileNotFoundException>(() => ParallelCorpus.Read(path));
        Assert.Contains(path, ex2.Message);
    }

    [Fact]
    public void SkipInvalidCountsAndRecordsReasons()
    {
        var sb = new StringBuilder();
        sb.Append("Go.\tVa !\n");           // 1 ok
        sb.Append("no tab here\n");          // 2 bad
        sb.Append("\n");                     // 3 bad
        sb.Append("Hi.\tSalut !\n");         // 4 ok
        for (int i = 0; i < 25; i++)
        {
            sb.Append("\tno source\n");      // 5..29 bad
        }
        sb.Append("Run!\tCours !\n");        // 30 ok
        string path = _tmp.WriteText("mixed.tsv", sb.ToString());

        var result = ParallelCorpus.ReadTsv(path, new CorpusReadOptions { SkipInvalid = true });
        Assert.Equal([1, 4, 30], result.Pairs.Select(p => p.LineNumber));
        Assert.Equal(27, result.SkippedLines);
        Assert.Equal(ParallelCorpus.MaxSkipReasons, result.SkipReasons.Count);
        Assert.Equal($"{path}:2: missing tab between source and target", result.SkipReasons[0]);
        Assert.Equal($"{path}:3: empty line", result.SkipReasons[1]);
        Assert.Equal($"{path}:5: empty source sentence", result.SkipReasons[2]);
    }

    [Fact]
    public void MaxPairsStopsAfterThatManyGoodPairs()
    {
        string path = _tmp.WriteText("max.tsv", "a\tA\nbad\nb\tB\nc\tC\nnot even checked\n");
        var result = ParallelCorpus.ReadTsv(path, new CorpusReadOptions { SkipInvalid = true, MaxPairs = 2 });
        Assert.Equal(["a", "b"], result.Pairs.Select(p => p.Source));
        Assert.Equal(1, result.SkippedLines);

        var strict = ParallelCorpus.ReadTsv(path, new CorpusReadOptions { MaxPairs = 1 });
        Assert.Single(strict.Pairs);
        Assert.Empty(ParallelCorpus.ReadTsv(path, new CorpusReadOptions { MaxPairs = 0 }).Pairs);
        Assert.Throws<ArgumentOutOfRangeException>(() => ParallelCorpus.ReadTsv(path, new CorpusReadOptions { MaxPairs = -1 }));
    }

    [Fact]
    public void ReadOnDirectoryPrefersFraTxtThenTrainTsv()
    {
        Directory.CreateDirectory(_tmp.File("d"));
        string dir = _tmp.File("d");
        var ex = Assert.Throws<FileNotFoundException>(() => ParallelCorpus.Read(dir));
        Assert.Contains(dir, ex.Message);
        Assert.Contains("fra.txt", ex.Message);
        Assert.Contains("train.tsv", ex.Message);

        File.WriteAllText(Path.Combine(dir, "train.tsv"), "train\tT\n");
        Assert.Equal("train", ParallelCorpus.Read(dir).Pairs[0].Source);
        File.WriteAllText(Path.Combine(dir, "fra.txt"), "fra\tF\n");
        Assert.Equal("fra", ParallelCorpus.Read(dir).Pairs[0].Source);
        Assert.Equal("train", ParallelCorpus.Read(Path.Combine(dir, "train.tsv")).Pairs[0].Source);
    }

    [Fact]
    public void ReadAlignedPairsLines()
    {
        string src = _tmp.WriteText("train.en", "Go.\r\nHi.\r\n");
        string tgt = _tmp.WriteBytes("train.fr", Concat([0xEF, 0xBB, 0xBF], Utf8("Va !\nSalut !")));
        var result = ParallelCorpus.ReadAligned(src, tgt);
        Assert.Equal([new SentencePair("Go.", "Va !", 1), new SentencePair("Hi.", "Salut !", 2)], result.Pairs);
    }

    [Theory]
    [InlineData("a\nb\nc\n", "A\nB\n", true, 3, 3, 2)]
    [InlineData("a\n", "A\nB\nC\n", false, 2, 1, 3)]
    public void ReadAlignedRejectsLineCountMismatch(string srcText, string tgtText, bool sourceLonger, int line, int srcCount, int tgtCount)
    {
        string src = _tmp.WriteText("mm.en", srcText);
        string tgt = _tmp.WriteText("mm.fr", tgtText);
        foreach (var options in new CorpusReadOptions?[] { null, new() { SkipInvalid = true, MaxPairs = 1 } })
        {
            var ex = Assert.Throws<CorpusFormatException>(() => ParallelCorpus.ReadAligned(src, tgt, options));
            Assert.Equal(sourceLonger ? src : tgt, ex.FilePath);
            Assert.Equal(line, ex.LineNumber);
            Assert.Contains($"{src} has {srcCount} lines", ex.Message);
            Assert.Contains($"{tgt} has {tgtCount} lines", ex.Message);
        }
    }

    [Fact]
    public void ReadAlignedReportsTheFileWithTheBadLine()
    {
        string src = _tmp.WriteText("e.en", "a\nb\nc\n");
        string tgt = _tmp.WriteText("e.fr", "A\n  \nC\n");
        AssertFormatError(tgt, 2, "empty sentence", () => ParallelCorpus.ReadAligned(src, tgt));

        string src2 = _tmp.WriteBytes("u.en", Concat(Utf8("a\nb\n"), [0xFF], Utf8("\n")));
        string tgt2 = _tmp.WriteText("u.fr", "A\nB\nC\n");
        AssertFormatError(src2, 3, "invalid UTF-8", () => ParallelCorpus.ReadAligned(src2, tgt2));

        var skipped = ParallelCorpus.ReadAligned(src2, tgt2, new CorpusReadOptions { SkipInvalid = true });
        Assert.Equal(2, skipped.Pairs.Count);
        Assert.Equal(1, skipped.SkippedLines);
        Assert.StartsWith($"{src2}:3: invalid UTF-8", skipped.SkipReasons[0]);

        Assert.Throws<FileNotFoundException>(() => ParallelCorpus.ReadAligned(src, _tmp.File("missing.fr")));
    }

    [Fact]
    public void ReadsTheRealFraEngCorpus()
    {
        string path = Path.Combine(TestPaths.RepoRoot, "..", "shared", "data", "fra-eng", "fra.txt");
        Assert.True(File.Exists(path),
            $"The d2l fra-eng corpus is expected at {Path.GetFullPath(path)} (../shared/data/fra-eng/fra.txt next to the repository root) but is missing.");

        var sw = Stopwatch.StartNew();
        var result = ParallelCorpus.Read(Path.GetDirectoryName(path)!);
        sw.Stop();

        Assert.Equal(167_130, result.Pairs.Count);
        Assert.Equal(0, result.SkippedLines);
        Assert.Equal(new SentencePair("Go.", "Va !", 1), result.Pairs[0]);
        Assert.Equal(167_130, result.Pairs[^1].LineNumber);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"Reading took {sw.Elapsed}.");
        Assert.Equal(Path.GetFullPath(Path.Combine(TestPaths.RepoRoot, "..", "shared", "data")), TestPaths.SharedData);
    }
}
