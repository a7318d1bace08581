using Transduce.Text;

namespace Transduce.Tests.Text;

public sealed class VocabularyTests
{
    private static readonly string[][] Sentences =
    [
        ["b", "a", "c", "a"],
        ["c", "a", "d", "<eos>"],
        ["b", "e", "<unk>"],
    ];

    [Fact]
    public void ReservedTokensHaveFixedIds()
    {
        var v = Vocabulary.Build([]);
        Assert.Equal(4, v.Count);
        Assert.Equal([Vocabulary.PadToken, Vocabulary.BosToken, Vocabulary.EosToken, Vocabulary.UnkToken], v.Tokens);
        Assert.Equal("<pad>", Vocabulary.PadToken);
        Assert.Equal("<bos>", Vocabulary.BosToken);
        Assert.Equal("<eos>", Vocabulary.EosToken);
        Assert.Equal("<unk>", Vocabulary.UnkToken);
        Assert.Equal((0, 1, 2, 3), (v.PadId, v.BosId, v.EosId, v.UnkId));
        Assert.Equal(v.EosId, v["<eos>"]);
    }

    [Fact]
    public void BuildOrdersByCountThenOrdinalAndNeverDuplicatesReserved()
    {
        // counts: a=3, b=2, c=2, d=1, e=1; reserved tokens in text are not added again.
        var v = Vocabulary.Build(Sentences);
        Assert.Equal(["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c", "d", "e"], v.Tokens);
        Assert.Equal(4, v["a"]);
        Assert.Equal("c", v[6]);
    }

    [Fact]
    public void BuildIsDeterministicRegardlessOfInputOrder()
    {
        var v1 = Vocabulary.Build(Sentences);
        var v2 = Vocabulary.Build(Sentences.Reverse().Select(s => s.Reverse()));
        Assert.Equal(v1.Tokens, v2.Tokens);
    }

    [Fact]
    public void MinFrequencyDropsRareTokens()
    {
        var v = Vocabulary.Build(Sentences, minFrequency: 2);
        Assert.Equal(["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c"], v.Tokens);
        Assert.Equal(v.UnkId, v["d"]);
    }

    [Fact]
    public void UnknownTokensMapToUnkAndBadIdsThrow()
    {
        var v = Vocabulary.Build(Sentences);
        Assert.Equal(3, v["zebra"]);
        Assert.Equal([4, 3, 5], v.Encode(["a", "zebra", "b"]));
        Assert.Throws<ArgumentOutOfRangeException>(() => v[-1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => v[v.Count]);
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Decode([4, 99]));
    }

    [Fact]
    public void DecodeStopsAtEosAndSkipsSpecials()
    {
        var v = Vocabulary.Build(Sentences);
        int[] ids = [v.BosId, 4, v.UnkId, 5, v.EosId, 6, v.PadId];
        Assert.Equal(["a", "<unk>", "b"], v.Decode(ids));
        Assert.Equal(["a", "<unk>", "b", "c"], v.Decode(ids, stopAtEos: false));
        Assert.Equal(["<bos>", "a", "<unk>", "b"], v.Decode(ids, skipSpecial: false));
        Assert.Equal(["<bos>", "a", "<unk>", "b", "<eos>", "c", "<pad>"], v.Decode(ids, stopAtEos: false, skipSpecial: false));
    }

    [Fact]
    public void SaveLoadRoundTrips()
    {
        using var tmp = new TempDir();
        var v = Vocabulary.Build([["ça", "va", "\"quoted\"", "back\\slash", "ça"], ["va"]]);
        string path = tmp.File(Path.Combine("sub", "vocab.json"));
        v.Save(path);
        v.Save(path); // overwrite works
        var loaded = Vocabulary.Load(path);
        Assert.Equal(v.Tokens, loaded.Tokens);
        Assert.Equal(v["ça"], loaded["ça"]);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!)); // no temp file left behind
        string text = File.ReadAllText(path);
        Assert.Contains("\"format\": \"transduce-vocab\"", text);
        Assert.Contains("\"version\": 1", text);
        Assert.Equal(v.Tokens, Vocabulary.FromJson(v.ToJson(), "mem").Tokens);
    }

    [Theory]
    [InlineData("not json at all", "not valid JSON")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":[\"<pad>\"", "not valid JSON")]
    [InlineData("", "not valid JSON")]
    [InlineData("[1,2]", "expected a JSON object")]
    [InlineData("{\"format\":\"other\",\"version\":1,\"tokens\":[]}", "wrong format tag")]
    [InlineData("{\"version\":1,\"tokens\":[]}", "wrong format tag")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":2,\"tokens\":[]}", "unsupported version")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1}", "missing \"tokens\"")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":{}}", "must be an array")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":[\"<pad>\",\"<bos>\",\"<eos>\",\"<unk>\",7]}", "token at id 4")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":[\"<pad>\",\"<bos>\",\"<eos>\"]}", "id 3 is nothing")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":[\"<unk>\",\"<pad>\",\"<bos>\",\"<eos>\"]}", "id 0 is \"<unk>\"")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":[\"<pad>\",\"<bos>\",\"<eos>\",\"<unk>\",\"a\",\"b\",\"a\"]}", "duplicate token \"a\" at ids 4 and 6")]
    [InlineData("{\"format\":\"transduce-vocab\",\"version\":1,\"tokens\":[\"<pad>\",\"<bos>\",\"<eos>\",\"<unk>\",\"<pad>\"]}", "duplicate token \"<pad>\"")]
    public void LoadRejectsBadFilesNamingFileAndProblem(string json, string expectedProblem)
    {
        using var tmp = new TempDir();
        string path = tmp.WriteText("bad-vocab.json", json);
        var ex = Assert.Throws<InvalidDataException>(() => Vocabulary.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(expectedProblem, ex.Message);
    }

    [Fact]
    public void LoadRejectsInvalidUtf8AndMissingFile()
    {
        using var tmp = new TempDir();
        string path = tmp.WriteBytes("bad-utf8.json", [(byte)'{', 0xFF, (byte)'}']);
        var ex = Assert.Throws<InvalidDataException>(() => Vocabulary.Load(path));
        Assert.Contains(path, ex.Message);
        var missing = Assert.Throws<FileNotFoundException>(() => Vocabulary.Load(tmp.File("nope.json")));
        Assert.Contains("nope.json", missing.Message);
    }
}
