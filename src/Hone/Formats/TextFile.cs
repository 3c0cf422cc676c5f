using System.IO.Compression;
using System.Text;

namespace Hone.Formats;

/// <summary>Text files as data and evaluation sets come: UTF-8, possibly gzipped (.gz). Damage is an error naming the
/// file: bytes that are not UTF-8, a .gz that is not gzip, or one that ends early (decompressed length against the
/// gzip trailer's).</summary>
public static class TextFile
{
    public static bool IsGzip(string path) => path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);

    /// <summary>A reader of the file's text; reading throws <see cref="DataFormatException"/> on damage.</summary>
    public static TextReader Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        Stream stream = File.OpenRead(path);
        try
        {
            if (IsGzip(path)) stream = new CheckedGzipStream(path, stream);
        }
        catch { stream.Dispose(); throw; }
        return new CheckedReader(path, new StreamReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true)));
    }

    /// <summary>Turns decoding failures into errors naming the file and the line they were met on.</summary>
    sealed class CheckedReader(string path, StreamReader inner) : TextReader
    {
        long _line = 1;

        T Guard<T>(Func<T> read)
        {
            try { return read(); }
            catch (DecoderFallbackException) { throw new DataFormatException(path, _line, "invalid UTF-8"); }
            catch (InvalidDataException e) { throw new DataFormatException(path, _line, $"damaged gzip data: {e.Message}"); }
        }

        public override int Peek() => Guard(inner.Peek);
        public override int Read()
        {
            int c = Guard(inner.Read);
            if (c == '\n') _line++;
            return c;
        }
        public override string? ReadLine()
        {
            var line = Guard(inner.ReadLine);
            if (line != null) _line++;
            return line;
        }
        public override string ReadToEnd() => Guard(inner.ReadToEnd);
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    }

    /// <summary>gzip with its magic checked at the start and the decompressed data checked against the trailer at the
    /// end (CRC-32 and ISIZE, the length modulo 2³², of a single-member file), so a truncated or damaged file is not
    /// read as different text.</summary>
    sealed class CheckedGzipStream : Stream
    {
        readonly string _path;
        readonly GZipStream _inner;
        readonly uint _expectedLength, _expectedCrc;
        uint _crc = 0xFFFFFFFF;
        long _length;
        static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
        {
            uint c = (uint)n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            return c;
        }).ToArray();

        public CheckedGzipStream(string path, Stream file)
        {
            _path = path;
            Span<byte> head = stackalloc byte[2], tail = stackalloc byte[8];
            if (file.Length < 18 || file.ReadAtLeast(head, 2, false) < 2 || head[0] != 0x1F || head[1] != 0x8B)
                throw new DataFormatException(path, 0, "not gzip data (the name ends in .gz, the bytes do not start with 1F 8B)");
            file.Seek(-8, SeekOrigin.End);
            file.ReadExactly(tail);
            _expectedCrc = BitConverter.ToUInt32(tail);          // little-endian, as gzip writes them
            _expectedLength = BitConverter.ToUInt32(tail[4..]);
            file.Seek(0, SeekOrigin.Begin);
            _inner = new GZipStream(file, CompressionMode.Decompress);
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int read;
            try { read = _inner.Read(buffer); }
            catch (InvalidDataException e) { throw new DataFormatException(_path, 0, $"damaged gzip data after {_length:N0} bytes: {e.Message}"); }
            _length += read;
            foreach (byte b in buffer[..read]) _crc = CrcTable[(_crc ^ b) & 0xFF] ^ (_crc >> 8);
            if (read == 0 && buffer.Length > 0 && ((uint)_length != _expectedLength || ~_crc != _expectedCrc))
                throw new DataFormatException(_path, 0, $"the gzip data ends early or is damaged: {_length:N0} bytes decompressed do not match " +
                    $"the trailer's length {_expectedLength:N0} and checksum (or it holds several gzip members, which is not supported)");
            return read;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        protected override void Dispose(bool disposing) { if (disposing) _inner.Dispose(); base.Dispose(disposing); }
    }
}
