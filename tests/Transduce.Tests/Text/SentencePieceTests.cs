using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Transduce.Text;

namespace Transduce.Tests.Text.SentencePiece;

/// <summary>
/// Trains small SentencePiece models with Debian's <c>spm_train</c> (package <c>sentencepiece</c>) into a temporary
/// directory and records what <c>spm_encode</c>/<c>spm_decode</c> make of the test sentences, for these models and for
/// the two MarianMT models in <c>../shared/testdata/marian-tiny</c>.
/// </summary>
public sealed class SentencePieceFixture : IDisposable
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>Strings that exercise normalisation, whitespace handling and unknown characters.</summary>
    public static readonly string[] TrickyStrings =
    [
        "1975",
        "In 1975, 42% of 3.14159 people paid $1,000,000 (or €12.50) on 2024-01-31 at 23:59.",
        "Tom's e-mail: tom@example.com #tag & <b>bold</b> {x} [y] ~ ^ | \\ / * + = _ ` \" ;",
        "😀 emoji 👍🏽 and a family 👨‍👩‍👧 🇫🇷",
        "中文测试：你好，世界！",
        "日本語のテキストです。カタカナ ｶﾀｶﾅ",
        "한국어 문장",
        "مرحبا بالعالم",
        "Привет, мир! Как дела?",
        "Ελληνικά γράμματα",
        "हिन्दी पाठ",
        "multiple   spaces    between words",
        "  leading and trailing spaces  ",
        "   ",
        "",
        "\tTab\tseparated\t",
        "Bonjour\u00A0! Ça va\u00A0?",
        "Quoi\u202F? Vraiment\u202F!",
        "\u00A0leading nbsp and trailing nbsp\u00A0",
        "\u00A0\u00A0\u202F",
        "ＡＢＣ　ａｂｃ　１２３！？",
        "①②③ ⅫⅣ ㈱ ㍻",
        "ﬁne ﬂow ligatures",
        "x² H₂O 10³ ½ ¼",
        "Å Å e\u0301 é",
        "… “quotes” ‘single’ « guillemets » — – -",
        "zero\u200Bwidth joiner\u200Dx soft\u00ADhyphen",
        "bell\u0007 escape\u001B del\u007F",
        "\u2581 literal marker \u2581\u2581",
        "<unk> <s> </s> <pad>",
        "ŽŽŽ ßßß ĳĳ ŒŒ ǅ",
        "Ünïcödé ☃ text — with 数字 123.",
        "lone \uD800 surrogate and \uDC00 another",
        "<sep> x@@y Tomato",
        "ALL CAPS SENTENCE AND MiXeD CaSe",
        "\uFEFFbom at start",
        "a\u2028b\u2029c\u0085d",
        "𝐀𝐁𝐂 mathematical bold",
    ];

    private readonly string _dir;

    public SentencePieceFixture()
    {
        _dir = Path.Combine(Path.GetTempPath(), "transduce-spm-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);

        var sentences = new List<string>();
        foreach (string row in File.ReadLines(Path.Combine(TestPaths.SharedData, "fra-eng", "test.tsv")))
        {
            string[] sides = row.Split('\t');
            sentences.Add(sides[0]);
            sentences.Add(sides[1]);
        }
        TestTsvCount = sentences.Count;
        MarianSentences = ReadMarianSentences();
        sentences.AddRange(TrickyStrings);
        sentences.AddRange(MarianSentences);
        Sentences = sentences;
        string input = Path.Combine(_dir, "sentences.txt");
        File.WriteAllText(input, string.Join('\n', sentences) + "\n", Utf8);

        var training = new StringBuilder();
        int line = 0;
        foreach (string row in File.ReadLines(Path.Combine(TestPaths.SharedData, "fra-eng", "train.tsv")))
        {
            if (line++ % 50 == 0)
            {
                string[] sides = row.Split('\t');
                training.Append(sides[0]).Append('\n').Append(sides[1]).Append('\n');
            }
        }
        string trainFile = Path.Combine(_dir, "train.txt");
        File.WriteAllText(trainFile, training.ToString(), Utf8);

        var models = new Dictionary<string, string>
        {
            ["unigram"] = Train(trainFile, "unigram", "--model_type=unigram", "--vocab_size=500"),
            ["bpe"] = Train(trainFile, "bpe", "--model_type=bpe", "--vocab_size=500"),
            ["unigram-bytes-cf"] = Train(trainFile, "unigram-bytes-cf", "--model_type=unigram", "--vocab_size=800",
                "--byte_fallback=true", "--normalization_rule_name=nmt_nfkc_cf", "--user_defined_symbols=<sep>,@@,Tom",
                "--add_dummy_prefix=false", "--pad_id=3", "--unk_id=4"),
            ["bpe-bytes-identity"] = Train(trainFile, "bpe-bytes-identity", "--model_type=bpe", "--vocab_size=800",
                "--byte_fallback=true", "--normalization_rule_name=identity", "--user_defined_symbols=<sep>,@@,Tom",
                "--remove_extra_whitespaces=false"),
            ["marian-source"] = MarianPath("source.spm"),
            ["marian-target"] = MarianPath("target.spm"),
        };
        ModelPaths = models;

        foreach ((string name, string path) in models)
        {
            string pieceFile = Path.Combine(_dir, name + ".pieces");
            string idFile = Path.Combine(_dir, name + ".ids");
            string pieceText = Run("spm_encode", $"--model={path}", "--output_format=piece", input);
            string idText = Run("spm_encode", $"--model={path}", "--output_format=id", input);
            File.WriteAllText(pieceFile, pieceText, Utf8);
            File.WriteAllText(idFile, idText, Utf8);
            string[] pieceLines = Lines(pieceText, sentences.Count, name);
            string[] idLines = Lines(idText, sentences.Count, name);
            Expected[name] = new SpmOutput(
                [.. pieceLines.Select(static l => l.Length == 0 ? Array.Empty<string>() : l.Split(' '))],
                [.. idLines.Select(static l => l.Length == 0 ? Array.Empty<int>() : l.Split(' ').Select(int.Parse).ToArray())],
                Lines(Run("spm_decode", $"--model={path}", "--input_format=piece", pieceFile), sentences.Count, name),
                Lines(Run("spm_decode", $"--model={path}", "--input_format=id", idFile), sentences.Count, name));
        }
    }

    /// <summary>Both sides of every <c>test.tsv</c> pair, then <see cref="TrickyStrings"/>, then the Marian sentences.</summary>
    public IReadOnlyList<string> Sentences { get; }

    public int TestTsvCount { get; }

    public IReadOnlyList<string> MarianSentences { get; }

    public IReadOnlyDictionary<string, string> ModelPaths { get; }

    public Dictionary<string, SpmOutput> Expected { get; } = [];

    public string TempDir => _dir;

    public static string MarianPath(string file) =>
        Path.GetFullPath(Path.Combine(TestPaths.SharedData, "..", "testdata", "marian-tiny", file));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static string[] ReadMarianSentences()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(MarianPath("expected.json")));
        return [.. doc.RootElement.GetProperty("sentences").EnumerateArray().Select(static e => e.GetString()!)];
    }

    private string Train(string input, string name, params string[] options)
    {
        string prefix = Path.Combine(_dir, name);
        Run("spm_train", [$"--input={input}", $"--model_prefix={prefix}", "--num_threads=2", "--minloglevel=2", .. options]);
        return prefix + ".model";
    }

    private static string[] Lines(string output, int expected, string model)
    {
        string[] lines = output.Split('\n');
        if (lines.Length != expected + 1 || lines[^1].Length != 0)
        {
            throw new InvalidOperationException($"{model}: expected {expected} output lines but got {lines.Length - 1}.");
        }
        return lines[..^1];
    }

    private static string Run(string program, params string[] args)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Utf8,
            StandardErrorEncoding = Utf8,
            UseShellExecute = false,
        };
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {program}");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException(
                $"{program} not found: these tests need SentencePiece's command-line tools (Debian package 'sentencepiece').", ex);
        }
        using (process)
        {
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException(
                    $"{program} {string.Join(' ', args)} failed with exit code {process.ExitCode}: {stderr.Result}");
            }
            return stdout;
        }
    }
}

