using System.Buffers.Binary;
using System.Text;

namespace Hone.Formats;

/// <summary>Bounds-checked little-endian reader over a memory-mapped file region; every overrun is a
/// <see cref="ModelFormatException"/> naming the file, what was being read and where.</summary>
internal unsafe ref struct BinaryCursor
{
    readonly byte* _base;
    readonly long _length;
    readonly string _file;
    public long Position;

    public BinaryCursor(byte* data, long length, string file) { _base = data; _length = length; _file = file; Position = 0; }

    public long Remaining => _length - Position;

    /// <summary>The longest single value (a string) read in one piece: far above any real key, token or template,
    /// and below what a .NET string or span can hold.</summary>
    public const long MaxItemBytes = 1L << 30;

    ReadOnlySpan<byte> Take(long count, string what)
    {
        if (count < 0 || count > Remaining)
            throw new ModelFormatException(_file, $"file is truncated: needed {count} bytes for {what} at offset {Position}, only {Math.Max(0, Remaining)} left");
        if (count > MaxItemBytes)
            throw new ModelFormatException(_file, $"{what} at offset {Position} claims {count} bytes, more than the {MaxItemBytes} a single value may hold (corrupt length)");
        var span = new ReadOnlySpan<byte>(_base + Position, (int)count);
        Position += count;
        return span;
    }

    public byte U8(string what) => Take(1, what)[0];
    public sbyte I8(string what) => (sbyte)Take(1, what)[0];
    public ushort U16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what));
    public short I16(string what) => BinaryPrimitives.ReadInt16LittleEndian(Take(2, what));
    public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
    public int I32(string what) => BinaryPrimitives.ReadInt32LittleEndian(Take(4, what));
    public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));
    public long I64(string what) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, what));
    public float F32(string what) => BinaryPrimitives.ReadSingleLittleEndian(Take(4, what));
    public double F64(string what) => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what));

    public string Utf8(long byteCount, string what)
    {
        var bytes = Take(byteCount, what);
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException) { throw new ModelFormatException(_file, $"{what} is not valid UTF-8 (at offset {Position - byteCount})"); }
    }

    public void Skip(long count, string what)
    {
        if (count < 0 || count > Remaining)
            throw new ModelFormatException(_file, $"file is truncated: needed {count} bytes for {what} at offset {Position}, only {Math.Max(0, Remaining)} left");
        Position += count;
    }
}
