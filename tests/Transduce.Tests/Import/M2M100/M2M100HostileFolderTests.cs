using System.Text.Json.Nodes;
using Transduce.Import.M2M100;

namespace Transduce.Tests.Import.M2M100;

/// <summary>NLLB folders that lie: each is refused with one line naming the file and the field, before big allocations.</summary>
public sealed class M2M100HostileFolderTests
{
    /// <summary>A copy of the tiny folder (one weights file), changed by <paramref name="edit"/>.</summary>
    private static TempDir Copy(Action<TempDir> edit)
    {
        var dir = new TempDir();
        foreach (var file in Directory.GetFiles(M2M100ParityTests.Folder))
            if (Path.GetFileName(file) is var name && name is not ("expected.json" or "pytorch_model.bin"))
                File.Copy(file, dir.File(name));
        edit(dir);
        return dir;
    }

    private static void Edit(TempDir dir, string file, Action<JsonObject> change)
    {
        var json = JsonNode.Parse(File.ReadAllText(dir.File(file)))!.AsObject();
        change(json);
        File.WriteAllText(dir.File(file), json.ToJsonString());
    }

    private static string Refusal(TempDir dir)
    {
        var e = Record.Exception(() => M2M100Import.Load(dir.Path).Dispose());
        Assert.True(e is InvalidDataException or FileNotFoundException, $"{e?.GetType().Name}: {e?.Message}");
        Assert.DoesNotContain("\n", e!.Message);
        return e.Message;
    }

    [Fact]
    public void AConfigTheWeightsCannotBackIsRefusedBeforeAllocating()
    {
        using var dir = Copy(d => Edit(d, "config.json", c => { c["d_model"] = 8192; c["encoder_ffn_dim"] = 65536; c["decoder_ffn_dim"] = 65536; }));
        string message = Refusal(dir);
        Assert.StartsWith(dir.File("config.json"), message);
        Assert.Contains("model.safetensors stores", message);
    }

    [Theory]
    [InlineData("model_type", "\"t5\"", "'model_type'")]
    [InlineData("activation_function", "\"mish\"", "'activation_function'")]
    [InlineData("encoder_attention_heads", "3", "'encoder_attention_heads'")]
    [InlineData("pad_token_id", "100000", "'pad_token_id'")]
    [InlineData("vocab_size", "-5", "'vocab_size'")]
    public void ABadConfigFieldIsNamed(string key, string value, string expected)
    {
        using var dir = Copy(d => Edit(d, "config.json", c => c[key] = JsonNode.Parse(value)));
        string message = Refusal(dir);
        Assert.StartsWith(dir.File("config.json"), message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void WeightsOfAnotherShapeAreNamed()
    {
        using var dir = Copy(d => Edit(d, "config.json", c => { c["encoder_ffn_dim"] = 24; c["decoder_ffn_dim"] = 24; }));
        string message = Refusal(dir);
        Assert.Contains("model.encoder.layers.0.fc1.weight", message);
    }

    [Fact]
    public void ATokenizerFileThatIsNotWhatItClaimsIsRefused()
    {
        using (var dir = Copy(d => File.WriteAllText(d.File(NllbTokenizer.ModelFile), "not a sentencepiece model")))
            Assert.StartsWith(dir.File(NllbTokenizer.ModelFile), Refusal(dir));
        using (var dir = Copy(d => File.Delete(d.File(NllbTokenizer.ModelFile))))
            Assert.Contains("sentencepiece.bpe.model: not found", Refusal(dir));
        using (var dir = Copy(d => Edit(d, "tokenizer_config.json", t => t["added_tokens_decoder"]!["2"]!["content"] = "<mask>")))
        {
            string message = Refusal(dir);
            Assert.StartsWith(dir.File("tokenizer_config.json"), message);
            Assert.Contains("'added_tokens_decoder'", message);
        }
        // Language ids beyond the model's vocabulary.
        using (var dir = Copy(d => Edit(d, "config.json", c => c["vocab_size"] = 100)))
            Assert.Contains("beyond the model's 'vocab_size' 100", Refusal(dir));
    }

    [Fact]
    public void AShardIndexEscapingTheFolderIsRefused()
    {
        using var dir = Copy(d =>
        {
            File.Move(d.File("model.safetensors"), d.File("model-00001-of-00001.safetensors"));
            var map = new JsonObject();
            foreach (var name in Transduce.IO.Safetensors.ReadHeader(d.File("model-00001-of-00001.safetensors")).Tensors.Keys)
                map[name] = "model-00001-of-00001.safetensors";
            map["model.shared.weight"] = "../../etc/model.safetensors";
            File.WriteAllText(d.File("model.safetensors.index.json"), new JsonObject { ["weight_map"] = map }.ToJsonString());
        });
        string message = Refusal(dir);
        Assert.StartsWith($"{dir.File("model.safetensors.index.json")}: 'weight_map' 'model.shared.weight'", message);
        Assert.Contains("outside the folder", message);
    }
}
