namespace Hone.Formats;

/// <summary>
/// Reads a JSONL file as raw lines, in batches, without decoding them: records pass through to outputs byte for byte.
/// Blank lines are counted and skipped; a trailing CR (CRLF files) and a leading UTF-8 byte order mark are dropped.
/// Memory: the read buffer grows to the longest line; a batch holds at most its byte budget (plus one line).
/// </summary>
public sealed class JsonlReader : IDisposable
{
    readonly FileStream _stream;
    const int InitialBuffer = 1 << 20;
    byte[] _buffer = new byte[InitialBuffer];
    int _start, _end;
    bool _endOfFile, _atFileStart = true;
    long _bufferFileOffset;

    public string Path { get; }
    /// <summary>File length when opened (for progress).</summary>
    public long Length { get; }
    /// <summary>Bytes consumed so far.</summary>
    public long Position => _bufferFileOffset + _start;
    /// <summary>Physical lines read so far, blank ones included.</summary>
    public long Lines { get; private set; }
    public long BlankLines { get; private set; }

    public JsonlReader(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        Path = path;
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        if (!_stream.CanSeek)
        {
            _stream.Dispose();
            throw new IOException($"{path}: not a regular file (a pipe or a device); give the data as a file (some tools read it twice)");
        }
        Length = _stream.Length;
    }

    /// <summary>The next non-blank line (without its terminator), its 1-based number and its byte offset in the file.</summary>
    public bool ReadLine(out ReadOnlySpan<byte> line, out long lineNumber, out long offset)
    {
        bool read = ReadLineAsMemory(out var memory, out lineNumber, out offset);
        line = memory.Span;
        return read;
    }

    /// <summary>As the span overload; the memory is the reader's buffer, valid until the next read or
    /// <see cref="ReleaseLongLineBuffer"/>.</summary>
    public bool ReadLineAsMemory(out ReadOnlyMemory<byte> line, out long lineNumber, out long offset)
    {
        while (true)
        {
            var pending = _buffer.AsMemory(_start, _end - _start);
            int newline = pending.Span.IndexOf((byte)'\n');
            int length, consumed;
            if (newline >= 0) { length = newline; consumed = newline + 1; }
            else if (_endOfFile)
            {
                if (pending.Length == 0) { line = default; lineNumber = Lines; offset = Position; return false; }
                length = consumed = pending.Length;
            }
            else { Fill(); continue; }

            offset = _bufferFileOffset + _start;
            var content = pending[..length];
            if (content.Length > 0 && content.Span[^1] == (byte)'\r') content = content[..^1];
            if (_atFileStart)
            {
                _atFileStart = false;
                if (content.Span.StartsWith("\uFEFF"u8)) content = content[3..];
            }
            _start += consumed;
            lineNumber = ++Lines;
            if (IsBlank(content.Span)) { BlankLines++; continue; }
            line = content;
            return true;
        }
    }

    /// <summary>Fill <paramref name="batch"/> with up to <paramref name="maxLines"/> lines or about
    /// <paramref name="maxBytes"/> bytes (always at least one line). False at the end of the file.</summary>
    public bool ReadBatch(LineBatch batch, int maxLines, int maxBytes)
    {
        batch.Clear();
        while (batch.Count < maxLines && batch.Bytes < maxBytes && ReadLine(out var line, out long number, out long offset))
            batch.Add(line, number, offset);
        return batch.Count > 0;
    }

    static bool IsBlank(ReadOnlySpan<byte> s)
    {
        foreach (byte b in s) if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')) return false;
        return true;
    }

    /// <summary>After a line of more than 16 MB, go back to a buffer of the initial size (when what is left of the last
    /// read fits) so a huge line's bytes are not held while the caller works on what it made of them; smaller grown
    /// buffers are kept for the next long line. The last line's memory is invalid afterwards.</summary>
    public void ReleaseLongLineBuffer()
    {
        int pending = _end - _start;
        if (_buffer.Length <= 1 << 24 || pending > InitialBuffer) return;
        var buffer = new byte[InitialBuffer];
        _buffer.AsSpan(_start, pending).CopyTo(buffer);
        _bufferFileOffset += _start;
        _start = 0;
        _end = pending;
        _buffer = buffer;
    }

    void Fill()
    {
        int pending = _end - _start;
        if (_start > 0)
        {
            // Move the partial line to the front so the buffer only grows for a line longer than itself.
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, pending);
            _bufferFileOffset += _start;
            _start = 0;
            _end = pending;
        }
        if (_end == _buffer.Length) Array.Resize(ref _buffer, LongLineBufferLength());
        int read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0) _endOfFile = true;
        _end += read;
    }

    /// <summary>The buffer is full of one unfinished line: look ahead in the file for its end and size the buffer to
    /// hold it whole, at once, rather than doubling (a 200 MB line would otherwise leave 255 MB of smaller buffers
    /// behind and get one of 256 MB).</summary>
    int LongLineBufferLength()
    {
        var scratch = new byte[1 << 16];
        long at = _bufferFileOffset + _end, end = Length;
        while (at < Length)
        {
            int read = RandomAccess.Read(_stream.SafeFileHandle, scratch, at);
            if (read == 0) break;
            int newline = scratch.AsSpan(0, read).IndexOf((byte)'\n');
            if (newline >= 0) { end = at + newline + 1; break; }
            at += read;
        }
        long needed = Math.Max(end - _bufferFileOffset, _buffer.Length + 1L);
        if (needed > Array.MaxLength) throw new IOException($"{Path}: line {Lines + 1} is longer than {Array.MaxLength:N0} bytes");
        return (int)needed;
    }

    public void Dispose() => _stream.Dispose();
}

/// <summary>Lines copied out of a <see cref="JsonlReader"/>, to be worked on in parallel and then written in order.</summary>
public sealed class LineBatch
{
    byte[] _arena = new byte[1 << 16];
    readonly List<(int Start, int Length, long Line, long Offset)> _lines = [];

    public int Count => _lines.Count;
    public int Bytes { get; private set; }

    public ReadOnlySpan<byte> this[int index] { get { var l = _lines[index]; return _arena.AsSpan(l.Start, l.Length); } }
    public long LineNumber(int index) => _lines[index].Line;
    public long Offset(int index) => _lines[index].Offset;

    public void Clear() { _lines.Clear(); Bytes = 0; }

    public void Add(ReadOnlySpan<byte> line, long lineNumber, long offset)
    {
        if (Bytes + line.Length > _arena.Length) Array.Resize(ref _arena, Math.Max(_arena.Length * 2, Bytes + line.Length));
        line.CopyTo(_arena.AsSpan(Bytes));
        _lines.Add((Bytes, line.Length, lineNumber, offset));
        Bytes += line.Length;
    }
}
