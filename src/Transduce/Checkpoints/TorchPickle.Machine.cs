using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using static TorchSharp.torch;

namespace Transduce.Checkpoints;

/// <summary>The restricted pickle machine that rebuilds a <c>torch.save</c> state dict and nothing else.</summary>
internal static partial class TorchPickle
{
    private sealed class PickleException(string message) : Exception(message);

    /// <summary>A reference to a Python global, allowed only as the callables and storage types of a state dict.</summary>
    private sealed record Global(string Module, string Name)
    {
        public override string ToString() => $"{Module}.{Name}";
    }

    private sealed class Mark
    {
        public static readonly Mark Instance = new();
    }

    /// <summary>How deep a tuple, list or dict is (1 when it holds no container), and whether it is inside another one.</summary>
    private record struct Nesting(int Depth, bool Inside);

    /// <summary>
    /// The pickle machine: a stack, a memo and the opcodes that <c>torch.save</c> (protocols 2–4) emits. The program's
    /// bytes are capped by the caller; what they can make the machine build is capped here, since one byte can make a
    /// whole object (<c>}</c> an empty dict): at most <see cref="MaxValues"/> values pushed in all, <see cref="MaxStack"/>
    /// on the stack at once, <see cref="MaxValues"/> memo entries, and containers nested at most <see cref="MaxDepth"/> deep.
    /// </summary>
    private sealed class Machine(byte[] program)
    {
        /// <summary>
        /// Values one pickle may push in all (each push makes at most one object). <c>torch.save</c> pushes about 30 per
        /// tensor (name, storage tuple, shape, stride, rebuild call), so this admits state dicts of some 30,000 tensors;
        /// NLLB-200 3.3B has about 1,500. Live memory stays under ~150 MB whatever the program does.
        /// </summary>
        internal const int MaxValues = 1 << 20;

        /// <summary>Values on the stack at once: <c>torch.save</c> sets items in batches of 1,000, so a state dict needs about 2,000.</summary>
        internal const int MaxStack = 1 << 16;

        /// <summary>
        /// How deeply tuples, lists and dicts may nest: a state dict is 4 deep (its <c>_metadata</c>: a dict of an ordered
        /// dict of dicts of numbers). A container may not be filled once it is inside another, so the depth known for each
        /// is exact and cycles cannot form (a list appended to itself counts one level).
        /// </summary>
        internal const int MaxDepth = 32;

