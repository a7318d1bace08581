using TorchSharp;
using static TorchSharp.torch;

namespace Transduce.Models.Transformer;

/// <summary>
/// Every decoder layer's self-attention keys and values, preallocated with room to grow, (rows, heads, capacity, head
/// size): a step writes its new positions in place and attends over a view of the first ones, instead of concatenating
/// the whole cache anew every step (which copied all of it each step: at OPUS-MT size, batch 32, 24 MB a step by the
/// 32nd token). The capacity doubles when full. States share the buffers as decoding advances; a step from an older state
/// (a second continuation of the same prefix) copies them first, so no state sees another's positions. A bfloat16 plan
/// stores them in bfloat16: its key and value projections' outputs are bfloat16 numbers already, so nothing is lost, and
/// attention reads half the bytes.
/// </summary>
internal sealed unsafe class KeyValueCache
{
    private nint[]? keyPointers, valuePointers;

    private KeyValueCache(Tensor[] keys, Tensor[] values, long written) => (Keys, Values, Written) = (keys, values, written);

    /// <summary>Each layer's key buffer, (rows, heads, capacity, head size).</summary>
    public Tensor[] Keys { get; }

    /// <summary>Each layer's value buffer.</summary>
    public Tensor[] Values { get; }

    /// <summary>Positions written by the newest state that shares these buffers.</summary>
    public long Written { get; private set; }

    /// <summary>Positions the buffers hold.</summary>
    public long Capacity => Keys[0].shape[2];

    /// <summary>The buffers, for a state's list of tensors it owns.</summary>
    public IEnumerable<Tensor> Tensors => Keys.Concat(Values);

    /// <summary>
    /// Buffers to write positions <c>state.Steps</c> … + <paramref name="steps"/> − 1 of <paramref name="rows"/> rows
    /// into: the state's own when they have room and no other state wrote past its positions, else new ones holding a
    /// copy of its cached positions (new tensors in the caller's dispose scope), of element type <paramref name="type"/>.
    /// </summary>
    public static KeyValueCache For(TransformerState state, long rows, long steps, int heads, long headSize, ScalarType type)
    {
        long needed = state.Steps + steps;
        // A state whose rows were selected lazily (TransformerState.PositionRows) writes its row b into the buffers' row b:
        // positions before it stay where they are, wherever the table says, and no live row reads row b at a later position.
        if (state.Cache is { } own && own.Written == state.Steps && own.Capacity >= needed && own.Keys[0].shape[0] >= rows
            && (own.Keys[0].shape[0] == rows || state.PositionRows is not null) && own.Keys[0].dtype == type)
            return own;
        // One step at a time: double, so that growing costs O(1) per step; a whole prefix at once (teacher forcing,
        // prefix recomputation): exactly what it needs.
        long capacity = steps == 1 ? Math.Max(16, 2 * needed) : needed;
        int layers = state.SelfKeys.Length;
        var keys = new Tensor[layers];
        var values = new Tensor[layers];
        for (int i = 0; i < layers; i++)
        {
            keys[i] = empty(rows, heads, capacity, headSize, type, device: state.SourceMask.device);
            values[i] = empty(rows, heads, capacity, headSize, type, device: state.SourceMask.device);
            if (state.Steps > 0)
            {
                using var pastKeys = state.PastKeys(i);
                using var pastValues = state.PastValues(i);
                using (var slot = keys[i].narrow(2, 0, state.Steps)) slot.copy_(pastKeys);
                using (var slot = values[i].narrow(2, 0, state.Steps)) slot.copy_(pastValues);
            }
        }
        return new KeyValueCache(keys, values, state.Steps);
    }

