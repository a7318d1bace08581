using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Transduce.Checkpoints;
using Transduce.IO;

namespace Transduce.Tests.Checkpoints;

/// <summary>
/// Weights files are untrusted input: a hostile safetensors header or PyTorch pickle must end in one
/// <see cref="InvalidDataException"/> naming the file, before any memory is taken for what it claims.
/// </summary>
public sealed class UntrustedWeightsTests : IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    // ---- safetensors ----

    private string Safetensors(string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        return dir.WriteBytes($"w{Guid.NewGuid():N}.safetensors", bytes);
    }

    private static InvalidDataException Refused(string path, Action<string> load)
    {
        var e = Assert.Throws<InvalidDataException>(() => load(path));
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    private static void LoadAll(string path)
    {
        foreach (var t in WeightFiles.Load(path).Values) t.Dispose();
    }

    [Fact]
    public void SafetensorsWithANegativeDimensionIsRefused()
    {
        string path = Safetensors("""{"w":{"dtype":"F32","shape":[-4,2],"data_offsets":[0,32]}}""", 32);
        Assert.Contains("negative dimension", Refused(path, LoadAll).Message);
        Refused(path, p => WeightFiles.Describe(p));
    }

    [Fact]
    public void SafetensorsWhoseShapeOverflowsIsRefusedBeforeAllocating()
    {
        // 2^62 × 2^62 elements: the byte count overflows 64 bits; computing it unchecked would wrap to a small number.
        string path = Safetensors("""{"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,16]}}""", 16);
        Assert.Contains("too large", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void SafetensorsWhoseShapeNeedsMoreBytesThanItsRangeIsRefused()
    {
        string path = Safetensors("""{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,16]}}""", 16);
        Assert.Contains("holds 16 bytes", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void SafetensorsHeaderLongerThanTheFileIsRefused()
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1UL << 40);
        string path = dir.WriteBytes("long.safetensors", bytes);
        Assert.Contains("header length", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void SafetensorsRangeBeyondTheFileIsRefused()
    {
        string path = Safetensors("""{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}""", 16);
        Assert.Contains("outside the file", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void SafetensorsWhoseTensorsShareBytesIsRefused()
    {
        // Loaded weights are views of the file's bytes: two tensors over the same bytes would become one weight.
        string path = Safetensors("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16);
        Assert.Contains("overlap", Refused(path, LoadAll).Message);
        Refused(path, p => WeightFiles.Describe(p));
    }

    [Fact]
    public void SafetensorsWithBytesNoTensorOwnsIsRefused()
    {
        // The format's rule: byte ranges follow one another from the start of the data to the end of the file.
        string gap = Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16);
        Assert.Contains("belong to no tensor", Refused(gap, LoadAll).Message);
        string trailing = Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 16);
        Assert.Contains("cover 8 of the file's 16", Refused(trailing, LoadAll).Message);
    }

    // ---- PyTorch pickles (torch.save zip archives) ----

    /// <summary>
    /// A torch.save archive holding <c>{"w": _rebuild_tensor_v2(storage('0', FloatStorage, numel), offset, shape, stride)}</c>
    /// with <paramref name="dataBytes"/> bytes of storage data; <paramref name="callable"/> replaces the rebuild function.
    /// </summary>
    private string Pickle(long numel, long[] shape, long[] stride, int dataBytes, string callable = "torch._utils\n_rebuild_tensor_v2", long offset = 0)
    {
        var p = new List<byte> { 0x80, 2, (byte)'}' };                      // PROTO 2, EMPTY_DICT
        void Unicode(string s) { var b = Encoding.UTF8.GetBytes(s); p.Add((byte)'X'); p.AddRange(BitConverter.GetBytes(b.Length)); p.AddRange(b); }
        void Int(long v) { p.Add(0x8a); p.Add(8); p.AddRange(BitConverter.GetBytes(v)); } // LONG1, 8 bytes
        void Tuple(long[] values) { p.Add((byte)'('); foreach (var v in values) Int(v); p.Add((byte)'t'); }
        Unicode("w");
        p.Add((byte)'c'); p.AddRange(Encoding.ASCII.GetBytes(callable + "\n"));
        p.Add((byte)'(');                                                      // MARK: the arguments
        p.Add((byte)'(');                                                      // MARK: the persistent id
        Unicode("storage");
        p.Add((byte)'c'); p.AddRange("torch\nFloatStorage\n"u8.ToArray());
        Unicode("0");
        Unicode("cpu");
        Int(numel);
        p.Add((byte)'t');
        p.Add((byte)'Q');                                                      // BINPERSID
        Int(offset);
        Tuple(shape);
        Tuple(stride);
        p.Add(0x89);                                                           // NEWFALSE
        p.Add((byte)'c'); p.AddRange("collections\nOrderedDict\n"u8.ToArray());
        p.Add((byte)')'); p.Add((byte)'R');
        p.Add((byte)'t'); p.Add((byte)'R');                                    // TUPLE, REDUCE
        p.Add((byte)'s'); p.Add((byte)'.');                                    // SETITEM, STOP
        string path = dir.File($"w{Guid.NewGuid():N}.bin");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            using (var s = zip.CreateEntry("archive/data.pkl", CompressionLevel.NoCompression).Open()) s.Write(p.ToArray());
            using (var s = zip.CreateEntry("archive/data/0", CompressionLevel.NoCompression).Open()) s.Write(new byte[dataBytes]);
        }
        return path;
    }

    [Fact]
    public void AWellFormedPickleLoads()
    {
        string path = Pickle(numel: 6, shape: [2, 3], stride: [3, 1], dataBytes: 24);
        var tensors = WeightFiles.Load(path);
        Assert.Equal([2L, 3], tensors["w"].shape);
        foreach (var t in tensors.Values) t.Dispose();
        Assert.Equal(6, WeightFiles.Describe(path).StoredElements);
    }

    [Fact]
    public void APickleViewLargerThanItsStorageIsRefused()
    {
        string path = Pickle(numel: 4, shape: [1000, 1000], stride: [1000, 1], dataBytes: 16);
        Assert.Contains("reaches beyond its storage", Refused(path, LoadAll).Message);
        // A broadcast view (stride 0) that would claim a million elements out of four is refused as well.
        path = Pickle(numel: 4, shape: [1000, 1000], stride: [0, 0], dataBytes: 16);
        Assert.Contains("reaches beyond its storage", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void APickleStorageLargerThanItsDataIsRefused()
    {
        string path = Pickle(numel: 1L << 40, shape: [4], stride: [1], dataBytes: 16);
        Assert.Contains("declares 4398046511104 bytes but its data holds 16", Refused(path, LoadAll).Message);
        path = Pickle(numel: long.MaxValue / 2, shape: [4], stride: [1], dataBytes: 16);
        Assert.Contains("too many to address", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void APickleOverTheTotalCapIsRefused()
    {
        string path = Pickle(numel: 6, shape: [6], stride: [1], dataBytes: 24);
        var e = Assert.Throws<InvalidDataException>(() => TorchPickle.ReadIndex(path, maxBytes: 16));
        Assert.Contains("more than 16 bytes", e.Message);
    }

    [Fact]
    public void APickleThatCallsAnythingElseIsRefused()
    {
        string path = Pickle(numel: 4, shape: [4], stride: [1], dataBytes: 16, callable: "posix\nsystem");
        Assert.Contains("calls 'posix.system'", Refused(path, LoadAll).Message);
    }

    [Fact]
    public void NotAPickleIsRefused()
    {
        string path = dir.WriteText("junk.bin", "PK\u0003\u0004 this is not a zip archive");
        Refused(path, LoadAll);
        path = dir.WriteText("text.safetensors", "not a pickle either");
        Refused(path, LoadAll);
    }
}
