namespace Transduce.Data;

/// <summary>
/// Reads a file as raw byte lines split on '\n', with a trailing '\r' removed from each line and a UTF-8
/// byte-order mark at the start of the file skipped. The empty piece after a final '\n' is not a line.
/// Lines are returned as spans into an internal buffer that stay valid only until the next call.
/// </summary>
internal sealed class Utf8LineReader : IDisposable
{
    private const int InitialBufferSize = 1 << 16;

    private readonly FileStream _stream;
    private byte[] _buffer = new byte[InitialBufferSize];
    private int _start;      // first unconsumed byte
    private int _end;        // one past the last valid byte
    private int _scanned;    // bytes in [_start, _scanned) are known to contain no '\n'
    private bool _eof;
    private bool _bomChecked;

    public Utf8LineReader(string path)
    {
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read,
            bufferSize: 1, FileOptions.SequentialScan);
    }

    /// <summary>1-based number of the line last returned by <see cref="TryReadLine"/>; 0 before the first.</summary>
    public int LineNumber { get; private set; }

    public bool TryReadLine(out ReadOnlySpan<byte> line)
    {
        if (!_bomChecked)
        {
            SkipBom();
        }

        while (true)
        {
            int nl = _buffer.AsSpan(_scanned, _end - _scanned).IndexOf((byte)'\n');
            if (nl >= 0)
            {
                int lineEnd = _scanned + nl;
                line = TrimCr(_buffer.AsSpan(_start, lineEnd - _start));
                _start = _scanned = lineEnd + 1;
                LineNumber++;
                return true;
            }

            _scanned = _end;
            if (_eof)
            {
                if (_start < _end)
                {
                    line = TrimCr(_buffer.AsSpan(_start, _end - _start));
                    _start = _scanned = _end;
                    LineNumber++;
                    return true;
                }
                line = default;
                return false;
            }
            Fill();
        }
    }

    public void Dispose() => _stream.Dispose();

    private void SkipBom()
    {
        while (!_eof && _end - _start < 3)
        {
            Fill();
        }
        if (_buffer.AsSpan(_start, _end - _start).StartsWith("\uFEFF"u8))
        {
            _start += 3;
            _scanned = _start;
        }
        _bomChecked = true;
    }

    /// <summary>Moves unconsumed bytes to the front, grows the buffer if it is full, then reads more.</summary>
    private void Fill()
    {
        int pending = _end - _start;
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, pending);
            _scanned -= _start;
            _start = 0;
            _end = pending;
        }
        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }
        int read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0)
        {
            _eof = true;
        }
        _end += read;
    }

    private static ReadOnlySpan<byte> TrimCr(ReadOnlySpan<byte> line) =>
        line.Length > 0 && line[^1] == (byte)'\r' ? line[..^1] : line;
}
