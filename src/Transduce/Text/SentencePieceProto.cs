using System.Buffers.Binary;
using System.Text;

namespace Transduce.Text;

/// <summary>The fields of a <c>ModelProto</c> this class uses, read from the protobuf wire format.</summary>
internal sealed class SentencePieceProto
{
    public List<(string Piece, float Score, int Type)> Pieces { get; } = [];

    public int ModelType { get; private set; } = 1;

    public bool ByteFallback { get; private set; }

    public bool TreatWhitespaceAsSuffix { get; private set; }

    public string? UnknownSurface { get; private set; }

    public string BosPiece { get; private set; } = "<s>";

    public string EosPiece { get; private set; } = "</s>";

    public string PadPiece { get; private set; } = "<pad>";

    public SentencePieceNormalizerSpec? Normalizer { get; private set; }

    public SentencePieceNormalizerSpec? Denormalizer { get; private set; }

    /// <summary>Whether the model has a <c>TrainerSpec</c> (every model <c>spm_train</c> writes does, after the pieces).</summary>
    public bool HasTrainerSpec { get; private set; }

    public static SentencePieceProto Parse(ReadOnlySpan<byte> data)
    {
        var model = new SentencePieceProto();
        ProtoReader.ReadFields(data, (ref ProtoReader reader, int field, int wireType) =>
        {
            switch (field, wireType)
            {
                case (1, 2): model.Pieces.Add(ParsePiece(reader.ReadBytes())); return true;
                case (2, 2): model.ParseTrainerSpec(reader.ReadBytes()); return true;
                case (3, 2): model.Normalizer = ParseNormalizerSpec(reader.ReadBytes()); return true;
                case (5, 2): model.Denormalizer = ParseNormalizerSpec(reader.ReadBytes()); return true;
                default: return false;
            }
        });
        return model;
    }

    private static (string Piece, float Score, int Type) ParsePiece(ReadOnlySpan<byte> data)
    {
        string piece = "";
        float score = 0;
        int type = 1;
        ProtoReader.ReadFields(data, (ref ProtoReader reader, int field, int wireType) =>
        {
            switch (field, wireType)
            {
                case (1, 2): piece = ProtoReader.Utf8(reader.ReadBytes()); return true;
                case (2, 5): score = BitConverter.Int32BitsToSingle((int)reader.ReadFixed32()); return true;
                case (3, 0): type = (int)reader.ReadVarint(); return true;
                default: return false;
            }
        });
        return (piece, score, type);
    }

    /// <summary>The <c>TrainerSpec</c> fields that matter for encoding and decoding.</summary>
    private void ParseTrainerSpec(ReadOnlySpan<byte> data)
    {
        HasTrainerSpec = true;
        ProtoReader.ReadFields(data, (ref ProtoReader reader, int field, int wireType) =>
        {
            switch (field, wireType)
            {
                case (3, 0): ModelType = (int)reader.ReadVarint(); return true;
                case (24, 0): TreatWhitespaceAsSuffix = reader.ReadVarint() != 0; return true;
                case (35, 0): ByteFallback = reader.ReadVarint() != 0; return true;
                case (44, 2): UnknownSurface = ProtoReader.Utf8(reader.ReadBytes()); return true;
                case (46, 2): BosPiece = ProtoReader.Utf8(reader.ReadBytes()); return true;
                case (47, 2): EosPiece = ProtoReader.Utf8(reader.ReadBytes()); return true;
                case (48, 2): PadPiece = ProtoReader.Utf8(reader.ReadBytes()); return true;
                default: return false;
            }
        });
    }

    private static SentencePieceNormalizerSpec ParseNormalizerSpec(ReadOnlySpan<byte> data)
    {
        var spec = new SentencePieceNormalizerSpec();
        ProtoReader.ReadFields(data, (ref ProtoReader reader, int field, int wireType) =>
        {
            switch (field, wireType)
            {
                case (1, 2): spec.Name = ProtoReader.Utf8(reader.ReadBytes()); return true;
                case (2, 2): spec.CharsMap = reader.ReadBytes().ToArray(); return true;
                case (3, 0): spec.AddDummyPrefix = reader.ReadVarint() != 0; return true;
                case (4, 0): spec.RemoveExtraWhitespaces = reader.ReadVarint() != 0; return true;
                case (5, 0): spec.EscapeWhitespaces = reader.ReadVarint() != 0; return true;
                default: return false;
            }
        });
        return spec;
    }
}

/// <summary>A minimal protobuf wire-format reader; throws <see cref="FormatException"/> on malformed input.</summary>
internal ref struct ProtoReader(ReadOnlySpan<byte> data)
{
    /// <summary>Reads one field of a message: true when it was consumed, false to have it skipped.</summary>
    public delegate bool FieldReader(ref ProtoReader reader, int field, int wireType);

    /// <summary>Reads every field of the message <paramref name="data"/> through <paramref name="read"/>, skipping those it leaves.</summary>
    public static void ReadFields(ReadOnlySpan<byte> data, FieldReader read)
    {
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wireType))
        {
            if (!read(ref reader, field, wireType)) reader.Skip(wireType);
        }
    }

    private ReadOnlySpan<byte> _data = data;

    public bool Next(out int field, out int wireType)
    {
        if (_data.IsEmpty)
        {
            field = 0;
            wireType = 0;
            return false;
        }
        ulong key = ReadVarint();
        field = (int)(key >> 3);
        wireType = (int)(key & 7);
        if (field == 0 || key >> 3 > int.MaxValue)
        {
            throw new FormatException("invalid field number 0");
        }
        return true;
    }

    public ulong ReadVarint()
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_data.IsEmpty)
            {
                throw new FormatException("truncated varint");
            }
            byte b = _data[0];
            _data = _data[1..];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
        throw new FormatException("varint longer than 10 bytes");
    }

    public uint ReadFixed32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public ReadOnlySpan<byte> ReadBytes()
    {
        ulong length = ReadVarint();
        if (length > (ulong)_data.Length)
        {
            throw new FormatException($"length-delimited field of {length} bytes runs past the end of its message");
        }
        return Take((int)length);
    }

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0:
                ReadVarint();
                break;
            case 1:
                Take(8);
                break;
            case 2:
                ReadBytes();
                break;
            case 5:
                Take(4);
                break;
            default:
                throw new FormatException($"unsupported wire type {wireType}");
        }
    }

    public static string Utf8(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException ex)
        {
            throw new FormatException("a string field is not valid UTF-8", ex);
        }
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (_data.Length < count)
        {
            throw new FormatException("truncated field");
        }
        ReadOnlySpan<byte> result = _data[..count];
        _data = _data[count..];
        return result;
    }
}
