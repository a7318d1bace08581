using System.Text;
using System.Text.Json.Nodes;
using Transduce.Text;

namespace Transduce.Tests.Text.Bpe;

/// <summary>Trains one BPE model on a sample of the Tatoeba training data, shared by the tests.</summary>
public sealed class BpeFixture
{
    public const int VocabSize = 1500;

    public BpeFixture()
    {
        string train = Path.Combine(TestPaths.SharedData, "fra-eng", "train.tsv");
        var sentences = new List<string>();
        int line = 0;
        foreach (string row in File.ReadLines(train))
        {
            if (line++ % 66 != 0)
            {
                continue;
            }
            string[] sides = row.Split('\t');
            sentences.Add(sides[0]);
            sentences.Add(sides[1]);
        }
        Sentences = sentences;
        Tokenizer = BpeTokenizer.Train(sentences, new BpeTrainingOptions { VocabSize = VocabSize });
    }

    /// <summary>About 5,000 sentences (English and French sides of every 66th pair).</summary>
    public IReadOnlyList<string> Sentences { get; }

    internal BpeTokenizer Tokenizer { get; }
}

public sealed class BpeTokenizerTests(BpeFixture fixture) : IClassFixture<BpeFixture>
{
    private static readonly string[] Tiny = ["the cat sat", "the cat ate", "the hat", "a cat, a hat!", "the cat sat"];

    private static IEnumerable<string> ValidSentences()
    {
        foreach (string row in File.ReadLines(Path.Combine(TestPaths.SharedData, "fra-eng", "valid.tsv")))
        {
            string[] sides = row.Split('\t');
            yield return sides[0];
            yield return sides[1];
        }
    }

    [Fact]
    public void TrainingIsDeterministicAndIndependentOfSentenceOrder()
    {
        var sample = fixture.Sentences.Take(2000).ToList();
        var options = new BpeTrainingOptions { VocabSize = 800 };
        string first = BpeTokenizer.Train(sample, options).ToJson();
        string second = BpeTokenizer.Train(sample, options).ToJson();
        string reversed = BpeTokenizer.Train(Enumerable.Reverse(sample), options).ToJson();
        Assert.Equal(first, second);
        Assert.Equal(first, reversed);
    }

    [Fact]
    public void VocabularySizeAndLayoutAreRespected()
    {
        Vocabulary v = fixture.Tokenizer.Vocabulary;
        Assert.Equal(BpeFixture.VocabSize, v.Count);
        Assert.Equal(["<pad>", "<bos>", "<eos>", "<unk>"], v.Tokens.Take(4));
        Assert.Equal("<0x00>", v[4]);
        Assert.Equal("<0x41>", v[4 + 0x41]);
        Assert.Equal("<0xFF>", v[259]);
        Assert.Equal("\u2581", v[260]);
        Assert.Equal(BpeTokenizer.WordStartMarker, v[260]);
        Assert.True(fixture.Tokenizer.MergeCount > 1000);

        // A tiny corpus runs out of pairs occurring twice before reaching the target size.
        BpeTokenizer tiny = BpeTokenizer.Train(Tiny, new BpeTrainingOptions { VocabSize = 8000 });
        Assert.InRange(tiny.Vocabulary.Count, 262, 300);

        // The smallest allowed size holds only the fixed pieces: every character falls back to bytes.
        BpeTokenizer bytesOnly = BpeTokenizer.Train(Tiny, new BpeTrainingOptions { VocabSize = BpeTrainingOptions.MinVocabSize });
        Assert.Equal(261, bytesOnly.Vocabulary.Count);
        Assert.Equal(["\u2581", "<0x61>", "<0x21>"], bytesOnly.EncodePieces("a!"));
        Assert.Equal("a cat, a hat!", bytesOnly.Decode(bytesOnly.EncodeToIds("a cat, a hat!")));

        Assert.Throws<ArgumentOutOfRangeException>(
            () => BpeTokenizer.Train(Tiny, new BpeTrainingOptions { VocabSize = BpeTrainingOptions.MinVocabSize - 1 }));
        Assert.Throws<ArgumentException>(() => BpeTokenizer.Train(["a", null!], new BpeTrainingOptions()));
    }

