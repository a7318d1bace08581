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
        return Archive(p.ToArray(), dataBytes);
    }

    /// <summary>A torch.save archive of <paramref name="program"/> (data.pkl) and one storage entry data/0 of <paramref name="dataBytes"/> zeros.</summary>
    private string Archive(byte[] program, int dataBytes, CompressionLevel programCompression = CompressionLevel.NoCompression)
    {
        string path = dir.File($"w{Guid.NewGuid():N}.bin");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            using (var s = zip.CreateEntry("archive/data.pkl", programCompression).Open()) s.Write(program);
            using (var s = zip.CreateEntry("archive/data/0", CompressionLevel.NoCompression).Open()) s.Write(new byte[dataBytes]);
        }
        return path;
    }

    /// <summary>
    /// Rewrites the sizes the zip at <paramref name="path"/> declares for <paramref name="entry"/>, in its local header and
    /// in the central directory (what a hostile archive can claim freely).
    /// </summary>
    private static void ClaimSizes(string path, string entry, uint? compressed, uint? uncompressed)
    {
        var bytes = File.ReadAllBytes(path);
        var name = Encoding.ASCII.GetBytes(entry);
        int patched = 0;
        for (int i = 0; i + 46 <= bytes.Length; i++)
        {
            uint signature = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i));
            // Local file header: sizes at 18 and 22, name length at 26, name at 30. Central directory: 20, 24, 28, 46.
            var (sizes, nameLength, nameAt) = signature switch
            {
                0x04034b50 => (18, 26, 30),
                0x02014b50 => (20, 28, 46),
                _ => (-1, 0, 0),
            };
            if (sizes < 0 || BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i + nameLength)) != name.Length
                || !bytes.AsSpan(i + nameAt, name.Length).SequenceEqual(name)) continue;
            if (compressed is { } c) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + sizes), c);
            if (uncompressed is { } u) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + sizes + 4), u);
            patched++;
        }
        Assert.Equal(2, patched);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>
    /// Asserts that loading <paramref name="path"/> is refused in one line naming it, and that this thread allocated at
    /// most <paramref name="maxMiB"/> MiB on the managed heap on the way (native tensor memory is taken only after every check).
    /// </summary>
    private static InvalidDataException RefusedWithin(string path, long maxMiB)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(path, LoadAll);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < maxMiB << 20, $"{allocated >> 20} MiB allocated before refusing: {e.Message}");
        return e;
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

    [Theory]
    [InlineData('}')]
    [InlineData(']')]
    [InlineData('(')]
    public void APickleOfRepeatedEmptyContainersIsRefusedWithoutExhaustingMemory(char op)
    {
        // The probe: 64 MiB of one opcode, each byte a new object (a 1 MB file reached 2.3–2.9 GB before).
        var program = new byte[TorchPickle.MaxProgramBytes];
        Array.Fill(program, (byte)op);
        program[0] = 0x80;
        program[1] = 2;
        string path = Archive(program, 16, CompressionLevel.Optimal);
        Assert.True(new FileInfo(path).Length < 1 << 20);
        // The program itself is read (64 MiB); what it builds is cut at 65,536 values on the stack.
        var e = RefusedWithin(path, maxMiB: 100);
        Assert.Contains("archive/data.pkl", e.Message);
        Assert.Contains("stack grows beyond 65536 values", e.Message);
    }

    [Fact]
    public void APickleThatBuildsTooManyValuesIsRefused()
    {
        // {}, then d[i] = {} for i = 0, 1, …: the stack stays at one value and every dict stays alive in the first.
        var p = new List<byte> { 0x80, 2, (byte)'}' };
        for (int i = 0; i < 600_000; i++)
        {
            p.Add((byte)'J');
            p.AddRange(BitConverter.GetBytes(i));
            p.Add((byte)'}');
            p.Add((byte)'s');
        }
        var e = RefusedWithin(Archive(p.ToArray(), 16), maxMiB: 300);
        Assert.Contains("builds more than 1048576 values", e.Message);
    }

    [Fact]
    public void APickleWhoseMemoGrowsWithoutBoundIsRefused()
    {
        // One dict stored under 1.1 million memo keys: no value is pushed, only memo entries are made.
        var p = new List<byte> { 0x80, 2, (byte)'}' };
        for (int i = 0; i < 1_100_000; i++)
        {
            p.Add((byte)'r');
            p.AddRange(BitConverter.GetBytes(i));
        }
        var e = RefusedWithin(Archive(p.ToArray(), 16), maxMiB: 150);
        Assert.Contains("memo grows beyond 1048576 entries", e.Message);
    }

    [Fact]
    public void APickleThatNestsDeeplyIsRefused()
    {
        // d = {}; d[1] = t = (); then d[1] = t = (t,) again and again: a chain of tuples one level deeper each time.
        var p = new List<byte> { 0x80, 2, (byte)'}', (byte)'K', 1, (byte)')', (byte)'q', 0, (byte)'s' };
        for (int i = 0; i < 40; i++) p.AddRange([(byte)'K', 1, (byte)'h', 0, 0x85, (byte)'q', 0, (byte)'s']);
        p.Add((byte)'.');
        var e = Refused(Archive(p.ToArray(), 16), LoadAll);
        Assert.Contains("nests containers more than 32 deep", e.Message);
    }

    [Fact]
    public void APickleThatFillsAContainerAlreadyInsideAnotherIsRefused()
    {
        // d = {}; l = []; d[1] = l; then l.append(l): built top-down, so depth could not be known; torch.save never does it.
        byte[] program = [0x80, 2, (byte)'}', (byte)'K', 1, (byte)']', (byte)'q', 0, (byte)'s', (byte)'h', 0, (byte)'h', 0, (byte)'a', (byte)'.'];
        var e = Refused(Archive(program, 16), LoadAll);
        Assert.Contains("list is filled after being put inside another", e.Message);
        // A list appended to itself (a cycle) is one level, then it is inside and cannot grow.
        program = [0x80, 2, (byte)']', (byte)'q', 0, (byte)'h', 0, (byte)'a', (byte)'h', 0, (byte)'a', (byte)'.'];
        e = Refused(Archive(program, 16), LoadAll);
        Assert.Contains("list is filled after being put inside another", e.Message);
    }

    [Fact]
    public void AZipStorageThatClaimsMoreThanTheFileIsRefusedBeforeAllocating()
    {
        // The pickle declares 2 GiB of floats and the zip claims as much for data/0, which holds 16 bytes.
        string path = Pickle(numel: 1L << 29, shape: [4], stride: [1], dataBytes: 16);
        ClaimSizes(path, "archive/data/0", compressed: 1u << 31, uncompressed: 1u << 31);
        var e = RefusedWithin(path, maxMiB: 16);
        Assert.Contains("zip entry 'archive/data/0' claims 2147483648 bytes", e.Message);
        // Only the uncompressed size raised: the entry would have to be inflated to 2 GiB; torch.save never compresses.
        path = Pickle(numel: 1L << 29, shape: [4], stride: [1], dataBytes: 16);
        ClaimSizes(path, "archive/data/0", compressed: null, uncompressed: 1u << 31);
        e = RefusedWithin(path, maxMiB: 16);
        Assert.Contains("storage '0' of tensor 'w' is compressed in the archive (16 bytes for 2147483648)", e.Message);
    }

    [Fact]
    public void AZipStorageThatClaimsAsMuchAsTheWholeFileIsRefused()
    {
        // Within 2 GiB and matching the pickle's claim, but data.pkl and the headers take part of the file too.
        long length = new FileInfo(Pickle(numel: 4, shape: [4], stride: [1], dataBytes: 16)).Length;
        string path = Pickle(numel: length / 4, shape: [4], stride: [1], dataBytes: 16);
        ClaimSizes(path, "archive/data/0", compressed: (uint)(length / 4 * 4), uncompressed: (uint)(length / 4 * 4));
        Assert.Equal(length, new FileInfo(path).Length);
        var e = RefusedWithin(path, maxMiB: 16);
        Assert.Contains($"zip entry 'archive/data/0' claims {length / 4 * 4} bytes, more than the file's {length} bytes hold", e.Message);
    }

    [Fact]
    public void ADataPklShorterThanDeclaredIsRefusedNamingIt()
    {
        // The probe: "Unable to read beyond the end of the stream." named neither the file nor data.pkl.
        string good = Pickle(numel: 6, shape: [2, 3], stride: [3, 1], dataBytes: 24);
        byte[] program;
        using (var zip = ZipFile.OpenRead(good))
        using (var s = zip.GetEntry("archive/data.pkl")!.Open())
        using (var m = new MemoryStream())
        {
            s.CopyTo(m);
            program = m.ToArray();
        }
        string path = Archive(program, 24, CompressionLevel.Optimal);
        ClaimSizes(path, "archive/data.pkl", compressed: null, uncompressed: (uint)program.Length + 100);
        var e = RefusedWithin(path, maxMiB: 16);
        Assert.Contains("archive/data.pkl is truncated or corrupt", e.Message);
        Assert.Contains($"{program.Length + 100} bytes", e.Message);
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
