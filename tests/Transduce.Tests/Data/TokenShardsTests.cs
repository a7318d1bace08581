using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Transduce.Data;

namespace Transduce.Tests.Data;

public sealed class TokenShardsTests
{
    private static List<EncodedPair> SomePairs(int count)
    {
        var random = new Random(3);
        return Enumerable.Range(0, count)
            .Select(i => new EncodedPair(
                Enumerable.Range(0, random.Next(0, 6)).Select(_ => random.Next(4, 20)).ToArray(),
                Enumerable.Range(0, random.Next(1, 7)).Select(_ => random.Next(4, 30)).ToArray()))
            .ToList();
    }

    [Fact]
    public void PairsComeBackInOrderAcrossShards()
    {
        using var dir = new TempDir();
        var pairs = SomePairs(23);
        var info = TokenShards.Write(dir.Path, pairs, 20, 30, shardPairs: 5);
        Assert.Equal(23, info.Pairs);
        Assert.Equal([5, 5, 5, 5, 3], info.Shards.Select(s => s.Pairs));
        Assert.Equal(pairs.Sum(p => (long)p.Source.Length), info.SourceTokens);

        var read = TokenShards.Read(dir.Path);
        Assert.Equal(pairs.Count, read.Count);
        for (int i = 0; i < pairs.Count; i++)
        {
            Assert.Equal(pairs[i].Source, read[i].Source);
            Assert.Equal(pairs[i].Target, read[i].Target);
        }
    }

    [Fact]
    public void TheFormatIsTheDocumentedOne()
    {
        // One shard: int32 ids one after the other without <eos>, int64 offsets pairs + 1 long, little-endian safetensors.
        using var dir = new TempDir();
        TokenShards.Write(dir.Path, [new EncodedPair([7, 8], [9]), new EncodedPair([], [10, 11])], 12, 12);
        byte[] file = File.ReadAllBytes(Path.Combine(dir.Path, "shard-00000.safetensors"));
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)headerLength))!;
        int[] Ints(string name)
        {
            var entry = header[name]!;
            var offsets = entry["data_offsets"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            int size = entry["dtype"]!.GetValue<string>() == "I32" ? 4 : 8;
            return Enumerable.Range(0, (offsets[1] - offsets[0]) / size)
                .Select(i => size == 4
                    ? BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(8 + (int)headerLength + offsets[0] + i * 4))
                    : (int)BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(8 + (int)headerLength + offsets[0] + i * 8)))
                .ToArray();
        }
        Assert.Equal("I32", header["source_ids"]!["dtype"]!.GetValue<string>());
        Assert.Equal("I64", header["source_offsets"]!["dtype"]!.GetValue<string>());
        Assert.Equal([7, 8], Ints("source_ids"));
        Assert.Equal([0, 2, 2], Ints("source_offsets"));
        Assert.Equal([9, 10, 11], Ints("target_ids"));
        Assert.Equal([0, 1, 3], Ints("target_offsets"));
        Assert.Equal(0, (8 + headerLength) % 8);   // data 8-byte aligned: memory-mappable as int32/int64 arrays
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "shards.json")))!;
        Assert.Equal("transduce-token-shards", manifest["format"]!.GetValue<string>());
        Assert.Equal(2, manifest["pairs"]!.GetValue<int>());
    }

    [Fact]
    public void IdsOutsideTheVocabularyAreRefusedWhenWritingAndReading()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ArgumentException>(() => TokenShards.Write(dir.Path, [new EncodedPair([3], [4]), new EncodedPair([25], [4])], 20, 20));
        Assert.Contains("pair 1", e.Message);

        // A shard tampered with after writing: the reader names the file and the problem, and allocates nothing absurd.
        TokenShards.Write(dir.Path, [new EncodedPair([3], [4])], 20, 20);
        string manifest = Path.Combine(dir.Path, "shards.json");
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"source_vocab_size\": 20", "\"source_vocab_size\": 3"));
        var bad = Assert.Throws<InvalidDataException>(() => TokenShards.Read(dir.Path));
        Assert.Contains("shard-00000.safetensors", bad.Message);
        Assert.Contains("outside the source vocabulary", bad.Message);

        var node = JsonNode.Parse(File.ReadAllText(manifest))!;
        node["pairs"] = 2;
        File.WriteAllText(manifest, node.ToJsonString());
        Assert.Contains("shards.json", Assert.Throws<InvalidDataException>(() => TokenShards.Read(dir.Path)).Message);
        File.WriteAllText(manifest, "{\"format\": \"something else\"}");
        Assert.Contains("not a token-shard manifest", Assert.Throws<InvalidDataException>(() => TokenShards.Read(dir.Path)).Message);
    }

    [Fact]
    public void AManifestCanNameShardsElsewhere()
    {
        using var dir = new TempDir();
        string shards = Path.Combine(dir.Path, "prepared", "data");
        var pairs = SomePairs(7);
        TokenShards.Write(shards, pairs, 20, 30, shardPairs: 3);
        // What the DDP trainer writes into its checkpoints: the prepared manifest with absolute shard paths.
        string reference = Path.Combine(dir.Path, "run", "data");
        Directory.CreateDirectory(reference);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(shards, "shards.json")))!;
        foreach (var shard in manifest["shards"]!.AsArray()) shard!["file"] = Path.Combine(shards, shard["file"]!.GetValue<string>());
        File.WriteAllText(Path.Combine(reference, "shards.json"), manifest.ToJsonString());
        Assert.All(TokenShards.ReadInfo(reference).Shards, s => Assert.StartsWith(shards, s.File));
        Assert.Equal(pairs.Select(p => p.Target), TokenShards.Read(reference).Select(p => p.Target));
    }
}