/// <summary>What the SentencePiece tools produced for one model, one entry per test sentence.</summary>
public sealed record SpmOutput(string[][] Pieces, int[][] Ids, string[] DecodedPieces, string[] DecodedIds);

public sealed class SentencePieceTests(SentencePieceFixture fixture) : IClassFixture<SentencePieceFixture>
{
    public static TheoryData<string> ModelNames =>
        ["unigram", "bpe", "unigram-bytes-cf", "bpe-bytes-identity", "marian-source", "marian-target"];

    private SentencePieceModel LoadModel(string name) => SentencePieceModel.Load(fixture.ModelPaths[name]);

    [Theory]
    [MemberData(nameof(ModelNames))]
    public void EncodePiecesMatchesSpmEncodeOnEverySentence(string name)
    {
        SentencePieceModel model = LoadModel(name);
        SpmOutput expected = fixture.Expected[name];
        AssertAllEqual(name, "pieces", i => expected.Pieces[i], i => model.EncodePieces(fixture.Sentences[i]),
            static p => string.Join(' ', p));
    }

    [Theory]
    [MemberData(nameof(ModelNames))]
    public void EncodeIdsMatchesSpmEncodeOnEverySentence(string name)
    {
        SentencePieceModel model = LoadModel(name);
        SpmOutput expected = fixture.Expected[name];
        AssertAllEqual(name, "ids", i => expected.Ids[i], i => model.EncodeIds(fixture.Sentences[i]),
            static p => string.Join(' ', p));
    }

