using System.Text.Json;
using Transduce.Inference;
using Transduce.Import.Marian;
using static TorchSharp.torch;
using Transduce.IO;

namespace Transduce.Tests.Import.Marian;

/// <summary>
/// Parity with transformers on <c>../shared/testdata/marian-tiny</c>: a random MarianMT model and what transformers
/// computed with it (<c>expected.json</c>).
/// </summary>
public sealed class MarianParityTests(MarianFolders folders) : IClassFixture<MarianFolders>
{
    private const int MaxNewTokens = 24, NumBeams = 4;

    private static string Folder => MarianFolders.Shipped;

    /// <summary>The folder as shipped (both weights files; safetensors is read), or a copy holding only <paramref name="weights"/>.</summary>
    private string FolderWith(string weights) => weights == "model.safetensors" ? Folder : folders.PyTorchOnly;

    private static readonly Lazy<JsonElement> s_expected = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "expected.json"))).RootElement);

    private static JsonElement Expected => s_expected.Value;

    private static long[][] Ints(string name) =>
        Expected.GetProperty(name).EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();

    private static Tensor Matrix(long[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);

    /// <summary>A transformers output row without the start token, cut before <c>&lt;eos&gt;</c> (the padding after it dropped).</summary>
    private static int[] Generated(long[] row, int eos)
    {
        var tokens = row.Skip(1).Select(x => (int)x).ToList();
        int end = tokens.IndexOf(eos);
        return (end >= 0 ? tokens.Take(end) : tokens).ToArray();
    }

    [Fact]
    public void ConfigMapsOntoTheTransformer()
    {
        using var marian = MarianImport.Load(Folder);
        var c = marian.Config;
        Assert.Equal(("transformer", 64, 2, 4, 128, "swish"), (c.Architecture, c.HiddenSize, c.Layers, c.Heads, c.FfnSize, c.Activation));
        Assert.Equal((1075, 1075, 256, "halves"), (c.SourceVocabSize, c.TargetVocabSize, c.MaxPositions, c.PositionalLayout));
        Assert.True(c.ShareEmbeddings && c.TieEmbeddings && c.AttentionBias && c.ScaleEmbedding && !c.PreNorm);
        Assert.Null(c.DecoderLayers);
        Assert.Equal((1074, 1074, 0), (marian.Ids.Pad, marian.Ids.Bos, marian.Ids.Eos));
        Assert.Equal(0, marian.Generation.ForcedEosTokenId);
        Assert.Equal(1074, marian.SourceVocabulary["<pad>"]);
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("pytorch_model.bin")]
    public void EncoderOutputOfSentence0MatchesTransformers(string weights)
    {
        using var marian = MarianImport.Load(FolderWith(weights));
        using var scope = NewDisposeScope();
        var ids = Matrix(Ints("input_ids")[..1]);
        var mask = Matrix(Ints("attention_mask")[..1]);
        var expected = Expected.GetProperty("encoder_last_hidden_first").EnumerateArray()
            .Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();
        var reference = tensor(expected.SelectMany(r => r).ToArray(), [expected.Length, expected[0].Length]);
        var ours = marian.Encode(ids, mask)[0];
        Assert.Equal(reference.shape, ours.shape);
        double diff = (ours - reference).abs().max().item<float>();
        Assert.True(diff <= 1e-4, $"max |difference| {diff}");
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("pytorch_model.bin")]
    public void LogitsMatchTransformers(string weights)
    {
        using var marian = MarianImport.Load(FolderWith(weights));
        using var scope = NewDisposeScope();
        var logits = marian.Logits(Matrix(Ints("input_ids")), Matrix(Ints("attention_mask")), Matrix(Ints("logits_decoder_input_ids")));
        var rows = Expected.GetProperty("logits_first_rows").EnumerateArray().ToArray();
        for (int s = 0; s < rows.Length; s++)
        {
            var expected = rows[s].EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();
            var reference = tensor(expected.SelectMany(r => r).ToArray(), [expected.Length, expected[0].Length]);
            double diff = (logits[s] - reference).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"sentence {s}: max |difference| {diff}");
        }
        var argmax = logits.argmax(-1);
        var expectedArgmax = Ints("logits_argmax");
        for (int s = 0; s < expectedArgmax.Length; s++)
            Assert.Equal(expectedArgmax[s], argmax[s].data<long>().ToArray());
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("pytorch_model.bin")]
    public void GreedyOutputEqualsTransformersGenerate(string weights)
    {
        using var marian = MarianImport.Load(FolderWith(weights));
        using var scope = NewDisposeScope();
        var outputs = marian.Greedy(Matrix(Ints("input_ids")), Matrix(Ints("attention_mask")), MaxNewTokens);
        var expected = Ints("greedy_ids");
        for (int s = 0; s < expected.Length; s++)
            Assert.True(Generated(expected[s], marian.Ids.Eos).SequenceEqual(outputs[s]),
                $"sentence {s}: expected [{string.Join(' ', Generated(expected[s], marian.Ids.Eos))}], got [{string.Join(' ', outputs[s])}]");
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("pytorch_model.bin")]
    public void Beam4OutputEqualsTransformersGenerate(string weights)
    {
        using var marian = MarianImport.Load(FolderWith(weights));
        using var scope = NewDisposeScope();
        // expected.json's beams were generated with early_stopping=True (the folder itself asks for the default, False).
        var outputs = marian.Beam(Matrix(Ints("input_ids")), Matrix(Ints("attention_mask")), NumBeams, MaxNewTokens, earlyStopping: EarlyStopping.WhenFull);
        var expected = Ints("beam4_ids");
        for (int s = 0; s < expected.Length; s++)
            Assert.True(Generated(expected[s], marian.Ids.Eos).SequenceEqual(outputs[s][0].Tokens),
                $"sentence {s}: expected [{string.Join(' ', Generated(expected[s], marian.Ids.Eos))}], got [{string.Join(' ', outputs[s][0].Tokens)}]");
    }

    [Fact]
    public void HalvesLayoutPutsSinesFirstAndCosinesSecond()
    {
        using var scope = NewDisposeScope();
        using var encoding = new Transduce.Models.Transformer.PositionalEncoding(
            Transduce.Tests.Models.Transformer.PositionalEncodingTests.Spec(6, 4, Transduce.Models.Transformer.SinusoidLayout.Halves));
        var table = encoding.call(zeros(1, 4, 6), 0)[0];
        for (int pos = 0; pos < 4; pos++)
            for (int i = 0; i < 3; i++)
            {
                double angle = pos / Math.Pow(10000, 2.0 * i / 6);
                Assert.True(Math.Abs(Math.Sin(angle) - table[pos, i].item<float>()) < 1e-7, $"sin at ({pos}, {i})");
                Assert.True(Math.Abs(Math.Cos(angle) - table[pos, 3 + i].item<float>()) < 1e-7, $"cos at ({pos}, {3 + i})");
            }
    }

    [Fact]
    public void DecoderDepthCanDifferFromTheEncoders()
    {
        var config = MarianImport.ReadModelConfig(Path.Combine(Folder, "config.json")) with { DecoderLayers = 1 };
        using var model = new Transduce.Models.Transformer.TransformerSeq2Seq(config);
        var names = model.state_dict().Keys.ToList();
        Assert.Contains("encoder.blocks.1.ffn.dense1.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("decoder.blocks.1.", StringComparison.Ordinal));
        Assert.Contains("decoder.blocks.0.CrossAttention.W_q.bias", names);
    }

    [Fact]
    public void BannedTokensAreNeverGenerated()
    {
        using var marian = MarianImport.Load(Folder);
        using var scope = NewDisposeScope();
        var ids = Matrix(Ints("input_ids")[..4]);
        var lengths = MarianModel.ValidLengths(Matrix(Ints("attention_mask")[..4]));
        int[] banned = [285, 157];
        var greedy = GreedySearch.Decode(marian.Model, ids, lengths, marian.Ids, [10, 10, 10, 10], banned);
        Assert.All(greedy, row => Assert.DoesNotContain(row, banned.Contains));
        Assert.Contains(greedy, row => row.Length > 0);
        var beam = BeamSearch.Decode(marian.Model, ids, lengths, marian.Ids, [10, 10, 10, 10],
            marian.BeamOptions(NumBeams) with { BannedTokens = banned });
        Assert.All(beam, row => Assert.DoesNotContain(row[0].Tokens, banned.Contains));
    }

    /// <summary>A writable copy of the test folder, changed by <paramref name="edit"/>.</summary>
    private static string BrokenCopy(Action<string> edit) =>
        MarianFolders.CopyTo(Path.Combine(Path.GetTempPath(), $"marian-broken-{Guid.NewGuid():N}"), edit);

    private static Exception LoadFails(Action<string> edit)
    {
        string dir = BrokenCopy(edit);
        try
        {
            return Assert.ThrowsAny<Exception>(() => MarianImport.Load(dir).Dispose());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void MissingVocabularyIsNamed()
    {
        var e = LoadFails(dir => File.Delete(Path.Combine(dir, "vocab.json")));
        Assert.IsType<FileNotFoundException>(e);
        Assert.Contains("vocab.json: not found", e.Message);
    }

    [Fact]
    public void MissingWeightsAreNamed()
    {
        var e = LoadFails(dir =>
        {
            File.Delete(Path.Combine(dir, "model.safetensors"));
            File.Delete(Path.Combine(dir, "pytorch_model.bin"));
        });
        Assert.IsType<FileNotFoundException>(e);
        Assert.Contains("model.safetensors: not found", e.Message);
        Assert.Contains("pytorch_model.bin", e.Message);
    }

    [Fact]
    public void PyTorchFileLoadsTiedWeightsOnceAndKeepsThemTied()
    {
        // transformers' state dicts store the shared embedding once, under four names.
        string bin = Path.Combine(Folder, MarianImport.PyTorchWeightsFile);
        var tensors = Transduce.Checkpoints.WeightFiles.Load(bin);
        try
        {
            var fromSafetensors = Transduce.IO.Safetensors.Load(Path.Combine(Folder, MarianImport.WeightsFile), out _);
            try
            {
                // transformers' safetensors keep one name per shared weight; the pickle has all of them.
                Assert.Subset(tensors.Keys.ToHashSet(), fromSafetensors.Keys.ToHashSet());
                foreach (var (name, t) in fromSafetensors)
                    Assert.True(t.allclose(tensors[name], 0, 0), name);
            }
            finally
            {
                foreach (var t in fromSafetensors.Values) t.Dispose();
            }
            // One buffer under four names: a change through one name shows through the others.
            string[] tied = ["model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"];
            using var before = tensors[tied[1]].clone();
            tensors[tied[0]].add_(1);
            foreach (var name in tied.Skip(1))
                Assert.True(tensors[name].allclose(before + 1, 0, 0), name);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }

        // Loaded into the model, the shared embedding and the output layer stay one parameter.
        using var marian = MarianImport.Load(folders.PyTorchOnly);
        var state = marian.Model.state_dict();
        using var dense = state["decoder.dense.weight"].clone();
        using (no_grad()) state["encoder.embedding.weight"].add_(1);
        Assert.True(state["decoder.embedding.weight"].allclose(dense + 1, 0, 0));
        Assert.True(state["decoder.dense.weight"].allclose(dense + 1, 0, 0));
    }

    [Fact]
    public void ShapeMismatchNamesTheTensors()
    {
        var e = LoadFails(dir => MarianFolders.SetConfig(dir, "encoder_ffn_dim", 96));
        // encoder and decoder FFN widths must agree: the config itself is refused first
        Assert.Contains("config.json", e.Message);
        Assert.Contains("encoder_ffn_dim", e.Message);

        e = LoadFails(dir =>
        {
            MarianFolders.SetConfig(dir, "encoder_ffn_dim", 96);
            MarianFolders.SetConfig(dir, "decoder_ffn_dim", 96);
        });
        Assert.IsType<InvalidDataException>(e);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("tensor 'model.encoder.layers.0.fc1.weight' has shape [128, 64], the model needs [96, 64]", e.Message);
        Assert.Contains("tensor 'model.decoder.layers.1.fc2.weight' has shape [64, 128], the model needs [64, 96]", e.Message);
    }

    [Fact]
    public void MissingAndUnexpectedTensorsAreNamed()
    {
        var e = LoadFails(dir =>
        {
            MarianFolders.SetConfig(dir, "encoder_layers", 3);
            MarianFolders.SetConfig(dir, "decoder_layers", 1);
        });
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("missing tensor 'model.encoder.layers.2.self_attn.q_proj.weight'", e.Message);
        Assert.Contains("unexpected tensor 'model.decoder.layers.1.fc1.weight'", e.Message);
    }

    [Fact]
    public void UnknownActivationIsNamed()
    {
        var e = LoadFails(dir => MarianFolders.SetConfig(dir, "activation_function", "mish"));
        Assert.IsType<InvalidDataException>(e);
        Assert.Contains("config.json", e.Message);
        Assert.Contains("unknown 'activation_function' 'mish'", e.Message);
    }
}

/// <summary>A copy of marian-tiny with only <c>pytorch_model.bin</c> (no safetensors), shared by a test class.</summary>
public sealed class MarianFolders : IDisposable
{
    /// <summary>The folder as shipped in <c>../shared/testdata</c>.</summary>
    public static string Shipped => Path.GetFullPath(Path.Combine(TestPaths.RepoRoot, "..", "shared", "testdata", "marian-tiny"));

    /// <summary>The copy without <c>model.safetensors</c>.</summary>
    public string PyTorchOnly { get; } = Path.Combine(Path.GetTempPath(), $"marian-bin-{Guid.NewGuid():N}");

    public MarianFolders() => CopyTo(PyTorchOnly, leaveOut: "model.safetensors");

    /// <summary>
    /// A writable copy of the shipped folder at <paramref name="into"/>, without <c>expected.json</c> and
    /// <paramref name="leaveOut"/>, then changed by <paramref name="edit"/>.
    /// </summary>
    public static string CopyTo(string into, Action<string>? edit = null, params string[] leaveOut)
    {
        Directory.CreateDirectory(into);
        foreach (var file in Directory.GetFiles(Shipped))
            if (Path.GetFileName(file) is var name && name != "expected.json" && !leaveOut.Contains(name))
                File.Copy(file, Path.Combine(into, name));
        foreach (var file in Directory.GetFiles(into)) File.SetAttributes(file, FileAttributes.Normal);
        edit?.Invoke(into);
        return into;
    }

    /// <summary>Sets <paramref name="key"/> of the folder's <c>config.json</c>.</summary>
    public static void SetConfig(string folder, string key, System.Text.Json.Nodes.JsonNode? value)
    {
        string path = Path.Combine(folder, "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json[key] = value;
        File.WriteAllText(path, json.ToJsonString());
    }

    public void Dispose() => Directory.Delete(PyTorchOnly, recursive: true);
}
