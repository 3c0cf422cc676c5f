using Microsoft.Win32.SafeHandles;

namespace Hone.DataTools;

/// <summary>
/// The LSH index of kept texts: for every band of every kept text, a 32-bit fingerprint of the band key and the text's
/// number, packed in one 64-bit slot of an open-addressing table (linear probing, load ≤ 0.7), so a kept text costs
/// about 8/0.55 ≈ 15 bytes a band. The home slot comes from the fingerprint itself, so the table can grow without the
/// full keys. A lookup returns every text whose band fingerprint matches; a stray 32-bit match only costs one
/// verification. The signatures used for verification live on disk (<see cref="SignatureStore"/>), not in memory.
/// </summary>
public sealed class BandIndex
{
    ulong[] _slots = new ulong[1 << 16];
    int _shift = 64 - 16;

    public long Count { get; private set; }
    public long MemoryBytes => _slots.LongLength * 8;

    public void Add(ulong key, int id)
    {
        if ((Count + 1) * 10 > _slots.LongLength * 7) Grow();
        Insert(_slots, _shift, Fingerprint(key), id);
        Count++;
    }

    /// <summary>Append the ids stored under <paramref name="key"/> (and any sharing its fingerprint) to <paramref name="ids"/>.</summary>
    public void Find(ulong key, List<int> ids)
    {
        uint fingerprint = Fingerprint(key);
        long mask = _slots.LongLength - 1;
        for (long i = Home(fingerprint, _shift); ; i = (i + 1) & mask)
        {
            ulong slot = _slots[i];
            if (slot == 0) return;
            if ((uint)(slot >> 32) == fingerprint) ids.Add((int)(uint)slot - 1);
        }
    }

    static uint Fingerprint(ulong key) => (uint)(key >> 32);
    static long Home(uint fingerprint, int shift) => (long)(((ulong)fingerprint << 32) >> shift);

    static void Insert(ulong[] slots, int shift, uint fingerprint, int id)
    {
        long mask = slots.LongLength - 1;
        long i = Home(fingerprint, shift);
        while (slots[i] != 0) i = (i + 1) & mask;
        slots[i] = ((ulong)fingerprint << 32) | (uint)(id + 1);
    }

    void Grow()
    {
        if (_shift <= 64 - 30) throw new InvalidOperationException("the near-duplicate index is full (2^30 slots); split the input");
        var bigger = new ulong[_slots.LongLength * 2];
        int shift = _shift - 1;
        foreach (ulong slot in _slots)
            if (slot != 0) Insert(bigger, shift, (uint)(slot >> 32), (int)(uint)slot - 1);
        _slots = bigger;
        _shift = shift;
    }
}

/// <summary>
/// Signatures of kept texts for verifying LSH candidates, in a temporary file deleted on close: each record is the
/// text's line number, byte offset and its MinHash values truncated to 16 bits (b-bit minwise hashing: two unrelated
/// values agree by chance with probability 2⁻¹⁶, corrected for in <see cref="Jaccard"/>). Recent records wait in a
/// small in-memory tail; the rest are read back with positioned reads, so resident memory stays small.
/// </summary>
public sealed class SignatureStore : IDisposable
{
    const int TailRecords = 4096;
    readonly SafeFileHandle _file;
    readonly int _numPerm, _recordBytes;
    readonly byte[] _tail;
    int _tailCount;
    long _flushed;
    readonly byte[] _readBuffer;

    public string Path { get; }
    public int Count => (int)(_flushed + _tailCount);

    public SignatureStore(string directory, int numPerm)
    {
        _numPerm = numPerm;
        _recordBytes = 16 + 2 * numPerm;
        _tail = new byte[TailRecords * _recordBytes];
        _readBuffer = new byte[_recordBytes];
        Directory.CreateDirectory(directory);
        Path = System.IO.Path.Combine(directory, $".hone-signatures.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        _file = File.OpenHandle(Path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, FileOptions.DeleteOnClose);
    }

    public int Add(long line, long offset, ReadOnlySpan<uint> signature)
    {
        if (_tailCount == TailRecords) Flush();
        var record = _tail.AsSpan(_tailCount * _recordBytes, _recordBytes);
        BitConverter.TryWriteBytes(record, line);
        BitConverter.TryWriteBytes(record[8..], offset);
        for (int i = 0; i < _numPerm; i++) BitConverter.TryWriteBytes(record[(16 + 2 * i)..], (ushort)signature[i]);
        _tailCount++;
        return Count - 1;
    }

    void Flush()
    {
        RandomAccess.Write(_file, _tail.AsSpan(0, _tailCount * _recordBytes), _flushed * _recordBytes);
        _flushed += _tailCount;
        _tailCount = 0;
    }

    ReadOnlySpan<byte> Record(int id)
    {
        if (id >= _flushed) return _tail.AsSpan((int)(id - _flushed) * _recordBytes, _recordBytes);
        int read = RandomAccess.Read(_file, _readBuffer, (long)id * _recordBytes);
        if (read != _recordBytes) throw new IOException($"{Path}: short read of a signature");
        return _readBuffer;
    }

    public (long Line, long Offset) Location(int id)
    {
        var r = Record(id);
        return (BitConverter.ToInt64(r), BitConverter.ToInt64(r[8..]));
    }

    /// <summary>The Jaccard estimate between a stored text and a signature: the share of agreeing truncated values,
    /// less the chance agreement of unrelated 16-bit values.</summary>
    public double Jaccard(int id, ReadOnlySpan<uint> signature)
    {
        var r = Record(id)[16..];
        int equal = 0;
        for (int i = 0; i < _numPerm; i++) if (BitConverter.ToUInt16(r[(2 * i)..]) == (ushort)signature[i]) equal++;
        const double chance = 1.0 / 65536;
        return Math.Max(0, ((double)equal / _numPerm - chance) / (1 - chance));
    }

    public void Dispose() => _file.Dispose();
}
