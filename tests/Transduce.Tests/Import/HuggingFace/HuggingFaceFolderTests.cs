using System.Text.Json.Nodes;
using Transduce.Import.HuggingFace;
using Transduce.Import.Marian;
using Transduce.IO;
using Transduce.Tests.Import.Marian;
using static TorchSharp.torch;

namespace Transduce.Tests.Import.HuggingFace;

/// <summary>
/// Reading a <c>save_pretrained</c> folder as untrusted input: one weights file or shards behind an index, and every
/// way an index or a file name can point somewhere it should not.
/// </summary>
public sealed class HuggingFaceFolderTests
{
    private static Dictionary<string, Tensor> SomeTensors() => new(StringComparer.Ordinal)
    {
        ["a.weight"] = arange(6, ScalarType.Float32).reshape(2, 3),
        ["b.weight"] = arange(4, ScalarType.Float32).add(10),
        ["c.bias"] = ones(5),
    };

    /// <summary>Writes the tensors as two safetensors shards (a, b | c) and an index, as <c>save_pretrained</c> does; returns the index.</summary>
    private static string WriteSharded(TempDir dir, Action<JsonObject>? editMap = null)
    {
        var all = SomeTensors();
        Safetensors.Save(dir.File("model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a.weight"] = all["a.weight"], ["b.weight"] = all["b.weight"] });
        Safetensors.Save(dir.File("model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["c.bias"] = all["c.bias"] });
        var map = new JsonObject
        {
            ["a.weight"] = "model-00001-of-00002.safetensors",
            ["b.weight"] = "model-00001-of-00002.safetensors",
            ["c.bias"] = "model-00002-of-00002.safetensors",
        };
        editMap?.Invoke(map);
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 60 }, ["weight_map"] = map };
        return dir.WriteText(HuggingFaceWeights.SafetensorsIndexFile, index.ToJsonString());
    }

    private static string Message(Action action) => Assert.IsType<InvalidDataException>(Record.Exception(action)).Message;

    [Fact]
    public void OneFileAndShardsReadTheSameTensors()
    {
        using var single = new TempDir();
        Safetensors.Save(single.File(HuggingFaceWeights.SafetensorsFile), SomeTensors());
        using var sharded = new TempDir();
        WriteSharded(sharded);

        var one = new HuggingFaceFolder(single.Path, "test").Weights();
        var two = new HuggingFaceFolder(sharded.Path, "test").Weights();
        Assert.False(one.Sharded);
        Assert.True(two.Sharded);
        Assert.Equal(2, two.Files.Count);
        var (d1, d2) = (one.Describe(), two.Describe());
        Assert.Equal(6 + 4 + 5, d1.StoredElements);
        Assert.Equal(d1.StoredElements, d2.StoredElements);
        Assert.Equal(d1.Shapes.Keys.Order(), d2.Shapes.Keys.Order());
        var (l1, l2) = (one.Load(), two.Load());
        foreach (var (name, t) in l1)
            Assert.True(t.eq(l2[name]).all().item<bool>(), name);
        foreach (var t in l1.Values.Concat(l2.Values)) t.Dispose();
    }

    [Fact]
    public void NoWeightsNamesTheFourFiles()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<FileNotFoundException>(() => new HuggingFaceFolder(dir.Path, "NLLB / M2M100").Weights());
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("pytorch_model.bin.index.json", e.Message);
    }

    [Theory]
    [InlineData("missing.safetensors", "not found")]
    [InlineData("../outside.safetensors", "points outside the folder")]
    [InlineData("/etc/passwd", "is not a file name inside the folder")]
    [InlineData("config.json", "is not a .safetensors shard")]
    [InlineData("model-00001-of-00002.bin", "is not a .safetensors shard")]
    public void AnIndexNamingABadShardIsRefusedNamingTheField(string shard, string expected)
    {
        using var dir = new TempDir();
        dir.WriteText("config.json", "{}");
        string index = WriteSharded(dir, map => map["c.bias"] = shard);
        string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights());
        Assert.StartsWith($"{index}: 'weight_map' 'c.bias'", message);
        Assert.Contains(expected, message);
        Assert.DoesNotContain("\n", message);
    }

    [Fact]
    public void AShardThatIsNotSafetensorsIsRefusedByItsHeader()
    {
        using var dir = new TempDir();
        WriteSharded(dir);
        string shard = dir.WriteText("model-00002-of-00002.safetensors", "this is a text file, not tensors");
        var weights = new HuggingFaceFolder(dir.Path, "test").Weights();
        Assert.StartsWith($"{shard}: not a safetensors file", Message(() => weights.Describe()));
    }

    [Fact]
    public void ASymlinkOutOfTheFolderIsRefused()
    {
        using var outside = new TempDir();
        Safetensors.Save(outside.File("elsewhere.safetensors"), new Dictionary<string, Tensor> { ["c.bias"] = ones(5) });
        using var dir = new TempDir();
        WriteSharded(dir);
        File.Delete(dir.File("model-00002-of-00002.safetensors"));
        File.CreateSymbolicLink(dir.File("model-00002-of-00002.safetensors"), outside.File("elsewhere.safetensors"));
        string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights());
        Assert.Contains("'weight_map' 'c.bias'", message);
        Assert.Contains("outside the folder", message);

        // A symlink inside the folder is fine, and so is the Hub cache's snapshots/<rev>/file → ../../blobs/<hash>.
        using var hub = new TempDir();
        string blobs = Directory.CreateDirectory(Path.Combine(hub.Path, "models--x--y", "blobs")).FullName;
        string snapshot = Directory.CreateDirectory(Path.Combine(hub.Path, "models--x--y", "snapshots", "abc123")).FullName;
        Safetensors.Save(Path.Combine(blobs, "0123abcd"), SomeTensors());
        File.CreateSymbolicLink(Path.Combine(snapshot, HuggingFaceWeights.SafetensorsFile), "../../blobs/0123abcd");
        var weights = new HuggingFaceFolder(snapshot, "test").Weights();
        Assert.Equal(15, weights.Describe().StoredElements);
    }

    [Fact]
    public void TensorsMustBeWhereTheIndexSays()
    {
        // c.bias mapped to shard 1, but stored in shard 2.
        using (var dir = new TempDir())
        {
            string index = WriteSharded(dir, map => map["c.bias"] = "model-00001-of-00002.safetensors");
            string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights().Describe());
            Assert.Contains("tensor 'c.bias'", message);
        }
        // The map lists a tensor no shard holds.
        using (var dir = new TempDir())
        {
            WriteSharded(dir, map => map["d.weight"] = "model-00002-of-00002.safetensors");
            string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights().Describe());
            Assert.Contains("tensor 'd.weight' is missing", message);
        }
        // A shard holds a tensor the map does not list.
        using (var dir = new TempDir())
        {
            WriteSharded(dir, map => map.Remove("b.weight"));
            string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights().Describe());
            Assert.Contains("tensor 'b.weight' is not in the 'weight_map'", message);
        }
        // The same tensor in both shards.
        using (var dir = new TempDir())
        {
            WriteSharded(dir);
            Safetensors.Save(dir.File("model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["c.bias"] = ones(5), ["a.weight"] = zeros(2, 3) });
            string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights().Load());
            Assert.Contains("tensor 'a.weight'", message);
        }
    }

    [Theory]
    [InlineData("{\"weight_map\": []}", "'weight_map' must be an object")]
    [InlineData("{\"weight_map\": {\"a\": 3}}", "'weight_map': 'a' must name a shard file")]
    [InlineData("{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}", "not valid JSON")]
    [InlineData("not json", "not valid JSON")]
    public void AMalformedIndexIsOneLine(string text, string expected)
    {
        using var dir = new TempDir();
        string index = dir.WriteText(HuggingFaceWeights.SafetensorsIndexFile, text);
        string message = Message(() => new HuggingFaceFolder(dir.Path, "test").Weights());
        Assert.StartsWith(index, message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void MarianLoadsFromShardsAsFromOneFile()
    {
        using var dir = new TempDir();
        MarianFolders.CopyTo(dir.Path, leaveOut: ["model.safetensors", "pytorch_model.bin"]);
        var all = Safetensors.Load(Path.Combine(MarianFolders.Shipped, "model.safetensors"), out _);
        var names = all.Keys.Order(StringComparer.Ordinal).ToList();
        var map = new JsonObject();
        for (int shard = 0; shard < 2; shard++)
        {
            string file = $"model-0000{shard + 1}-of-00002.safetensors";
            var part = names.Where((_, i) => i % 2 == shard).ToDictionary(n => n, n => all[n]);
            Safetensors.Save(dir.File(file), part);
            foreach (var n in part.Keys) map[n] = file;
        }
        dir.WriteText(HuggingFaceWeights.SafetensorsIndexFile, new JsonObject { ["weight_map"] = map }.ToJsonString());

        using var fromShards = MarianImport.Load(dir.Path);
        using var fromFile = MarianImport.Load(MarianFolders.Shipped);
        var expected = fromFile.Model.state_dict();
        foreach (var (name, t) in fromShards.Model.state_dict())
            Assert.True(t.eq(expected[name]).all().item<bool>(), name);
        foreach (var t in all.Values) t.Dispose();
    }

    [Fact]
    public void AConfigTooBigForTheShardsIsRefusedBeforeAllocating()
    {
        using var dir = new TempDir();
        MarianFolders.CopyTo(dir.Path, leaveOut: ["model.safetensors", "pytorch_model.bin"]);
        WriteSharded(dir);
        MarianFolders.SetConfig(dir.Path, "d_model", 4096);
        string message = Message(() => MarianImport.Load(dir.Path).Dispose());
        Assert.StartsWith(dir.File("config.json"), message);
        Assert.Contains("model.safetensors.index.json stores 15", message);
    }
}
