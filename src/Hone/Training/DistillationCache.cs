using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tokenization;

namespace Hone.Training;

/// <summary>
/// Hone's teacher cache (hone distill cache): for every training row a distillation run will draw, the teacher's
/// top-K ids at each target position with their log-probabilities at temperature T and the log of the rest mass.
/// Little-endian layout:
/// <code>
/// header (128 bytes)  magic "HONE-KDC", version, header size, K, T (float32), vocabulary size, seq_len, sequences,
///                     positions, options JSON length, records offset, records bytes, index offset,
///                     SHA-256 of the vocabulary's token strings, and a SHA-256 (first 16 bytes) of header + JSON + index
/// options JSON        what the cache was built from: teacher, adapter, the trainer's data settings, rows covered
/// records             per row, in the order written: ids [P, K] int32, log-probs [P, K] float32, log rest [P] float32
///                     for its P target positions (in position order)
/// index (32 bytes × sequences, sorted by key)  key (16 bytes: SHA-256 of the row's tokens and targets), record
///                     offset (from the records offset), P, and the record's checksum (first 4 bytes of its SHA-256)
/// </code>
/// A row is found by its key, so the lookup does not depend on the order the trainer draws rows in. Every size read
/// is checked against the file's length before anything is allocated; the header and index are checked whole when the
/// file opens, each record when it is read.
/// </summary>
public static class DistillationCache
{
    public const int Version = 1;
    public const int HeaderBytes = 128;
    public const int IndexEntryBytes = 32;
    public static ReadOnlySpan<byte> Magic => "HONE-KDC"u8;
    /// <summary>Largest options JSON a reader accepts (it is a few hundred bytes when Hone writes it).</summary>
    public const int MaxOptionsBytes = 1 << 20;

    /// <summary>A row's key: the first 16 bytes of the SHA-256 of its tokens [T] and targets [T] (int32 each).</summary>
    public static UInt128 Key(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(MemoryMarshal.AsBytes(tokens));
        sha.AppendData(MemoryMarshal.AsBytes(targets));
        Span<byte> hash = stackalloc byte[32];
        sha.GetHashAndReset(hash);
        return BinaryPrimitives.ReadUInt128BigEndian(hash);
    }

    /// <summary>The vocabulary's identity: SHA-256 of the token strings of ids [0, <paramref name="vocab"/>) (ids past
    /// the tokenizer's own count, a padded embedding, hash as "no token").</summary>
    public static byte[] VocabularyHash(Tokenizer tokenizer, int vocab)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        for (int id = 0; id < vocab; id++)
        {
            if (id >= tokenizer.VocabSize) { BinaryPrimitives.WriteInt32LittleEndian(length, -1); sha.AppendData(length); continue; }
            var bytes = Encoding.UTF8.GetBytes(tokenizer.TokenText(id));
            BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
            sha.AppendData(length);
            sha.AppendData(bytes);
        }
        return sha.GetHashAndReset();
    }

    /// <summary>Bytes of a record of <paramref name="positions"/> target positions.</summary>
    public static long RecordBytes(long positions, int topK) => checked(positions * (8L * topK + 4));

    internal static uint Checksum(ReadOnlySpan<byte> record)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(record, hash);
        return BinaryPrimitives.ReadUInt32LittleEndian(hash);
    }

    internal static void RequireLittleEndian()
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("teacher caches are read and written on little-endian machines");
    }
}

/// <summary>What a teacher cache's header says.</summary>
public sealed record DistillationCacheHeader(int TopK, float Temperature, int VocabSize, byte[] VocabularyHash, int SeqLen, long Sequences, long Positions, JsonObject Options);

/// <summary>Writes a teacher cache under a temporary name; <see cref="Commit"/> writes the index and renames it.
/// Disposing without a commit deletes the temporary file.</summary>
public sealed class DistillationCacheWriter : IDisposable
{
    readonly PendingFile _file;
    readonly int _topK, _vocab, _seqLen;
    readonly float _temperature;
    readonly byte[] _vocabularyHash, _options;
    readonly List<(UInt128 Key, long Offset, int Positions, uint Checksum)> _index = [];
    readonly HashSet<UInt128> _keys = [];
    byte[] _buffer = [];
    long _recordBytes, _positions;

