using System.Text.Json.Nodes;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Text;
using static TorchSharp.torch;
using Transduce.IO;

namespace Transduce.Tests.Checkpoints;

public sealed class CheckpointTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "transduce-ckpt-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private string SaveTrained(out IReadOnlyList<string> translations)
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 40);
        var checkpoint = new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        };
        using var translator = new Translator(checkpoint);
        translations = translator.Translate(TinyModels.Pairs.Select(p => p.Source).ToList());
        string path = Path.Combine(dir, "model");
        checkpoint.Save(path);
        return path;
    }

    [Fact]
    public async Task ReloadedCheckpointTranslatesIdenticallyAndGivesIdenticalLogits()
    {
        string path = SaveTrained(out var before);
        Assert.Equal(
            new[] { Checkpoint.ConfigFile, Checkpoint.WeightsFile, Checkpoint.SourceVocabularyFile, Checkpoint.TargetVocabularyFile }.Order(),
            Directory.GetFiles(path).Select(Path.GetFileName).Order());
        Assert.DoesNotContain(Directory.GetDirectories(dir), d => Path.GetFileName(d).StartsWith('.'));

        using var a = Translator.Load(path);
        Assert.Equal(before, a.Translate(TinyModels.Pairs.Select(p => p.Source).ToList()));
        // Many threads at once get the same answers (calls are serialised inside the translator).
        var parallel = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => a.TranslateAsync(TinyModels.Pairs.Select(p => p.Source).ToList())));
        Assert.All(parallel, r => Assert.Equal(before, r));

        // Saving over an existing checkpoint replaces it whole.
        a.Checkpoint.Save(path);
        using var b = Translator.Load(path);
        using var x = tensor(new long[] { 4, 5, 2 }, [1, 3]);
        using var len = tensor(new long[] { 3 });
        using var y = tensor(new long[] { 1, 4 }, [1, 2]);
        using var la = a.Checkpoint.Model.call(x, len, y);
        using var lb = b.Checkpoint.Model.call(x, len, y);
        Assert.True(la.allclose(lb, 0, 0));
    }

    [Fact]
    public void MissingDirectoryAndMissingConfigAreNamed()
    {
        var e1 = Assert.Throws<DirectoryNotFoundException>(() => Checkpoint.Load(Path.Combine(dir, "nope")));
        Assert.Contains("nope", e1.Message);
        Directory.CreateDirectory(dir);
        var e2 = Assert.Throws<FileNotFoundException>(() => Checkpoint.Load(dir));
        Assert.Contains("config.json", e2.Message);
    }

    [Fact]
    public void ForeignOrBrokenConfigIsRejectedWithTheFileName()
    {
        string path = SaveTrained(out _);
        string config = Path.Combine(path, Checkpoint.ConfigFile);
        string original = File.ReadAllText(config);

        File.WriteAllText(config, "{\"model_type\": \"bert\"}");
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("not a Transduce checkpoint", e.Message);

        // A MarianMT config is read as a MarianMT folder, which then lacks its files: the error names the missing one.
        File.WriteAllText(config, "{\"model_type\": \"marian\"}");
        var missing = Assert.ThrowsAny<IOException>(() => Checkpoint.Load(path));
        Assert.Contains("vocab.json", missing.Message);

        File.WriteAllText(config, original[..(original.Length / 2)]);
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("not valid JSON", e.Message);

        var node = JsonNode.Parse(original)!;
        node["model"]!["hidden_size"] = 48;
        File.WriteAllText(config, node.ToJsonString());
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Matches("shape|does not belong to these weights", e.Message);

        node["model"]!["hidden_size"] = 32;
        node["model"]!["architecture"] = "lstm";
        File.WriteAllText(config, node.ToJsonString());
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("unknown architecture 'lstm'", e.Message);
    }

    [Theory]
    [InlineData("hidden_size", 1_000_000_000, "'hidden_size' 1000000000 is larger than any supported model")]
    [InlineData("layers", 100_000, "'layers' 100000 is larger than any supported model")]
    [InlineData("target_vocab_size", -3, "'target_vocab_size' must be positive")]
    [InlineData("hidden_size", 4096, "does not belong to these weights")]
    [InlineData("layers", 200, "does not belong to these weights")]
    public void SizesTheWeightsCannotBackAreRefusedBeforeTheModelIsBuilt(string key, int value, string message)
    {
        // A hostile or careless config.json must not make us allocate what it asks for: refused from the file sizes alone.
        string path = SaveTrained(out _);
        string config = Path.Combine(path, Checkpoint.ConfigFile);
        var node = JsonNode.Parse(File.ReadAllText(config))!;
        node["model"]![key] = value;
        File.WriteAllText(config, node.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains(config, e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void TruncatedOrForeignWeightsAreRejectedWithTheFileName()
    {
        string path = SaveTrained(out _);
        string weights = Path.Combine(path, Checkpoint.WeightsFile);
        byte[] bytes = File.ReadAllBytes(weights);

        File.WriteAllBytes(weights, bytes[..(bytes.Length - 100)]);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("truncated", e.Message);

        File.WriteAllBytes(weights, bytes[..5]);
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("not a safetensors file", e.Message);

        File.WriteAllText(weights, "PK\u0003\u0004 this is a zip, not weights");
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void MissingOrUnexpectedTensorsAreListedByName()
    {
        string path = SaveTrained(out _);
        string weights = Path.Combine(path, Checkpoint.WeightsFile);
        var tensors = Safetensors.Load(weights, out _);
        var first = tensors.Keys.Order(StringComparer.Ordinal).First();
        tensors[first].Dispose();
        tensors.Remove(first);
        tensors["extra.weight"] = zeros(2);
        Safetensors.Save(weights, tensors);
        foreach (var t in tensors.Values) t.Dispose();
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains($"missing tensor '{first}'", e.Message);
        Assert.Contains("unexpected tensor 'extra.weight'", e.Message);
    }

    [Fact]
    public void VocabularyThatDoesNotFitTheModelIsRejected()
    {
        string path = SaveTrained(out _);
        Vocabulary.Build([["a", "b"]]).Save(Path.Combine(path, Checkpoint.TargetVocabularyFile));
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("vocabulary sizes", e.Message);
    }

    [Fact]
    public void SafetensorsRoundTripsDtypesShapesAndMetadata()
    {
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, "t.safetensors");
        using var f = arange(6, ScalarType.Float32).reshape(2, 3);
        using var l = tensor(new long[] { -1, 5 });
        using var s = zeros(0);
        Safetensors.Save(file, new Dictionary<string, Tensor> { ["f"] = f, ["l"] = l, ["empty"] = s }, new Dictionary<string, string> { ["k"] = "v" });
        var back = Safetensors.Load(file, out var meta);
        Assert.Equal("v", meta["k"]);
        Assert.True(back["f"].allclose(f, 0, 0));
        Assert.True(back["l"].allclose(l, 0, 0));
        Assert.Equal(new long[] { 0 }, back["empty"].shape);
        foreach (var t in back.Values) t.Dispose();
        // Header length is a multiple of 8 (data stays aligned).
        Assert.Equal(0, BitConverter.ToInt64(File.ReadAllBytes(file), 0) % 8);
    }
}
