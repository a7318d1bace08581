using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Text;
using static TorchSharp.torch;

namespace Transduce.Checkpoints;

/// <summary>
/// Reads a PyTorch state dict saved by <c>torch.save</c> in its zip format (Hugging Face's <c>pytorch_model.bin</c>)
/// without running any of the file's code: a small pickle machine that knows the opcodes <c>torch.save</c> writes and
/// builds only strings, numbers, tuples, lists, dicts and tensors, from an allow-list of four kinds of globals
/// (<c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor*</c>, <c>torch._utils._rebuild_parameter*</c> and
/// the typed storages <c>torch.FloatStorage</c>, …). Anything else is refused.
/// </summary>
/// <remarks>
/// Every size is checked before memory is taken: a storage's element count × element size must equal the length of
/// its data entry in the archive, a tensor view must lie inside its storage (checked arithmetic), and all storages
/// together must stay under a cap. A storage shared by several tensors (tied embeddings) is read once, and those
/// tensors come back as views of that one buffer.
/// </remarks>
internal static class TorchPickle
{
    /// <summary>One storage of the archive: its key (the entry <c>data/KEY</c>), element type and length.</summary>
    internal sealed record Storage(string Key, ScalarType DType, long Elements);

    /// <summary>A tensor as <c>_rebuild_tensor_v2</c> describes it: a strided view of a storage.</summary>
    internal sealed record View(Storage Storage, long Offset, long[] Shape, long[] Stride);

    /// <summary>The largest total of storage bytes read from one file by default (16 GiB).</summary>
    internal const long DefaultMaxBytes = 16L << 30;

    /// <summary>True when the file starts like a zip archive (what <c>torch.save</c> writes since PyTorch 1.6).</summary>
    internal static bool LooksLikeZip(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using var stream = File.OpenRead(path);
        return stream.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && head.SequenceEqual("PK\u0003\u0004"u8);
    }

    /// <summary>Parses the state dict's structure (names, storages, views) and checks it against the archive, reading no tensor data.</summary>
    internal static Dictionary<string, View> ReadIndex(string path, long maxBytes = DefaultMaxBytes)
    {
        using var archive = OpenArchive(path);
        return Index(path, archive, maxBytes).Views;
    }