    [Theory]
    [MemberData(nameof(ModelNames))]
    public void DecodeMatchesSpmDecodeOnEverySentence(string name)
    {
        SentencePieceModel model = LoadModel(name);
        SpmOutput expected = fixture.Expected[name];
        AssertAllEqual<string>(name, "decoded pieces", i => [expected.DecodedPieces[i]],
            i => [model.DecodePieces(expected.Pieces[i])], static p => p[0]);
        AssertAllEqual<string>(name, "decoded ids", i => [expected.DecodedIds[i]],
            i => [model.DecodeIds(expected.Ids[i])], static p => p[0]);
    }

    [Fact]
    public void ComparisonCoversTheWholeTestSetAndTheTrickyStrings()
    {
        Assert.Equal(2 * File.ReadLines(Path.Combine(TestPaths.SharedData, "fra-eng", "test.tsv")).Count(), fixture.TestTsvCount);
        Assert.Equal(fixture.TestTsvCount + SentencePieceFixture.TrickyStrings.Length + 18, fixture.Sentences.Count);
        // The small models really meet unknown characters, including runs of them that SentencePiece merges.
        SpmOutput unigram = fixture.Expected["unigram"];
        SentencePieceModel model = LoadModel("unigram");
        Assert.Contains(unigram.Ids, ids => ids.Contains(model.UnkId));
        Assert.Contains(unigram.Pieces, pieces => pieces.Any(p => p.Length > 1 && model.PieceToId(p) == model.UnkId));
    }

    [Fact]
    public void TrainedModelsExposeTheirSettings()
    {
        SentencePieceModel unigram = LoadModel("unigram");
        Assert.Equal(SentencePieceModelType.Unigram, unigram.ModelType);
        Assert.Equal(500, unigram.Count);
        Assert.Equal((0, 1, 2, -1), (unigram.UnkId, unigram.BosId, unigram.EosId, unigram.PadId));
        Assert.Equal(["<unk>", "<s>", "</s>"], unigram.Pieces.Take(3));
        Assert.Equal(SentencePieceType.Control, unigram.GetPieceType(1));
        Assert.Equal(SentencePieceType.Normal, unigram.GetPieceType(3));
        Assert.Equal("nmt_nfkc", unigram.NormalizerName);
        Assert.True(unigram.HasNormalizationRules);
        Assert.True(unigram.AddDummyPrefix && unigram.RemoveExtraWhitespaces && unigram.EscapeWhitespaces);
        Assert.False(unigram.ByteFallback);
        Assert.Equal("▁Bonjour▁!", unigram.Normalize("  Bonjour\u00A0!  "));
        Assert.Equal("▁ABC▁123", unigram.Normalize("ＡＢＣ　１２３"));

        SentencePieceModel bpe = LoadModel("bpe");
        Assert.Equal(SentencePieceModelType.Bpe, bpe.ModelType);
        Assert.Equal(500, bpe.Count);

        SentencePieceModel bytes = LoadModel("unigram-bytes-cf");
        Assert.True(bytes.ByteFallback);
        Assert.Equal("nmt_nfkc_cf", bytes.NormalizerName);
        Assert.False(bytes.AddDummyPrefix);
        Assert.Equal((4, 3), (bytes.UnkId, bytes.PadId));
        Assert.Equal(SentencePieceType.UserDefined, bytes.GetPieceType(bytes.PieceToId("<sep>")));
        Assert.Equal(SentencePieceType.Byte, bytes.GetPieceType(bytes.PieceToId("<0xE2>")));

        SentencePieceModel identity = LoadModel("bpe-bytes-identity");
        Assert.Equal("identity", identity.NormalizerName);
        Assert.False(identity.HasNormalizationRules);
        Assert.False(identity.RemoveExtraWhitespaces);
    }