    [Fact]
    public void RoundTripIsExactOnRealSentences()
    {
        BpeTokenizer bpe = fixture.Tokenizer;
        int sentences = 0, pieces = 0, chars = 0;
        foreach (string sentence in ValidSentences())
        {
            int[] ids = bpe.EncodeToIds(sentence);
            string[] text = bpe.EncodePieces(sentence);
            Assert.Equal(ids.Select(id => bpe.Vocabulary[id]), text);
            Assert.All(ids, id => Assert.InRange(id, 4, bpe.Vocabulary.Count - 1));
            Assert.Equal(sentence, bpe.Decode(ids));
            Assert.Equal(sentence, bpe.DecodeTokens(bpe.EncodeToTokens(sentence)));
            sentences++;
            pieces += ids.Length;
            chars += sentence.Length;
        }
        Assert.True(sentences > 2000);
        // Subwords: clearly fewer pieces than characters.
        Assert.InRange((double)pieces / chars, 0.1, 0.45);

        Assert.Equal("Ils regardent.", bpe.Decode(bpe.EncodeToIds("Ils regardent.")));
        string[] split = bpe.EncodePieces("Ils regardent.");
        Assert.Equal(".", split[^1]);
        Assert.StartsWith("\u2581Ils", split[0]);
    }

    [Fact]
    public void FrequentWordsBecomeSinglePieces()
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string sentence in fixture.Sentences)
        {
            foreach (string word in sentence.Split(' '))
            {
                if (word.Length > 0 && word.All(char.IsLetter))
                {
                    counts[word] = counts.GetValueOrDefault(word) + 1;
                }
            }
        }
        var frequent = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .Take(40).Select(kv => kv.Key).ToList();
        Assert.Contains("Tom", frequent);
        foreach (string word in frequent)
        {
            Assert.Equal(["\u2581" + word], fixture.Tokenizer.EncodePieces(word));
            Assert.Equal(["\u2581" + word, "\u2581" + word], fixture.Tokenizer.EncodePieces(word + " " + word));
        }
    }

    [Theory]
    [InlineData("我爱你。")]
    [InlineData("東京は大きい")]
    [InlineData("👍🏽 ok 🎉🎉")]
    [InlineData("مرحبا بالعالم")]
    [InlineData("नमस्ते दुनिया")]
    [InlineData("e\u0301te\u0301 cafe\u0301")]
    [InlineData("Ça va\u00A0? Très bien\u202F!")]
    [InlineData("12 345,67 € — 3.14159")]
    [InlineData("tab\there\tand\t\ttwo")]
    [InlineData("multiple   spaces    here")]
    [InlineData("  leading and trailing  ")]
    [InlineData(" ")]
    [InlineData("")]
    [InlineData("line\nbreak\r\n")]
    [InlineData("literal \u2581 marker\u2581inside")]
    [InlineData("<unk> <pad> <0x41> <eos>")]
    [InlineData("l'homme aujourd'hui peut-être don’t -x- '")]
    [InlineData("\u0301 leading combining mark")]
    public void AnyTextRoundTripsExactly(string text)
    {
        BpeTokenizer bpe = fixture.Tokenizer;
        int[] ids = bpe.EncodeToIds(text);
        Assert.All(ids, id => Assert.InRange(id, 4, bpe.Vocabulary.Count - 1));
        Assert.Equal(text, bpe.Decode(ids));
        Assert.Equal(text, bpe.DecodeTokens(bpe.EncodeToTokens(text)));
    }

    [Fact]
    public void UnseenCharactersUseByteFallback()
    {
        BpeTokenizer bpe = fixture.Tokenizer;
        Assert.Equal(["\u2581", "<0xE6>", "<0x88>", "<0x91>"], bpe.EncodePieces("我"));
        Assert.Equal(["\u2581", "<0xF0>", "<0x9F>", "<0x8E>", "<0x89>"], bpe.EncodePieces("🎉"));
        string[] arabic = bpe.EncodePieces("مرحبا");
        Assert.Equal(1 + 2 * 5, arabic.Length);
        Assert.All(arabic.Skip(1), p => Assert.Matches("^<0x[0-9A-F]{2}>$", p));

        // A literal U+2581 is never confused with the word-start marker.
        Assert.Equal(["\u2581", "<0xE2>", "<0x96>", "<0x81>"], bpe.EncodePieces("\u2581"));

        // Reserved-looking text is ordinary text.
        Assert.DoesNotContain(bpe.EncodeToIds("<unk> <0x41>"), id => id < 4);

        // Unpaired surrogates cannot be encoded in UTF-8; they become U+FFFD.
        Assert.Equal("a\uFFFDb\uFFFD", bpe.Decode(bpe.EncodeToIds("a\uD800b\uDC00")));
    }

    [Fact]
    public void PreTokenisationSplitsPunctuationButKeepsElisionsAndHyphenatedWords()
    {
        BpeTokenizer bpe = fixture.Tokenizer;
        Assert.Equal(["\u2581Tom", "."], bpe.EncodePieces("Tom."));
        Assert.Equal(["\u2581Tom", "\u2581", "\u2581", "\u2581Tom"], bpe.EncodePieces("Tom   Tom"));
        Assert.DoesNotContain(bpe.EncodePieces("Je suis là."), p => p.Any(char.IsLetter) && p.Any(char.IsPunctuation));
        // "l'" is learnt as a piece because the apostrophe stays inside the word.
        Assert.Contains(bpe.EncodePieces("l'homme"), p => p.EndsWith('\''));

        BpeTokenizer whole = BpeTokenizer.Train(fixture.Sentences.Take(1000),
            new BpeTrainingOptions { VocabSize = 600, SplitPunctuation = false });
        Assert.False(whole.SplitPunctuation);
        Assert.Contains("\"pre_tokenizer\": \"whitespace\"", whole.ToJson());
        Assert.Equal("Tom. Ça va\u00A0?", whole.Decode(whole.EncodeToIds("Tom. Ça va\u00A0?")));
    }

    [Fact]
    public void DecodeSkipsReservedIdsAndRejectsOutOfRangeIds()
    {
        BpeTokenizer bpe = fixture.Tokenizer;
        int[] ids = bpe.EncodeToIds("Tom est là.");
        int[] framed = [1, .. ids, 3, 2, 0, 0];
        Assert.Equal("Tom est là.", bpe.Decode(framed));
        Assert.Equal("Tom est là.", bpe.Decode([1, .. ids, 2, .. ids])); // decoding stops at <eos>
        Assert.Equal("", bpe.Decode([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => bpe.Decode([bpe.Vocabulary.Count]));
        Assert.Throws<ArgumentOutOfRangeException>(() => bpe.Decode([-1]));
        // A truncated multi-byte sequence decodes to U+FFFD instead of failing.
        Assert.Equal("\uFFFD", bpe.Decode([4 + 0xE6, 4 + 0x88]));
    }

    [Fact]
    public void SaveAndLoadRoundTrip()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "sub", "bpe.json");
        fixture.Tokenizer.Save(path);
        Assert.Equal(["bpe.json"], Directory.GetFiles(Path.GetDirectoryName(path)!).Select(f => Path.GetFileName(f)));

        BpeTokenizer loaded = BpeTokenizer.Load(path);
        Assert.Equal(fixture.Tokenizer.ToJson(), loaded.ToJson());
        Assert.Equal(fixture.Tokenizer.Vocabulary.Tokens, loaded.Vocabulary.Tokens);
        Assert.Equal(fixture.Tokenizer.MergeCount, loaded.MergeCount);
        foreach (string sentence in ValidSentences().Take(300).Append("我 👍🏽  x"))
        {
            Assert.Equal(fixture.Tokenizer.EncodeToIds(sentence), loaded.EncodeToIds(sentence));
        }

        JsonNode root = JsonNode.Parse(File.ReadAllText(path))!;
        Assert.Equal("transduce-bpe", (string?)root["format"]);
        Assert.Equal(1, (int?)root["version"]);
        Assert.Equal("none", (string?)root["normalization"]);
        Assert.Equal("whitespace-classes", (string?)root["pre_tokenizer"]);

        // Overwriting an existing file works and leaves no temporary file behind.
        loaded.Save(path);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    public static TheoryData<string, string> BadFiles => new()
    {
        { "not-json", "not valid JSON" },
        { "truncated", "not valid JSON" },
        { "array", "top level" },
        { "bad-utf8", "UTF-8" },
        { "wrong-format", "wrong format tag" },
        { "wrong-version", "unsupported version" },
        { "normalization", "unsupported normalization" },
        { "pre-tokenizer", "unknown pre_tokenizer" },
        { "no-byte-fallback", "byte_fallback" },
        { "no-vocab", "missing \"vocab\"" },
        { "vocab-not-array", "\"vocab\" must be an array" },
        { "vocab-number", "\"vocab\"[5] must be a string" },
        { "reserved-order", "vocab must start" },
        { "byte-token", "vocab must start" },
        { "duplicate-vocab", "duplicate vocab entry" },
        { "space-in-vocab", "contains a space" },
        { "no-merges", "missing \"merges\"" },
        { "malformed-merge", "two pieces separated by one space" },
        { "unknown-merge-part", "which is not a base character" },
        { "duplicate-merge", "repeats an earlier merge" },
        { "merge-result-missing", "not a learnt vocab entry" },
        { "orphan-piece", "neither a single character nor produced by a merge" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void LoadRejectsBadFiles(string kind, string expected)
    {
        using var dir = new TempDir();
        string good = BpeTokenizer.Train(Tiny, new BpeTrainingOptions { VocabSize = 300 }).ToJson();
        string path = dir.File(kind + ".json");
        if (kind == "bad-utf8")
        {
            File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes(good[..40]), 0xFF, 0xFE, .. Encoding.UTF8.GetBytes(good[40..])]);
        }
        else
        {
            File.WriteAllText(path, Corrupt(kind, good));
        }
        var ex = Assert.Throws<InvalidDataException>(() => BpeTokenizer.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void LoadRejectsMissingFile()
    {
        using var dir = new TempDir();
        string path = dir.File("absent.json");
        var ex = Assert.Throws<InvalidDataException>(() => BpeTokenizer.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("not found", ex.Message);
    }

    private static string Corrupt(string kind, string good)
    {
        if (kind == "not-json")
        {
            return "this is not json";
        }
        if (kind == "truncated")
        {
            return good[..(good.Length / 2)];
        }
        if (kind == "array")
        {
            return "[1, 2]";
        }
        JsonObject root = JsonNode.Parse(good)!.AsObject();
        JsonArray vocab = root["vocab"]!.AsArray();
        JsonArray merges = root["merges"]!.AsArray();
        Assert.True(merges.Count >= 2 && vocab.Count > 262);
        switch (kind)
        {
            case "wrong-format": root["format"] = "transduce-vocab"; break;
            case "wrong-version": root["version"] = 2; break;
            case "normalization": root["normalization"] = "nfkc"; break;
            case "pre-tokenizer": root["pre_tokenizer"] = "bytes"; break;
            case "no-byte-fallback": root["byte_fallback"] = false; break;
            case "no-vocab": root.Remove("vocab"); break;
            case "vocab-not-array": root["vocab"] = "abc"; break;
            case "vocab-number": vocab[5] = 5; break;
            case "reserved-order": vocab[0] = "<bos>"; vocab[1] = "<pad>"; break;
            case "byte-token": vocab[4 + 0x41] = "<0x41 >"; break;
            case "duplicate-vocab": vocab.Add((string?)vocab[262]); break;
            case "space-in-vocab": vocab.Add("a b"); break;
            case "no-merges": root.Remove("merges"); break;
            case "malformed-merge": merges.Add("ab"); break;
            case "unknown-merge-part": merges.Add("\u2581q zz"); break;
            case "duplicate-merge": merges.Add((string?)merges[0]); break;
            case "merge-result-missing": vocab.RemoveAt(vocab.Count - 1); break;
            case "orphan-piece": vocab.Add("zzq"); break;
            default: throw new ArgumentException(kind);
        }
        return root.ToJsonString();
    }
}
