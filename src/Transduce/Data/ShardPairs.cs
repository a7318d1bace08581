using System.Collections;
using Transduce.IO;
using static TorchSharp.torch;

namespace Transduce.Data;

/// <summary>Per-pair lengths in tokens (no special tokens) that a pair source knows without reading the pairs' ids.</summary>
internal interface IPairLengths
{
    /// <summary>Source tokens of pair <paramref name="index"/>.</summary>
    int SourceLength(int index);

    /// <summary>Target tokens of pair <paramref name="index"/>.</summary>
    int TargetLength(int index);
}

/// <summary>
/// The pairs of a token-shard folder (<see cref="TokenShards"/>) read from the mapped shard files (<see cref="MappedFile"/>)
/// when asked for, never held: memory keeps two lengths a pair (4 bytes; 65,535 tokens or more are read from the offsets),
/// the ids stay in the files and the page cache.
/// Opening checks every shard's tensors against the manifest (names, types, shapes, offsets rising from 0 to the id count);
/// a pair's ids are checked against the vocabularies when it is read. Pair numbers run across shards in the manifest's order.
/// </summary>
internal sealed class ShardPairs : IReadOnlyList<EncodedPair>, IPairLengths, IDisposable
{
    private readonly Shard[] shards;
    private readonly int[] firsts;   // global number of each shard's first pair
    private readonly ushort[] sourceLengths, targetLengths;   // a length of 65,535 or more is read from the offsets

    private ShardPairs(TokenShardsInfo info, Shard[] shards, int[] firsts, ushort[] sourceLengths, ushort[] targetLengths)
    {
        Info = info;
        this.shards = shards;
        this.firsts = firsts;
        this.sourceLengths = sourceLengths;
        this.targetLengths = targetLengths;
    }

    /// <summary>The manifest.</summary>
    public TokenShardsInfo Info { get; }

    /// <inheritdoc />
    public int Count => sourceLengths.Length;

    /// <inheritdoc />
    public int SourceLength(int index) => sourceLengths[index] is var n && n < ushort.MaxValue ? n : Locate(index, out int i).Source.Length(i);

    /// <inheritdoc />
    public int TargetLength(int index) => targetLengths[index] is var n && n < ushort.MaxValue ? n : Locate(index, out int i).Target.Length(i);

    /// <summary>Pair <paramref name="index"/>, its ids read from the mapped files.</summary>
    /// <exception cref="InvalidDataException">An id is outside its vocabulary (the message names the shard file).</exception>
    public EncodedPair this[int index]
    {
        get
        {
            var shard = Locate(index, out int i);
            return new EncodedPair(shard.Source.Ids(i, Info.SourceVocabularySize), shard.Target.Ids(i, Info.TargetVocabularySize));
        }
    }