    /// <summary>
    /// Writes layer <paramref name="layer"/>'s new keys and values (rows, heads, steps, head size) at <paramref name="offset"/>;
    /// returns views of all positions so far, (rows, heads, offset + steps, head size).
    /// </summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor newKeys, Tensor newValues, long offset)
    {
        long steps = newKeys.shape[2], rows = newKeys.shape[0];
        // Rows a lazily selected state no longer decodes stay behind its own (TransformerState.PositionRows).
        bool all = rows == Keys[layer].shape[0];
        using (var mine = all ? null : Keys[layer].narrow(0, 0, rows))
        using (var slot = (mine ?? Keys[layer]).narrow(2, offset, steps)) slot.copy_(newKeys);
        using (var mine = all ? null : Values[layer].narrow(0, 0, rows))
        using (var slot = (mine ?? Values[layer]).narrow(2, offset, steps)) slot.copy_(newValues);
        Written = offset + steps;
        return (Keys[layer].narrow(2, 0, offset + steps), Values[layer].narrow(2, 0, offset + steps));
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s float32 key and value buffers of a one-row cache, (heads, capacity, head size), for
    /// code that writes and reads them in place (the managed row step); the buffers never move while the cache lives.
    /// </summary>
    public void Rows(int layer, out float* keys, out float* values)
    {
        if (keyPointers is null)
        {
            if (Keys[0].dtype != ScalarType.Float32 || Keys[0].shape[0] != 1) throw new InvalidOperationException("managed access needs a one-row float32 cache");
            keyPointers = Keys.Select(k => (nint)RowKernels.Pointer(k)).ToArray();
            valuePointers = Values.Select(v => (nint)RowKernels.Pointer(v)).ToArray();
        }
        keys = (float*)keyPointers[layer];
        values = (float*)valuePointers![layer];
    }

    /// <summary>Records that positions up to <paramref name="written"/> were written in place (through <see cref="Rows"/>).</summary>
    public void Wrote(long written) => Written = written;

    /// <summary>
    /// Layer <paramref name="layer"/>'s keys (or values) of <paramref name="rows"/> rows at positions 0 … <paramref name="steps"/> − 1,
    /// (rows, heads, steps, head size): a view when row b's positions are the buffers' row b, else a copy gathered through
    /// <paramref name="table"/> (<see cref="TransformerState.PositionRows"/>).
    /// </summary>
    public Tensor Read(bool keys, int layer, long rows, long steps, int[]? table)
    {
        var buffer = (keys ? Keys : Values)[layer];
        if (table is null)
        {
            using var mine = buffer.narrow(0, 0, rows);
            return mine.narrow(2, 0, steps);
        }
        long heads = buffer.shape[1], capacity = buffer.shape[2], headSize = buffer.shape[3];
        if (buffer.device_type != DeviceType.CPU || !buffer.is_contiguous() || table.Length != rows * steps)
            throw new InvalidOperationException("a row table needs contiguous CPU buffers and one entry per row and position");
        var gathered = empty(rows, heads, steps, headSize, buffer.dtype, device: buffer.device);
        long bytes = headSize * buffer.ElementSize;
        fixed (byte* from = buffer.bytes, to = gathered.bytes)
            for (long b = 0; b < rows; b++)
                for (long h = 0; h < heads; h++)
                    for (long t = 0; t < steps; t++)
                    {
                        long row = table[b * steps + t];
                        Buffer.MemoryCopy(from + ((row * heads + h) * capacity + t) * bytes, to + ((b * heads + h) * steps + t) * bytes, bytes, bytes);
                    }
        return gathered;
    }

    /// <summary>
    /// A new cache of <paramref name="rows"/> rows, the same capacity, holding each row's positions 0 … <paramref name="steps"/> − 1
    /// where its own row is (gathered through <paramref name="table"/> when given).
    /// </summary>
    public KeyValueCache Gathered(long rows, long steps, int[]? table)
    {
        var keys = new Tensor[Keys.Length];
        var values = new Tensor[Values.Length];
        for (int i = 0; i < Keys.Length; i++)
        {
            keys[i] = empty(rows, Keys[i].shape[1], Capacity, Keys[i].shape[3], Keys[i].dtype, device: Keys[i].device);
            values[i] = empty(rows, Values[i].shape[1], Capacity, Values[i].shape[3], Values[i].dtype, device: Values[i].device);
            using (var past = Read(keys: true, i, rows, steps, table))
            using (var slot = keys[i].narrow(2, 0, steps)) slot.copy_(past);
            using (var past = Read(keys: false, i, rows, steps, table))
            using (var slot = values[i].narrow(2, 0, steps)) slot.copy_(past);
        }
        return new KeyValueCache(keys, values, steps);
    }

    /// <summary>The buffers' rows <paramref name="rows"/> (reordered, repeated or dropped), with the same capacity.</summary>
    public KeyValueCache SelectRows(Tensor rows, long steps) =>
        new(Keys.Select(k => k.index_select(0, rows)).ToArray(), Values.Select(v => v.index_select(0, rows)).ToArray(), steps);
}