        private readonly List<object?> stack = [];
        private readonly Dictionary<long, object?> memo = [];
        private readonly Dictionary<object, Nesting> nesting = new(ReferenceEqualityComparer.Instance);
        private int pushed;
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
                    case (byte)'(': Push(Mark.Instance); break;                 // MARK
                    case (byte)'}': Push(Container(new Dictionary<object, object?>())); break;
                    case (byte)']': Push(Container(new List<object?>())); break;
                    case (byte)')': Push(Container(Array.Empty<object?>())); break;
                    case (byte)'N': Push(null); break;
                    case 0x88: Push(true); break;
                    case 0x89: Push(false); break;
                    case (byte)'K': Push((long)Byte()); break;                  // BININT1
                    case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break;
                    case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break;
                    case 0x8a: Push(Long(Byte())); break;                       // LONG1
                    case 0x8b: Push(Long(Length(BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))))); break;
                    case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break;
                    case (byte)'X': Push(Text(Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))))); break;
                    case 0x8c: Push(Text(Byte())); break;                       // SHORT_BINUNICODE
                    case 0x8d: Push(Text(Length(BinaryPrimitives.ReadInt64LittleEndian(Bytes(8))))); break;
                    case (byte)'c': Push(new Global(Line(), Line())); break;
                    case 0x93:                                                   // STACK_GLOBAL
                    {
                        string name = Pop() as string ?? throw new PickleException("STACK_GLOBAL without a name");
                        string module = Pop() as string ?? throw new PickleException("STACK_GLOBAL without a module");
                        Push(new Global(module, name));
                        break;
                    }
                    case (byte)'q': Put(Byte()); break;                          // BINPUT
                    case (byte)'r': Put(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))); break;
                    case 0x94: Put(memo.Count); break;                           // MEMOIZE
                    case (byte)'h': Push(Get(Byte())); break;                   // BINGET
                    case (byte)'j': Push(Get(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))); break;
                    case (byte)'t': Push(Tuple(PopMark().ToArray())); break;    // TUPLE
                    case 0x85: Push(Tuple([Pop()])); break;
                    case 0x86: { var b = Pop(); var a = Pop(); Push(Tuple([a, b])); break; }
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(Tuple([a, b, c])); break; }
                    case (byte)'a': { var item = Pop(); Fill(ListTop(), [item]).Add(item); break; }
                    case (byte)'e': { var items = PopMark(); Fill(ListTop(), items).AddRange(items); break; }
                    case (byte)'s': { var v = Pop(); var k = Pop(); SetItem(Fill(DictTop(), [k, v]), k, v); break; }
                    case (byte)'u':
                    {
                        var items = PopMark();
                        if (items.Count % 2 != 0) throw new PickleException("SETITEMS with an odd number of items");
                        var dict = Fill(DictTop(), items);
                        for (int i = 0; i < items.Count; i += 2) SetItem(dict, items[i], items[i + 1]);
                        break;
                    }
                    case (byte)'b':                                              // BUILD: an OrderedDict's attributes (_metadata)
                    {
                        Pop();
                        if (Peek() is not Dictionary<object, object?>) throw new PickleException($"BUILD on a {Describe(Peek())}");
                        break;
                    }
                    case (byte)'Q': Push(PersistentLoad(Pop())); break;         // BINPERSID
                    case (byte)'R':                                              // REDUCE
                    {
                        var args = Pop() as object?[] ?? throw new PickleException("REDUCE without an argument tuple");
                        var callable = Pop() as Global ?? throw new PickleException("REDUCE of something that is not a global");
                        Push(Call(callable, args));
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
                    return Container(new Dictionary<object, object?>());
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

        private void Push(object? value)
        {
            if (++pushed > MaxValues) throw new PickleException($"it builds more than {MaxValues} values, far more than a state dict needs");
            if (stack.Count >= MaxStack) throw new PickleException($"its stack grows beyond {MaxStack} values, far more than a state dict needs");
            stack.Add(value);
        }

        /// <summary>Registers a new container holding no other container.</summary>
        private T Container<T>(T container) where T : notnull
        {
            nesting[container] = new Nesting(1, Inside: false);
            return container;
        }

        /// <summary>Registers a new tuple of <paramref name="items"/>: one level deeper than its deepest item.</summary>
        private object?[] Tuple(object?[] items)
        {
            nesting[items] = new Nesting(1, Inside: false); // an empty tuple is deep 1, and is only counted once
            return Fill(items, items);
        }

        /// <summary>
        /// Accounts for <paramref name="items"/> going into <paramref name="container"/>: the container must not be inside
        /// another already, becomes one level deeper than its deepest item, and the items become inside it.
        /// </summary>
        private T Fill<T>(T container, IReadOnlyList<object?> items) where T : notnull
        {
            var own = nesting[container];
            if (own.Inside) throw new PickleException($"a {Describe(container)} is filled after being put inside another (a state dict never is)");
            int depth = own.Depth;
            foreach (var item in items)
            {
                if (item is null || !nesting.TryGetValue(item, out var inner)) continue;
                depth = Math.Max(depth, inner.Depth + 1);
                if (depth > MaxDepth) throw new PickleException($"it nests containers more than {MaxDepth} deep, far more than a state dict does");
                nesting[item] = inner with { Inside = true };
            }
            // Read again: the container may be among its own items (a list appended to itself), now inside.
            nesting[container] = nesting[container] with { Depth = depth };
            return container;
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
            if (memo.Count >= MaxValues && !memo.ContainsKey(index)) throw new PickleException($"its memo grows beyond {MaxValues} entries, far more than a state dict needs");
            memo[index] = Peek();
        }

        private object? Get(long index) =>
            memo.TryGetValue(index, out var value) ? value : throw new PickleException($"memo entry {index} is read before it is written");
    }
}