    /// <summary>The shard that holds pair <paramref name="index"/>, and the pair's number in it.</summary>
    private Shard Locate(int index, out int inShard)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        int s = Array.BinarySearch(firsts, index);
        if (s < 0) s = ~s - 1;
        while (s + 1 < firsts.Length && firsts[s + 1] == index) s++;   // skip empty shards
        inShard = index - firsts[s];
        return shards[s];
    }

    /// <inheritdoc />
    public IEnumerator<EncodedPair> GetEnumerator()
    {
        for (int i = 0; i < Count; i++) yield return this[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Opens the shard folder <paramref name="directory"/>, checking its manifest and every shard's offsets.</summary>
    /// <exception cref="InvalidDataException">The manifest or a shard does not match (the message names the file and the problem).</exception>
    public static ShardPairs Open(string directory)
    {
        var info = TokenShards.ReadInfo(directory);
        if (info.Pairs > Array.MaxLength)
            throw new InvalidDataException($"{Path.Combine(directory, TokenShards.ManifestFile)}: {info.Pairs} pairs are more than one run can hold (at most {Array.MaxLength})");
        var opened = new List<Shard>();
        try
        {
            var firsts = new int[info.Shards.Count];
            // The manifest's count was checked against the shards' counts, which each shard's offsets confirm below.
            var sourceLengths = new ushort[info.Pairs];
            var targetLengths = new ushort[info.Pairs];
            int next = 0;
            for (int s = 0; s < info.Shards.Count; s++)
            {
                var (file, count) = info.Shards[s];
                if (!File.Exists(file))
                    throw new FileNotFoundException($"{file}: shard not found (named by {Path.Combine(directory, TokenShards.ManifestFile)})", file);
                var reader = SafetensorsReader.Open(file);
                try
                {
                    var shard = new Shard(file, Side.Open(reader, "source", count), Side.Open(reader, "target", count));
                    opened.Add(shard);
                    firsts[s] = next;
                    shard.Source.Lengths(sourceLengths.AsSpan(next, count));
                    shard.Target.Lengths(targetLengths.AsSpan(next, count));
                    next += count;
                }
                finally
                {
                    reader.Dispose();   // the tensors handed out keep their mappings
                }
            }
            return new ShardPairs(info, [.. opened], firsts, sourceLengths, targetLengths);
        }
        catch
        {
            foreach (var shard in opened) shard.Dispose();
            throw;
        }
    }

    /// <summary>Releases the mappings.</summary>
    public void Dispose()
    {
        foreach (var shard in shards) shard.Dispose();
    }

    private sealed record Shard(string File, Side Source, Side Target) : IDisposable
    {
        public void Dispose()
        {
            Source.Dispose();
            Target.Dispose();
        }
    }

    /// <summary>One side of a shard: its ids and offsets as tensors over the mapped file, and their addresses.</summary>
    private sealed unsafe class Side : IDisposable
    {
        private readonly Tensor ids, offsets;
        private readonly int* idData;
        private readonly long* offsetData;
        private readonly long idCount;
        private readonly string name, file;

        private Side(Tensor ids, Tensor offsets, string name, string file)
        {
            this.file = file;
            this.ids = ids;
            this.offsets = offsets;
            this.name = name;
            idCount = ids.NumberOfElements;
            idData = idCount == 0 ? null : (int*)MappedFile.Address(ids);
            offsetData = (long*)MappedFile.Address(offsets);
        }

        public static Side Open(SafetensorsReader reader, string side, int pairs)
        {
            string file = reader.Path;
            Tensor Get(string key, ScalarType type)
            {
                if (!reader.Entries.TryGetValue(key, out var e)) throw new InvalidDataException($"{file}: tensor '{key}' missing");
                if (e.DType != type || e.Shape.Length != 1) throw new InvalidDataException($"{file}: tensor '{key}' must be one-dimensional {type}");
                var t = reader.Read(key);
                return t.is_contiguous() ? t : throw new InvalidDataException($"{file}: tensor '{key}' is not contiguous");
            }
            var ids = Get($"{side}_ids", ScalarType.Int32);
            var offsets = Get($"{side}_offsets", ScalarType.Int64);
            if (offsets.NumberOfElements != pairs + 1L)
            {
                long n = offsets.NumberOfElements;
                ids.Dispose();
                offsets.Dispose();
                throw new InvalidDataException($"{file}: '{side}_offsets' has {n} entries, the manifest's {pairs} pairs need {pairs + 1}");
            }
            var result = new Side(ids, offsets, side, file);
            try
            {
                if (result.offsetData[0] != 0 || result.offsetData[pairs] != result.idCount)
                    throw new InvalidDataException($"{file}: '{side}_offsets' must run from 0 to the {result.idCount} ids");
                return result;
            }
            catch
            {
                result.Dispose();
                throw;
            }
        }

        /// <summary>Tokens of the side's pair <paramref name="i"/>.</summary>
        public int Length(int i) => checked((int)(offsetData[i + 1] - offsetData[i]));

        /// <summary>Writes each pair's length (at most 65,535) into <paramref name="lengths"/>, checking that the offsets rise.</summary>
        public void Lengths(Span<ushort> lengths)
        {
            for (int i = 0; i < lengths.Length; i++)
            {
                long length = offsetData[i + 1] - offsetData[i];
                if (length is < 0 or > int.MaxValue) throw new InvalidDataException($"{file}: '{name}_offsets' fall at pair {i}");
                lengths[i] = (ushort)Math.Min(length, ushort.MaxValue);
            }
            MappedFile.Evict(offsets);   // read again, page by page, as pairs are
        }

        /// <summary>The ids of the side's pair <paramref name="i"/>, each checked against <paramref name="vocabularySize"/>.</summary>
        public int[] Ids(int i, int vocabularySize)
        {
            long start = offsetData[i];
            var result = new ReadOnlySpan<int>(idData + start, checked((int)(offsetData[i + 1] - start))).ToArray();
            foreach (int id in result)
                if ((uint)id >= (uint)vocabularySize)
                    throw new InvalidDataException($"{file}: {name} id {id} is outside the {name} vocabulary (size {vocabularySize})");
            return result;
        }

        public void Dispose()
        {
            ids.Dispose();
            offsets.Dispose();
        }
    }
}