    [Fact]
    public void MarianModelsHaveNoBosAndReproduceTransformersInputIds()
    {
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllText(SentencePieceFixture.MarianPath("expected.json")));
        using JsonDocument vocabJson = JsonDocument.Parse(File.ReadAllText(SentencePieceFixture.MarianPath("vocab.json")));
        var vocab = vocabJson.RootElement.EnumerateObject().ToDictionary(static p => p.Name, static p => p.Value.GetInt32());
        int eos = vocab["</s>"];
        int unk = vocab["<unk>"];
        int pad = vocab["<pad>"];

        foreach (string file in new[] { "source.spm", "target.spm" })
        {
            SentencePieceModel model = SentencePieceModel.Load(SentencePieceFixture.MarianPath(file));
            Assert.Equal(-1, model.BosId);
            Assert.Equal("</s>", model.IdToPiece(model.EosId));
            Assert.Equal("<unk>", model.IdToPiece(model.UnkId));
            Assert.Equal(SentencePieceModelType.Unigram, model.ModelType);
            Assert.Equal("nmt_nfkc", model.NormalizerName);
            Assert.True(model.HasNormalizationRules);
        }

        // transformers' MarianTokenizer maps source.spm's pieces through vocab.json and appends </s>.
        SentencePieceModel source = SentencePieceModel.Load(SentencePieceFixture.MarianPath("source.spm"));
        JsonElement[] inputIds = [.. expected.RootElement.GetProperty("input_ids").EnumerateArray()];
        for (int i = 0; i < fixture.MarianSentences.Count; i++)
        {
            int[] ids = [.. source.EncodePieces(fixture.MarianSentences[i]).Select(p => vocab.GetValueOrDefault(p, unk)), eos];
            int[] want = [.. inputIds[i].EnumerateArray().Select(static e => e.GetInt32()).Where(id => id != pad)];
            Assert.Equal(want, ids);
        }
    }

    [Fact]
    public void LoadReportsMissingAndCorruptFiles()
    {
        string missing = Path.Combine(fixture.TempDir, "no-such.model");
        InvalidDataException ex = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Load(missing));
        Assert.Contains(missing, ex.Message);
        Assert.Contains("not found", ex.Message);

        byte[] good = File.ReadAllBytes(fixture.ModelPaths["unigram"]);
        var corrupt = new Dictionary<string, byte[]>
        {
            ["empty.model"] = [],
            ["truncated.model"] = good[..(good.Length / 2)],
            ["text.model"] = Encoding.UTF8.GetBytes("this is not a model\n"),
            ["garbage.model"] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        };
        foreach ((string file, byte[] bytes) in corrupt)
        {
            string path = Path.Combine(fixture.TempDir, file);
            File.WriteAllBytes(path, bytes);
            ex = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Load(path));
            Assert.Contains(path, ex.Message);
        }
    }

    [Fact]
    public void DecodingRoundTripsAndHandlesSpecialPieces()
    {
        SentencePieceModel model = LoadModel("unigram");
        Assert.Equal("Hello world.", model.DecodePieces(model.EncodePieces("  Hello   world.  ")));
        // The unknown surface is " ⁇ " and the next word brings its own space, as spm_decode does.
        Assert.Equal("a ⁇  b", model.DecodeIds([.. model.EncodeIds("a"), model.UnkId, .. model.EncodeIds("b")]));
        Assert.Equal("ab", model.DecodeIds([model.BosId, .. model.EncodeIds("ab"), model.EosId]));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.DecodeIds([model.Count]));

        SentencePieceModel bytes = LoadModel("unigram-bytes-cf");
        string[] pieces = bytes.EncodePieces("☃");
        Assert.Equal(["<0xE2>", "<0x98>", "<0x83>"], pieces);
        Assert.Equal("☃", bytes.DecodePieces(pieces));
        Assert.Equal("\uFFFD\uFFFDx", bytes.DecodePieces(["<0xE2>", "<0x98>", "x"]));
    }

    private void AssertAllEqual<T>(
        string model, string what, Func<int, T[]> expected, Func<int, T[]> actual, Func<T[], string> show)
    {
        var mismatches = new List<string>();
        for (int i = 0; i < fixture.Sentences.Count; i++)
        {
            T[] want = expected(i);
            T[] got = actual(i);
            if (!want.SequenceEqual(got))
            {
                mismatches.Add($"  [{i}] {JsonSerializer.Serialize(fixture.Sentences[i])}\n    spm: {show(want)}\n    ours: {show(got)}");
            }
        }
        Assert.True(mismatches.Count == 0,
            $"{model}: {what} differ from SentencePiece's on {mismatches.Count} of {fixture.Sentences.Count} sentences:\n"
            + string.Join('\n', mismatches.Take(8)));
    }
}