    public string Path => _file.Path;
    public long Sequences => _index.Count;
    public long Positions => _positions;

    public DistillationCacheWriter(string path, int topK, float temperature, int vocab, byte[] vocabularyHash, int seqLen, JsonObject options)
    {
        DistillationCache.RequireLittleEndian();
        if (topK < 1 || topK > vocab) throw new ArgumentOutOfRangeException(nameof(topK), $"top-k {topK} must be between 1 and the vocabulary {vocab}");
        if (!(temperature > 0) || !float.IsFinite(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature {temperature} must be positive");
        if (vocabularyHash.Length != 32) throw new ArgumentException("a vocabulary hash is 32 bytes");
        _topK = topK; _temperature = temperature; _vocab = vocab; _vocabularyHash = vocabularyHash; _seqLen = seqLen;
        _options = Encoding.UTF8.GetBytes(options.ToJsonString());
        if (_options.Length > DistillationCache.MaxOptionsBytes) throw new ArgumentException($"the cache's options take {_options.Length} bytes; at most {DistillationCache.MaxOptionsBytes}");
        _file = AtomicFile.Begin(path);
        _file.Stream.Write(new byte[DistillationCache.HeaderBytes]); // written again by Commit
        _file.Stream.Write(_options);
    }

    /// <summary>Whether a row with this key was added (a row the trainer draws twice is cached once).</summary>
    public bool Contains(UInt128 key) => _keys.Contains(key);

    /// <summary>Add a row's record: ids [P, K], log-probs [P, K] and log rest masses [P] of its P target positions.</summary>
    public void Add(UInt128 key, int positions, ReadOnlySpan<int> ids, ReadOnlySpan<float> logProbs, ReadOnlySpan<float> logRest)
    {
        if (positions < 1 || positions > _seqLen) throw new ArgumentOutOfRangeException(nameof(positions), $"{positions} target positions in a row of {_seqLen}");
        long cells = (long)positions * _topK;
        if (ids.Length < cells || logProbs.Length < cells || logRest.Length < positions) throw new ArgumentException("record arrays shorter than the positions");
        if (!_keys.Add(key)) throw new ArgumentException("a row with this key is already in the cache");
        int bytes = checked((int)DistillationCache.RecordBytes(positions, _topK));
        if (_buffer.Length < bytes) _buffer = new byte[bytes];
        var record = _buffer.AsSpan(0, bytes);
        MemoryMarshal.AsBytes(ids[..(int)cells]).CopyTo(record);
        MemoryMarshal.AsBytes(logProbs[..(int)cells]).CopyTo(record[(int)(cells * 4)..]);
        MemoryMarshal.AsBytes(logRest[..positions]).CopyTo(record[(int)(cells * 8)..]);
        _file.Stream.Write(record);
        _index.Add((key, _recordBytes, positions, DistillationCache.Checksum(record)));
        _recordBytes = checked(_recordBytes + bytes);
        _positions += positions;
    }

    /// <summary>Write the index and the header, and move the file to its name.</summary>
    public void Commit()
    {
        _index.Sort((a, b) => a.Key.CompareTo(b.Key));
        var index = new byte[checked(_index.Count * DistillationCache.IndexEntryBytes)];
        for (int i = 0; i < _index.Count; i++)
        {
            var e = index.AsSpan(i * DistillationCache.IndexEntryBytes, DistillationCache.IndexEntryBytes);
            BinaryPrimitives.WriteUInt128BigEndian(e, _index[i].Key);
            BinaryPrimitives.WriteInt64LittleEndian(e[16..], _index[i].Offset);
            BinaryPrimitives.WriteInt32LittleEndian(e[24..], _index[i].Positions);
            BinaryPrimitives.WriteUInt32LittleEndian(e[28..], _index[i].Checksum);
        }
        _file.Stream.Write(index);
        long recordsOffset = DistillationCache.HeaderBytes + _options.Length;
        var header = new byte[DistillationCache.HeaderBytes];
        var h = header.AsSpan();
        DistillationCache.Magic.CopyTo(h);
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], DistillationCache.Version);
        BinaryPrimitives.WriteInt32LittleEndian(h[12..], DistillationCache.HeaderBytes);
        BinaryPrimitives.WriteInt32LittleEndian(h[16..], _topK);
        BinaryPrimitives.WriteSingleLittleEndian(h[20..], _temperature);
        BinaryPrimitives.WriteInt32LittleEndian(h[24..], _vocab);
        BinaryPrimitives.WriteInt32LittleEndian(h[28..], _seqLen);
        BinaryPrimitives.WriteInt64LittleEndian(h[32..], _index.Count);
        BinaryPrimitives.WriteInt64LittleEndian(h[40..], _positions);
        BinaryPrimitives.WriteInt64LittleEndian(h[48..], _options.Length);
        BinaryPrimitives.WriteInt64LittleEndian(h[56..], recordsOffset);
        BinaryPrimitives.WriteInt64LittleEndian(h[64..], _recordBytes);
        BinaryPrimitives.WriteInt64LittleEndian(h[72..], recordsOffset + _recordBytes);
        _vocabularyHash.CopyTo(h[80..]);
        DistillationCacheFile.Integrity(header, _options, index).CopyTo(h[112..]);
        _file.Stream.Seek(0, SeekOrigin.Begin);
        _file.Stream.Write(header);
        _file.Commit();
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>
/// A teacher cache opened for reading: the header, options and index are read and checked when it opens (the index,
/// 32 bytes a row, is the only part held in memory); records are read from the file when asked for.
/// </summary>
public sealed class DistillationCacheFile : IDisposable
{
    readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;
    readonly UInt128[] _keys;       // [sequences], sorted
    readonly long[] _offsets;       // [sequences], from the records offset
    readonly int[] _positions;      // [sequences]
    readonly uint[] _checksums;     // [sequences]
    readonly long _recordsOffset;
    byte[] _buffer = [];

    public string Path { get; }
    public DistillationCacheHeader Header { get; }
    public long FileBytes { get; }

    DistillationCacheFile(string path, Microsoft.Win32.SafeHandles.SafeFileHandle handle, DistillationCacheHeader header, long fileBytes, long recordsOffset,
        UInt128[] keys, long[] offsets, int[] positions, uint[] checksums)
    {
        Path = path; _handle = handle; Header = header; FileBytes = fileBytes; _recordsOffset = recordsOffset;
        _keys = keys; _offsets = offsets; _positions = positions; _checksums = checksums;
    }

    const string Rebuild = "rebuild it with hone distill cache";

    static DataFormatException Bad(string path, string message) => new(path, 0, message);

    internal static byte[] Integrity(ReadOnlySpan<byte> header, ReadOnlySpan<byte> options, ReadOnlySpan<byte> index)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(header[..112]);
        sha.AppendData(options);
        sha.AppendData(index);
        return sha.GetHashAndReset()[..16];
    }

    public static DistillationCacheFile Open(string path)
    {
        DistillationCache.RequireLittleEndian();
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such teacher cache (make one with hone distill cache)", path);
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try { return Read(path, handle); }
        catch { handle.Dispose(); throw; }
    }

    static DistillationCacheFile Read(string path, Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        long length = RandomAccess.GetLength(handle);
        if (length < DistillationCache.HeaderBytes)
            throw Bad(path, $"not a Hone teacher cache: {length} bytes, shorter than the {DistillationCache.HeaderBytes}-byte header; {Rebuild}");
        var header = new byte[DistillationCache.HeaderBytes];
        ReadExactly(path, handle, header, 0);
        var h = header.AsSpan();
        if (!h[..8].SequenceEqual(DistillationCache.Magic))
            throw Bad(path, $"not a Hone teacher cache (it does not start with \"HONE-KDC\"); make one with hone distill cache");
        int version = BinaryPrimitives.ReadInt32LittleEndian(h[8..]);
        if (version != DistillationCache.Version)
            throw Bad(path, $"teacher cache version {version}; this Hone reads version {DistillationCache.Version}: {Rebuild}");
        int headerBytes = BinaryPrimitives.ReadInt32LittleEndian(h[12..]), topK = BinaryPrimitives.ReadInt32LittleEndian(h[16..]);
        float temperature = BinaryPrimitives.ReadSingleLittleEndian(h[20..]);
        int vocab = BinaryPrimitives.ReadInt32LittleEndian(h[24..]), seqLen = BinaryPrimitives.ReadInt32LittleEndian(h[28..]);
        long sequences = BinaryPrimitives.ReadInt64LittleEndian(h[32..]), positions = BinaryPrimitives.ReadInt64LittleEndian(h[40..]);
        long optionsBytes = BinaryPrimitives.ReadInt64LittleEndian(h[48..]), recordsOffset = BinaryPrimitives.ReadInt64LittleEndian(h[56..]);
        long recordBytes = BinaryPrimitives.ReadInt64LittleEndian(h[64..]), indexOffset = BinaryPrimitives.ReadInt64LittleEndian(h[72..]);
        string? wrong = headerBytes != DistillationCache.HeaderBytes ? $"header size {headerBytes}, expected {DistillationCache.HeaderBytes}"
            : vocab < 1 ? $"vocabulary size {vocab}"
            : topK < 1 || topK > vocab ? $"top-k {topK} for a vocabulary of {vocab}"
            : !(temperature > 0) || !float.IsFinite(temperature) ? $"temperature {temperature}"
            : seqLen < 1 ? $"seq_len {seqLen}"
            : sequences < 0 || sequences > (length - DistillationCache.HeaderBytes) / DistillationCache.IndexEntryBytes
              || sequences > Array.MaxLength / DistillationCache.IndexEntryBytes ? $"{sequences} sequences in a file of {length} bytes"
            : positions < 0 || positions / seqLen > sequences ? $"{positions} positions in {sequences} sequences of {seqLen}"
            : optionsBytes < 0 || optionsBytes > DistillationCache.MaxOptionsBytes ? $"options of {optionsBytes} bytes"
            : recordsOffset != DistillationCache.HeaderBytes + optionsBytes ? $"records at byte {recordsOffset}, expected {DistillationCache.HeaderBytes + optionsBytes}"
            : recordBytes < 0 || recordBytes > length ? $"records of {recordBytes} bytes in a file of {length}"
            : indexOffset != recordsOffset + recordBytes ? $"index at byte {indexOffset}, expected {recordsOffset + recordBytes}"
            : null;
        if (wrong != null) throw Bad(path, $"damaged teacher cache header ({wrong}); {Rebuild}");
        long expected = indexOffset + sequences * DistillationCache.IndexEntryBytes; // each term bounded by the file's length above
        if (length < expected) throw Bad(path, $"truncated teacher cache: {length} bytes, its header describes {expected}; {Rebuild}");
        if (length > expected) throw Bad(path, $"damaged teacher cache: {length - expected} bytes past the end its header describes ({expected}); {Rebuild}");
        var options = new byte[optionsBytes];
        ReadExactly(path, handle, options, DistillationCache.HeaderBytes);
        var index = new byte[sequences * DistillationCache.IndexEntryBytes];
        ReadExactly(path, handle, index, indexOffset);
        if (!Integrity(header, options, index).AsSpan().SequenceEqual(h[112..128]))
            throw Bad(path, $"damaged teacher cache: the header, options or index do not match their checksum; {Rebuild}");
        JsonObject json;
        try { json = JsonNode.Parse(options) as JsonObject ?? throw new FormatException("not an object"); }
        catch (Exception e) when (e is System.Text.Json.JsonException or FormatException) { throw Bad(path, $"damaged teacher cache options ({e.Message}); {Rebuild}"); }
        int n = (int)sequences;
        var keys = new UInt128[n];
        var offsets = new long[n];
        var counts = new int[n];
        var checksums = new uint[n];
        long total = 0, totalPositions = 0;
        for (int i = 0; i < n; i++)
        {
            var e = index.AsSpan(i * DistillationCache.IndexEntryBytes, DistillationCache.IndexEntryBytes);
            keys[i] = BinaryPrimitives.ReadUInt128BigEndian(e);
            offsets[i] = BinaryPrimitives.ReadInt64LittleEndian(e[16..]);
            counts[i] = BinaryPrimitives.ReadInt32LittleEndian(e[24..]);
            checksums[i] = BinaryPrimitives.ReadUInt32LittleEndian(e[28..]);
            if (i > 0 && keys[i] <= keys[i - 1]) throw Bad(path, $"damaged teacher cache index: entry {i} is out of order; {Rebuild}");
            if (counts[i] < 1 || counts[i] > seqLen) throw Bad(path, $"damaged teacher cache index: entry {i} has {counts[i]} positions in rows of {seqLen}; {Rebuild}");
            long bytes = DistillationCache.RecordBytes(counts[i], topK);
            if (offsets[i] < 0 || offsets[i] > recordBytes - bytes)
                throw Bad(path, $"damaged teacher cache index: entry {i}'s record [{offsets[i]}, +{bytes}) lies outside the {recordBytes} bytes of records; {Rebuild}");
            total += bytes; totalPositions += counts[i];
        }
        if (total != recordBytes || totalPositions != positions)
            throw Bad(path, $"damaged teacher cache index: its records add up to {total} bytes and {totalPositions} positions, the header says {recordBytes} and {positions}; {Rebuild}");
        var vocabularyHash = h[80..112].ToArray();
        return new DistillationCacheFile(path, handle, new DistillationCacheHeader(topK, temperature, vocab, vocabularyHash, seqLen, sequences, positions, json),
            length, recordsOffset, keys, offsets, counts, checksums);
    }

    static void ReadExactly(string path, Microsoft.Win32.SafeHandles.SafeFileHandle handle, Span<byte> into, long offset)
    {
        while (into.Length > 0)
        {
            int got = RandomAccess.Read(handle, into, offset);
            if (got <= 0) throw Bad(path, $"truncated teacher cache: it ends before byte {offset + into.Length}; {Rebuild}");
            into = into[got..];
            offset += got;
        }
    }

    /// <summary>The index entry of the row with this key, or −1.</summary>
    public int Find(UInt128 key) => Array.BinarySearch(_keys, key) is int i and >= 0 ? i : -1;

    /// <summary>Target positions in entry <paramref name="entry"/>'s record.</summary>
    public int PositionsOf(int entry) => _positions[entry];

    /// <summary>
    /// Read entry <paramref name="entry"/>'s record into ids [P, K], log-probs [P, K] and log rest masses [P], checking
    /// its checksum, that every id is in the vocabulary and that no log-probability is NaN or above 0.
    /// </summary>
    public void Read(int entry, Span<int> ids, Span<float> logProbs, Span<float> logRest)
    {
        int p = _positions[entry], k = Header.TopK;
        int bytes = checked((int)DistillationCache.RecordBytes(p, k));
        if (_buffer.Length < bytes) _buffer = new byte[bytes];
        var record = _buffer.AsSpan(0, bytes);
        ReadExactly(Path, _handle, record, _recordsOffset + _offsets[entry]);
        if (DistillationCache.Checksum(record) != _checksums[entry])
            throw Bad(Path, $"damaged teacher cache: the record at byte {_recordsOffset + _offsets[entry]} does not match its checksum; {Rebuild}");
        int cells = p * k;
        var storedIds = MemoryMarshal.Cast<byte, int>(record[..(cells * 4)]);
        var storedLogProbs = MemoryMarshal.Cast<byte, float>(record.Slice(cells * 4, cells * 4));
        var storedRest = MemoryMarshal.Cast<byte, float>(record.Slice(cells * 8, p * 4));
        foreach (int id in storedIds)
            if ((uint)id >= (uint)Header.VocabSize)
                throw Bad(Path, $"damaged teacher cache: the record at byte {_recordsOffset + _offsets[entry]} holds id {id}, outside the vocabulary of {Header.VocabSize}; {Rebuild}");
        if ((FirstBad(storedLogProbs) ?? FirstBad(storedRest)) is float bad)
            throw Bad(Path, $"damaged teacher cache: the record at byte {_recordsOffset + _offsets[entry]} holds log-probability {bad}; {Rebuild}");
        storedIds.CopyTo(ids);
        storedLogProbs.CopyTo(logProbs);
        storedRest.CopyTo(logRest);
    }

    /// <summary>A value that is no log-probability (NaN, or above 0 beyond rounding), if any.</summary>
    static float? FirstBad(ReadOnlySpan<float> values)
    {
        foreach (float x in values) if (float.IsNaN(x) || x > 1e-3f) return x;
        return null;
    }

    public void Dispose() => _handle.Dispose();
}