    /// <summary>Reads every tensor of the state dict (see the class remarks for what is checked first).</summary>
    internal static Dictionary<string, Tensor> Load(string path, long maxBytes = DefaultMaxBytes)
    {
        using var archive = OpenArchive(path);
        var (views, entries) = Index(path, archive, maxBytes);
        var storages = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, view) in views)
            {
                if (!storages.TryGetValue(view.Storage.Key, out var storage))
                {
                    storage = ReadStorage(path, entries[view.Storage.Key], view.Storage);
                    storages[view.Storage.Key] = storage;
                }
                result[name] = storage.as_strided(view.Shape, view.Stride, view.Offset);
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        finally
        {
            // The views keep the storage memory alive; the storage handles themselves are not needed any more.
            foreach (var s in storages.Values) s.Dispose();
        }
        return result;
    }

    private static ZipArchive OpenArchive(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: weights file not found", path);
        if (!LooksLikeZip(path))
            throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save (not a zip archive; files from PyTorch before 1.6 must be re-saved)");
        try
        {
            return ZipFile.OpenRead(path);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save (broken zip archive: {e.Message})", e);
        }
    }

    private static (Dictionary<string, View> Views, Dictionary<string, ZipArchiveEntry> Entries) Index(string path, ZipArchive archive, long maxBytes)
    {
        var pkl = archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
            ?? throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save (no data.pkl in the archive)");
        string root = pkl.FullName[..^"data.pkl".Length];
        if (archive.GetEntry(root + "byteorder") is { } order)
        {
            using var reader = new StreamReader(order.Open());
            string text = reader.ReadToEnd().Trim();
            if (text != "little") throw new InvalidDataException($"{path}: tensors are stored '{text}'-endian; only little-endian files are supported");
        }
        if (pkl.Length > 64L << 20) throw new InvalidDataException($"{path}: data.pkl is {pkl.Length} bytes, more than a state dict's structure needs");
        byte[] program = new byte[pkl.Length];
        using (var stream = pkl.Open()) stream.ReadExactly(program);

        object top;
        try
        {
            top = new Machine(program).Run();
        }
        catch (PickleException e)
        {
            throw new InvalidDataException($"{path}: not a PyTorch state dict saved with torch.save ({e.Message})", e);
        }
        if (top is not Dictionary<object, object?> dict)
            throw new InvalidDataException($"{path}: holds a {Machine.Describe(top)}, not a state dict (a dict of name → tensor)");

        var views = new Dictionary<string, View>(StringComparer.Ordinal);
        var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
        long total = 0;
        foreach (var (key, value) in dict)
        {
            if (key is not string name) throw new InvalidDataException($"{path}: a state dict key is a {Machine.Describe(key)}, not a name");
            if (value is not View view) throw new InvalidDataException($"{path}: entry '{name}' is a {Machine.Describe(value)}, not a tensor");
            if (!entries.ContainsKey(view.Storage.Key))
            {
                var entry = archive.GetEntry($"{root}data/{view.Storage.Key}")
                    ?? throw new InvalidDataException($"{path}: tensor '{name}' refers to storage '{view.Storage.Key}', which the archive lacks");
                long bytes = CheckedBytes(path, name, view.Storage);
                if (entry.Length != bytes)
                    throw new InvalidDataException($"{path}: storage '{view.Storage.Key}' of tensor '{name}' declares {bytes} bytes but its data holds {entry.Length}");
                total += bytes;
                if (total > maxBytes)
                    throw new InvalidDataException($"{path}: its storages hold more than {maxBytes} bytes, the limit for one weights file");
                entries[view.Storage.Key] = entry;
            }
            CheckView(path, name, view);
            views[name] = view;
        }
        return (views, entries);
    }

    private static long CheckedBytes(string path, string name, Storage storage)
    {
        try
        {
            return checked(storage.Elements * ElementSize(storage.DType));
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: storage of tensor '{name}' declares {storage.Elements} elements, too many to address");
        }
    }

    /// <summary>A view must lie inside its storage and hold no more elements than it (state dicts never broadcast).</summary>
    private static void CheckView(string path, string name, View view)
    {
        if (view.Shape.Length != view.Stride.Length)
            throw new InvalidDataException($"{path}: tensor '{name}' has {view.Shape.Length} sizes but {view.Stride.Length} strides");
        if (view.Offset < 0 || view.Shape.Any(d => d < 0) || view.Stride.Any(s => s < 0))
            throw new InvalidDataException($"{path}: tensor '{name}' has a negative size, stride or offset");
        try
        {
            long elements = 1, last = view.Offset;
            for (int i = 0; i < view.Shape.Length; i++)
            {
                elements = checked(elements * view.Shape[i]);
                if (view.Shape[i] > 0) last = checked(last + checked((view.Shape[i] - 1) * view.Stride[i]));
            }
            if (elements > 0 && (last >= view.Storage.Elements || elements > view.Storage.Elements))
                throw new InvalidDataException(
                    $"{path}: tensor '{name}' of shape [{string.Join(", ", view.Shape)}] reaches beyond its storage of {view.Storage.Elements} elements");
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: tensor '{name}' has shape [{string.Join(", ", view.Shape)}], too large to address");
        }
    }

    private static Tensor ReadStorage(string path, ZipArchiveEntry entry, Storage storage)
    {
        long bytes = storage.Elements * ElementSize(storage.DType);
        if (bytes > int.MaxValue)
            throw new InvalidDataException($"{path}: storage '{storage.Key}' holds {bytes} bytes; storages over 2 GiB are not supported");
        var t = empty([storage.Elements], storage.DType);
        try
        {
            if (bytes > 0)
            {
                var buffer = new byte[bytes];
                using (var stream = entry.Open()) stream.ReadExactly(buffer);
                t.bytes = buffer;
            }
            return t;
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            t.Dispose();
            throw new InvalidDataException($"{path}: storage '{storage.Key}' is truncated or corrupt ({e.Message})", e);
        }
    }

    private static long ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    private sealed class PickleException(string message) : Exception(message);

    /// <summary>A reference to a Python global, allowed only as the callables and storage types of a state dict.</summary>
    private sealed record Global(string Module, string Name)
    {
        public override string ToString() => $"{Module}.{Name}";
    }

    private sealed class Mark;

    /// <summary>The pickle machine: a stack, a memo and the opcodes that <c>torch.save</c> (protocols 2–4) emits.</summary>
    private sealed class Machine(byte[] program)
    {
        private const int MaxMemo = 1 << 22;
        private readonly List<object?> stack = [];
        private readonly Dictionary<long, object?> memo = [];
        private readonly Dictionary<string, Storage> storages = new(StringComparer.Ordinal);
        private int pos;

        public static string Describe(object? value) => value switch
        {
            null => "None",
            string => "string",
            long or BigInteger => "integer",
            double => "float",
            bool => "bool",
            object[] => "tuple",
            List<object?> => "list",
            Dictionary<object, object?> => "dict",
            Global g => $"reference to {g}",
            Storage => "storage",
            View => "tensor",
            _ => value.GetType().Name,
        };

        public object Run()
        {
            while (true)
            {
                byte op = Byte();
                switch (op)
                {
                    case 0x80: Byte(); break;                                   // PROTO
                    case 0x95: Bytes(8); break;                                  // FRAME
                    case (byte)'.': return Pop() ?? throw new PickleException("the pickle holds None");  // STOP
                    case (byte)'(': stack.Add(new Mark()); break;                // MARK
                    case (byte)'}': stack.Add(new Dictionary<object, object?>()); break;
                    case (byte)']': stack.Add(new List<object?>()); break;
                    case (byte)')': stack.Add(Array.Empty<object?>()); break;
                    case (byte)'N': stack.Add(null); break;
                    case 0x88: stack.Add(true); break;
                    case 0x89: stack.Add(false); break;
                    case (byte)'K': stack.Add((long)Byte()); break;             // BININT1
                    case (byte)'M': stack.Add((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break;
                    case (byte)'J': stack.Add((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break;
                    case 0x8a: stack.Add(Long(Byte())); break;                   // LONG1
                    case 0x8b: stack.Add(Long(Length(BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))))); break;
                    case (byte)'G': stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break;
                    case (byte)'X': stack.Add(Text(Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))))); break;
                    case 0x8c: stack.Add(Text(Byte())); break;                   // SHORT_BINUNICODE
                    case 0x8d: stack.Add(Text(Length(BinaryPrimitives.ReadInt64LittleEndian(Bytes(8))))); break;
                    case (byte)'c': stack.Add(new Global(Line(), Line())); break;
                    case 0x93:                                                   // STACK_GLOBAL
                    {
                        string name = Pop() as string ?? throw new PickleException("STACK_GLOBAL without a name");
                        string module = Pop() as string ?? throw new PickleException("STACK_GLOBAL without a module");
                        stack.Add(new Global(module, name));
                        break;
                    }
                    case (byte)'q': Put(Byte()); break;                          // BINPUT
                    case (byte)'r': Put(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))); break;
                    case 0x94: Put(memo.Count); break;                           // MEMOIZE
                    case (byte)'h': stack.Add(Get(Byte())); break;               // BINGET
                    case (byte)'j': stack.Add(Get(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))); break;
                    case (byte)'t': stack.Add(PopMark().ToArray()); break;       // TUPLE
                    case 0x85: stack.Add(new[] { Pop() }); break;
                    case 0x86: { var b = Pop(); var a = Pop(); stack.Add(new[] { a, b }); break; }
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); stack.Add(new[] { a, b, c }); break; }
                    case (byte)'a': { var item = Pop(); ListTop().Add(item); break; }
                    case (byte)'e': { var items = PopMark(); ListTop().AddRange(items); break; }
                    case (byte)'s': { var v = Pop(); var k = Pop(); SetItem(DictTop(), k, v); break; }
                    case (byte)'u':
                    {
                        var items = PopMark();
                        if (items.Count % 2 != 0) throw new PickleException("SETITEMS with an odd number of items");
                        var dict = DictTop();
                        for (int i = 0; i < items.Count; i += 2) SetItem(dict, items[i], items[i + 1]);
                        break;
                    }
                    case (byte)'b':                                              // BUILD: an OrderedDict's attributes (_metadata)
                    {
                        Pop();
                        if (Peek() is not Dictionary<object, object?>) throw new PickleException($"BUILD on a {Describe(Peek())}");
                        break;
                    }
                    case (byte)'Q': stack.Add(PersistentLoad(Pop())); break;     // BINPERSID
                    case (byte)'R':                                              // REDUCE
                    {
                        var args = Pop() as object?[] ?? throw new PickleException("REDUCE without an argument tuple");
                        var callable = Pop() as Global ?? throw new PickleException("REDUCE of something that is not a global");
                        stack.Add(Call(callable, args));
                        break;
                    }
                    default:
                        throw new PickleException($"unsupported pickle opcode 0x{op:x2} at byte {pos - 1}");
                }
            }
        }

        private object? Call(Global callable, object?[] args)
        {
            switch (callable.ToString())
            {
                case "collections.OrderedDict":
                    if (args.Length != 0) throw new PickleException("OrderedDict with arguments");
                    return new Dictionary<object, object?>();
                case "torch._utils._rebuild_tensor_v2" when args.Length >= 4:
                case "torch._utils._rebuild_tensor" when args.Length >= 4:
                    return new View(
                        args[0] as Storage ?? throw new PickleException($"a tensor built from a {Describe(args[0])} instead of a storage"),
                        Int(args[1]), Ints(args[2]), Ints(args[3]));
                case "torch._utils._rebuild_parameter" when args.Length >= 1:
                case "torch._utils._rebuild_parameter_with_state" when args.Length >= 1:
                    return args[0] as View ?? throw new PickleException($"a parameter built from a {Describe(args[0])}");
                default:
                    throw new PickleException($"the pickle calls '{callable}', which a state dict never does (refused)");
            }
        }

        private Storage PersistentLoad(object? pid)
        {
            if (pid is not object?[] { Length: 5 } t || t[0] is not "storage")
                throw new PickleException("a persistent id that is not a ('storage', type, key, location, size) tuple");
            var type = t[1] as Global ?? throw new PickleException("a storage without a type");
            string key = t[2] as string ?? throw new PickleException("a storage without a key");
            long elements = Int(t[4]);
            if (elements < 0) throw new PickleException($"storage '{key}' has a negative size");
            var dtype = type.Module == "torch" ? type.Name switch
            {
                "FloatStorage" => ScalarType.Float32, "DoubleStorage" => ScalarType.Float64, "HalfStorage" => ScalarType.Float16,
                "BFloat16Storage" => ScalarType.BFloat16, "LongStorage" => ScalarType.Int64, "IntStorage" => ScalarType.Int32,
                "ShortStorage" => ScalarType.Int16, "CharStorage" => ScalarType.Int8, "ByteStorage" => ScalarType.Byte,
                "BoolStorage" => ScalarType.Bool,
                _ => (ScalarType?)null,
            } : null;
            if (dtype is null) throw new PickleException($"storage type '{type}' is not supported");
            if (storages.TryGetValue(key, out var known))
            {
                if (known.DType != dtype || known.Elements != elements)
                    throw new PickleException($"storage '{key}' is declared twice with different types or sizes");
                return known;
            }
            return storages[key] = new Storage(key, dtype.Value, elements);
        }

        private static long Int(object? value) => value switch
        {
            long l => l,
            BigInteger b when b >= long.MinValue && b <= long.MaxValue => (long)b,
            _ => throw new PickleException($"expected an integer, found a {Describe(value)}"),
        };

        private static long[] Ints(object? value) => value is object?[] tuple
            ? tuple.Select(Int).ToArray()
            : throw new PickleException($"expected a tuple of integers, found a {Describe(value)}");

        private static void SetItem(Dictionary<object, object?> dict, object? key, object? value)
        {
            if (key is null || key is Dictionary<object, object?> or List<object?>) throw new PickleException("a dict key that cannot be hashed");
            dict[key is object?[] ? Describe(key) : key] = value;
        }

        private byte Byte() => pos < program.Length ? program[pos++] : throw new PickleException("the pickle ends early");

        private ReadOnlySpan<byte> Bytes(int count)
        {
            if (count > program.Length - pos) throw new PickleException("the pickle ends early");
            var span = program.AsSpan(pos, count);
            pos += count;
            return span;
        }

        private static int Length(long length) =>
            length is >= 0 and <= int.MaxValue ? (int)length : throw new PickleException($"a length of {length} bytes");

        private string Text(int length) => Encoding.UTF8.GetString(Bytes(length));

        private string Line()
        {
            int end = Array.IndexOf(program, (byte)'\n', pos);
            if (end < 0) throw new PickleException("the pickle ends early");
            string text = Encoding.UTF8.GetString(program, pos, end - pos);
            pos = end + 1;
            return text;
        }

        private object Long(int length)
        {
            var value = new BigInteger(Bytes(length), isUnsigned: false, isBigEndian: false);
            return value >= long.MinValue && value <= long.MaxValue ? (long)value : value;
        }

        private object? Pop()
        {
            if (stack.Count == 0 || stack[^1] is Mark) throw new PickleException("stack underflow");
            var value = stack[^1];
            stack.RemoveAt(stack.Count - 1);
            return value;
        }

        private object? Peek() => stack.Count > 0 ? stack[^1] : throw new PickleException("stack underflow");

        private List<object?> PopMark()
        {
            int mark = stack.FindLastIndex(x => x is Mark);
            if (mark < 0) throw new PickleException("no MARK on the stack");
            var items = stack.GetRange(mark + 1, stack.Count - mark - 1);
            stack.RemoveRange(mark, stack.Count - mark);
            return items;
        }

        private List<object?> ListTop() => Peek() as List<object?> ?? throw new PickleException($"APPEND to a {Describe(Peek())}");

        private Dictionary<object, object?> DictTop() =>
            Peek() as Dictionary<object, object?> ?? throw new PickleException($"SETITEM on a {Describe(Peek())}");

        private void Put(long index)
        {
            if (memo.Count >= MaxMemo && !memo.ContainsKey(index)) throw new PickleException("the memo grows too large");
            memo[index] = Peek();
        }

        private object? Get(long index) =>
            memo.TryGetValue(index, out var value) ? value : throw new PickleException($"memo entry {index} is read before it is written");
    }
}
