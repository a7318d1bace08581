using System.Security.Cryptography;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.IO;
using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Tests.Checkpoints;

/// <summary>
/// Checkpoints load by mapping their weights file copy-on-write into parameters built without weights: what a user relies on
/// is that the loaded model is the saved one, ties stay ties, training it never touches the file, and packing for a compute
/// type (which lets the mapped originals leave memory) changes no result.
/// </summary>
public sealed class MappedLoadTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "transduce-mapped-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static TransformerConfig Tied => new()
    {
        SourceVocabSize = 60, TargetVocabSize = 60, EmbeddingSize = 32, HiddenSize = 32, Layers = 2, Heads = 4, FfnSize = 64,
        PreNorm = true, TieEmbeddings = true, ShareEmbeddings = true, AttentionBias = true, Dropout = 0,
    };

    private string Save(ModelConfig config, int seed = 3)
    {
        manual_seed(seed);
        var model = ModelRegistry.Create(config);
        model.eval();
        var vocabulary = Vocabulary.Build([Enumerable.Range(4, config.TargetVocabSize - 4).Select(i => $"w{i}")]);
        string path = Path.Combine(dir, Guid.NewGuid().ToString("N"));
        using var checkpoint = new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = new TextConfig { Normalizer = "none", Tokenizer = "word" },
            SourceVocabulary = vocabulary, TargetVocabulary = vocabulary,
        };
        checkpoint.Save(path);
        return path;
    }

    private static Dictionary<string, float[]> Values(nn.Module model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to_type(ScalarType.Float32).contiguous().data<float>().ToArray());

    [Fact]
    public void ALoadedModelIsTheSavedOneWithItsTiesAndWritingToItLeavesTheFileAlone()
    {
        string path = Save(Tied);
        string weights = Path.Combine(path, Checkpoint.WeightsFile);
        byte[] hash = SHA256.HashData(File.ReadAllBytes(weights));
        Dictionary<string, float[]> saved;
        using (var first = Checkpoint.Load(path))
        {
            saved = Values(first.Model);
            var sd = first.Model.state_dict();
            Assert.All(sd.Values, t => Assert.Equal(TorchSharp.DeviceType.CPU, t.device_type));
            // One weight for the shared embeddings and the tied output layer: a change to one is a change to all.
            using (no_grad()) sd["decoder.dense.weight"][7, 3].fill_(42);
            Assert.Equal(42f, sd["encoder.embedding.weight"][7, 3].item<float>());
            Assert.Equal(42f, sd["decoder.embedding.weight"][7, 3].item<float>());
            using (no_grad())
                foreach (var t in sd.Values) t.add_(1); // what an optimiser step does to every weight
        }
        Assert.Equal(hash, SHA256.HashData(File.ReadAllBytes(weights)));
        using var again = Checkpoint.Load(path);
        var reloaded = Values(again.Model);
        Assert.Equal(saved.Keys.Order(), reloaded.Keys.Order());
        foreach (var (name, values) in saved) Assert.Equal(values, reloaded[name]);
    }

    [Fact]
    public void ATiedWeightIsStoredOnceAndFilesThatStoreItUnderEveryNameStillLoad()
    {
        string path = Save(Tied);
        string weights = Path.Combine(path, Checkpoint.WeightsFile);
        var names = Safetensors.ReadHeader(weights).Tensors.Keys.ToList();
        Assert.Single(names, n => n is "encoder.embedding.weight" or "decoder.embedding.weight" or "decoder.dense.weight");
        Dictionary<string, float[]> saved;
        using (var loaded = Checkpoint.Load(path))
        {
            saved = Values(loaded.Model);
            // The layout of earlier checkpoints (and of the PyTorch twin's saves): the weight under each of its names.
            var all = loaded.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.contiguous());
            Safetensors.Save(weights, all);
        }
        Assert.Contains("decoder.dense.weight", Safetensors.ReadHeader(weights).Tensors.Keys);
        using var again = Checkpoint.Load(path);
        var sd = again.Model.state_dict();
        using (no_grad()) sd["decoder.dense.weight"][1, 1].fill_(5);
        Assert.Equal(5f, sd["encoder.embedding.weight"][1, 1].item<float>());
        using (no_grad()) sd["decoder.dense.weight"][1, 1].fill_(saved["decoder.dense.weight"][1 * Tied.HiddenSize + 1]);
        var reloaded = Values(again.Model);
        foreach (var (name, values) in saved) Assert.Equal(values, reloaded[name]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OnlyATiedOutputLayerCountsAsStillReadAfterPacking(bool tied)
    {
        // A tied output layer is also the embedding table, read a row per token after packing; an untied one is not read again.
        string path = Save(Tied with { TieEmbeddings = tied, ShareEmbeddings = tied });
        using var checkpoint = Checkpoint.Load(path);
        var decoder = (TransformerDecoder)((TransformerSeq2Seq)checkpoint.Model).Decoder;
        Assert.Equal(tied, TransformerDecodePlan.TiedToEmbedding(decoder));
    }

    [Fact]
    public void AWeightStillReadStaysWithinItsBoundAndPastItComesBackARowAtATime()
    {
        // Past StillReadResidentBytes a weight still read a few rows at a time leaves memory and its pages are advised as
        // read at random (smaps flag "rr"): the kernel's read-ahead around each row cost milliseconds (issue 28). Within
        // the bound it stays. Packing again restores read-ahead. A sparse file costs no memory at that size.
        if (!OperatingSystem.IsLinux()) return;
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, "large.bin");
        long elements = (MappedFile.StillReadResidentBytes + (8L << 20)) / sizeof(float);
        using (var stream = File.Create(file)) stream.SetLength(elements * sizeof(float));
        using var large = MappedFile.Map(file, ScalarType.Float32, elements);
        Assert.True(MappedFile.Evict(large, stillRead: true) > 0);
        Assert.True(ReadAtRandom(large));
        MappedFile.ReadWhole(large);
        Assert.False(ReadAtRandom(large));
        using var small = large.narrow(0, 0, 1L << 20);       // 4 MB of the same mapping
        Assert.Equal(0, MappedFile.Evict(small, stillRead: true));
        Assert.False(ReadAtRandom(small));
        Assert.True(MappedFile.Evict(small) > 0);             // not still read: it leaves, with the default read-ahead
        Assert.False(ReadAtRandom(small));
    }

    // Whether the first whole page inside t lies in a mapping advised MADV_RANDOM, from /proc/self/smaps.
    private static bool ReadAtRandom(Tensor t)
    {
        long page = Environment.SystemPageSize, at = (MappedFile.Address(t) + page - 1) / page * page;
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var range = line.Split(' ', 2)[0].Split('-');
            if (range.Length == 2 && long.TryParse(range[0], System.Globalization.NumberStyles.HexNumber, null, out long start)
                && long.TryParse(range[1], System.Globalization.NumberStyles.HexNumber, null, out long end))
                inside = start <= at && at < end;
            else if (inside && line.StartsWith("VmFlags:", StringComparison.Ordinal))
                return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("rr");
        }
        throw new InvalidOperationException("no mapping holds the weight");
    }

    [Fact]
    public void DecodingIsTheSameBeforeAndAfterOtherComputeTypesPackedTheWeights()
    {
        string path = Save(Tied with { Layers = 1 });
        using var checkpoint = Checkpoint.Load(path);
        var model = checkpoint.Model;
        var ids = new SpecialIds(0, 1, 2);
        using var source = tensor(new long[] { 5, 9, 13, 22, 2, 7, 8, 30, 41, 2 }, [2, 5]);
        using var lengths = tensor(new long[] { 5, 5 });
        int[][] Greedy() => GreedySearch.Decode(model, source, lengths, ids, [8, 8]);
        var before = Greedy();
        // int8 and bfloat16 pack every linear layer, after which the float32 originals may leave memory: they come back
        // from the file unchanged.
        foreach (var type in new[] { ComputeType.Int8, ComputeType.BFloat16, ComputeType.Float32 })
        {
            ComputeTypes.Apply(model, type);
            Greedy();
        }
        ComputeTypes.Apply(model, ComputeType.Float32);
        Assert.Equal(before, Greedy());
        using var fresh = Checkpoint.Load(path);
        Assert.Equal(Values(fresh.Model).Values.SelectMany(v => v), Values(model).Values.SelectMany(v => v));
    }

    [Fact]
    public void AModelBuiltWithoutWeightsMustBeGivenEveryOne()
    {
        TransformerSeq2Seq model;
        using (ModelConstruction.WithoutWeights()) model = new TransformerSeq2Seq(Tied);
        using (model)
        {
            Assert.Contains(model.parameters(), p => p.device_type == TorchSharp.DeviceType.META);
            var error = Assert.Throws<InvalidOperationException>(() => ModelConstruction.Materialize(model, (_, like) => zeros(like.shape[0] + 1)));
            Assert.Contains("supplied shape", error.Message);
        }
        // Outside the scope the same thread builds real, initialised weights again.
        using var real = new TransformerSeq2Seq(Tied);
        Assert.All(real.parameters(), p => Assert.Equal(TorchSharp.DeviceType.CPU, p.device_type));
    }

    [Fact]
    public void TwoUntiedWeightsNeverShareMemoryEvenWhenTheSupplierHandsTheSameTensor()
    {
        var config = Tied with { TieEmbeddings = false, ShareEmbeddings = false };
        TransformerSeq2Seq model;
        using (ModelConstruction.WithoutWeights()) model = new TransformerSeq2Seq(config);
        using (model)
        {
            using var one = randn(config.TargetVocabSize, config.HiddenSize);
            ModelConstruction.Materialize(model, (name, like) => name.EndsWith("embedding.weight", StringComparison.Ordinal) ? one.alias() : zeros(like.shape));
            var sd = model.state_dict();
            using (no_grad()) sd["encoder.embedding.weight"][4, 4].fill_(7);
            Assert.NotEqual(7f, sd["decoder.embedding.weight"][4, 4].item<float>());
            Assert.Equal(one[5, 5].item<float>(), sd["decoder.embedding.weight"][5, 5].item<float>());
        }
    }

    [Fact]
    public void ATensorTheMappingCannotViewIsReadIntoMemoryWithTheSameValues()
    {
        // 'a' starts one byte into the data, where no float32 view can start: it is copied; 'c' is aligned and viewed.
        // Both read back exactly.
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "unaligned.safetensors");
        string json = """{"b":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"F32","shape":[3],"data_offsets":[1,13]},"pad":{"dtype":"U8","shape":[3],"data_offsets":[13,16]},"c":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}""";
        json = json.PadRight((json.Length + 3) / 4 * 4); // the data starts at a multiple of 4
        var bytes = new List<byte>(BitConverter.GetBytes((ulong)json.Length));
        bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(json));
        bytes.Add(0x7f);
        foreach (var v in new[] { 1.5f, -2.25f, 3e-8f }) bytes.AddRange(BitConverter.GetBytes(v));
        bytes.AddRange(new byte[3]);
        foreach (var v in new[] { 42f, -0.5f }) bytes.AddRange(BitConverter.GetBytes(v));
        File.WriteAllBytes(path, bytes.ToArray());
        using var reader = SafetensorsReader.Open(path);
        using var a = reader.Read("a");
        using var b = reader.Read("b");
        using var c = reader.Read("c");
        Assert.Equal(new[] { 1.5f, -2.25f, 3e-8f }, a.data<float>().ToArray());
        Assert.Equal((sbyte)0x7f, b.data<sbyte>()[0]);
        Assert.Equal(new[] { 42f, -0.5f }, c.data<float>().ToArray());
    }

    [Fact]
    public void AWeightsFileWithThousandsOfStrangersIsRefusedInOneShortLine()
    {
        string path = Save(Tied with { Layers = 1 });
        string weights = Path.Combine(path, Checkpoint.WeightsFile);
        var tensors = Safetensors.Load(weights, out _);
        for (int i = 0; i < 3000; i++) tensors[$"stranger.{i}"] = zeros(1);
        Safetensors.Save(weights, tensors);
        foreach (var t in tensors.Values) t.Dispose();
        var error = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("unexpected tensor 'stranger.", error.Message);
        Assert.Contains("and 2960 more", error.Message);
        Assert.True(error.Message.Length < 6000, error.Message.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void AnInt8LayerMultipliesFromItsPackedCopyAlone()
    {
        if (!Transduce.Native.Int8Kernels.Available) return; // packed as float32 where FBGEMM is absent (checked by the kernel tests)
        using var w = randn(256, 128);
        using var b = randn(256);
        using var x = randn(3, 128);
        using var layer = PackedLinear.Pack(ComputeType.Int8, [(w, b)]);
        // The unpacked int8 matrix is not kept (FBGEMM's product reads only its shape): the product still comes out right,
        // at every row count.
        foreach (var rows in new[] { 1, 3 })
        {
            using var input = x.narrow(0, 0, rows);
            using var y = layer.Forward(input);
            using var expected = nn.functional.linear(input, w, b);
            Assert.True(y.allclose(expected, rtol: 0, atol: 0.05 * expected.abs().max().item<float>()));
        }
    }
}
