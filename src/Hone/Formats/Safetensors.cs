using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Hone.Tensors;

namespace Hone.Formats;

/// <summary>A tensor as a safetensors header describes it.</summary>
/// <param name="DType">the header's dtype string (F32, BF16, ...)</param>
/// <param name="Type">our tensor type, when the dtype maps to one</param>
/// <param name="Shape">row-major shape, outermost first</param>
/// <param name="Begin">byte offset of the data, from the start of the data section</param>
public sealed record SafetensorsTensorInfo(string Name, string DType, TensorType? Type, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b)); // bounded when the header was parsed
}

/// <summary>
/// One .safetensors file, memory-mapped: an 8-byte little-endian header length, a JSON header
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the data.
/// Validated on open: header bounds, dtypes, that every extent matches its shape and lies inside the file.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    const long MaxHeaderBytes = 100L << 20;
    readonly MappedFile _file;
    readonly Dictionary<string, SafetensorsTensorInfo> _byName;

    public string Path => _file.Path;
    public long DataOffset { get; }
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Bytes per element of each dtype the format defines (sub-byte and exotic ones are refused).</summary>
    static readonly Dictionary<string, (int Bytes, TensorType? Type)> DTypes = new()
    {
        ["F32"] = (4, TensorType.F32), ["F16"] = (2, TensorType.F16), ["BF16"] = (2, TensorType.BF16),
        ["F64"] = (8, TensorType.F64), ["I64"] = (8, TensorType.I64), ["I32"] = (4, TensorType.I32),
        ["I16"] = (2, TensorType.I16), ["I8"] = (1, TensorType.I8), ["U8"] = (1, null), ["BOOL"] = (1, null),
        ["U16"] = (2, null), ["U32"] = (4, null), ["U64"] = (8, null), ["F8_E4M3"] = (1, null), ["F8_E5M2"] = (1, null),
    };

    public static string DTypeName(TensorType type) => type switch
    {
        TensorType.F32 => "F32", TensorType.F16 => "F16", TensorType.BF16 => "BF16",
        _ => throw new ArgumentException($"safetensors cannot hold {type.Name()} tensors (only F32, F16, BF16 are written)"),
    };

    SafetensorsFile(MappedFile file, long dataOffset, List<SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        _file = file; DataOffset = dataOffset; Tensors = tensors; Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public static SafetensorsFile Open(string path)
    {
        var file = new MappedFile(path);
        try { return Parse(file); }
        catch { file.Dispose(); throw; }
    }

    static SafetensorsFile Parse(MappedFile file)
    {
        string path = file.Path;
        if (file.Length < 8) throw new ModelFormatException(path, $"file is truncated: {file.Length} bytes, a safetensors file starts with an 8-byte header length");
        ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(file.Pointer, 8));
        if (declared < 2 || declared > MaxHeaderBytes || (long)declared > file.Length - 8)
            throw new ModelFormatException(path, $"header length {declared} is impossible for a file of {file.Length} bytes (truncated or not safetensors)");
        long headerLength = (long)declared;
        long dataOffset = 8 + headerLength;
        long dataLength = file.Length - dataOffset;
        var header = new ReadOnlySpan<byte>(file.Pointer + 8, (int)headerLength).ToArray();
        StrictJson.CheckUtf8(header, path, 8, "the header");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new ModelFormatException(path, $"header is not valid JSON: {e.Message}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "header is not a JSON object");
            StrictJson.RejectDuplicateKeys(doc.RootElement, path, "");
            var tensors = new List<SafetensorsTensorInfo>();
            var metadata = new Dictionary<string, string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors.Add(ParseTensor(path, prop.Name, prop.Value, dataLength));
            }
            CheckCoverage(path, tensors, dataLength);
            return new SafetensorsFile(file, dataOffset, tensors, metadata);
        }
    }

    /// <summary>As the safetensors library validates: taken in offset order, each tensor starts where the previous one
    /// ended, and the last ends at the end of the file; no byte is shared, skipped or left over.</summary>
    static void CheckCoverage(string path, List<SafetensorsTensorInfo> tensors, long dataLength)
    {
        long position = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var t in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.Begin < position)
                throw new ModelFormatException(path, $"data [{t.Begin}, {t.End}) overlaps tensor '{previous!.Name}' [{previous.Begin}, {previous.End})", $"tensor '{t.Name}'");
            if (t.Begin > position)
                throw new ModelFormatException(path, $"data starts at {t.Begin} but the tensors before it end at {position}: bytes [{position}, {t.Begin}) belong to no tensor (safetensors requires contiguous data)", $"tensor '{t.Name}'");
            position = t.End;
            previous = t;
        }
        if (position != dataLength)
            throw new ModelFormatException(path, $"{dataLength - position} bytes follow the last tensor's data (the data section holds {dataLength} bytes, the tensors {position}): safetensors requires the tensors to cover the data exactly");
    }

    static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength)
    {
        string item = $"tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "entry is not an object", item);
        if (!e.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new ModelFormatException(path, "missing dtype", item);
        string dtype = dtypeElement.GetString()!;
        if (!DTypes.TryGetValue(dtype, out var dt)) throw new ModelFormatException(path, $"unknown dtype '{dtype}'", item);
        if (!e.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, "missing shape", item);
        var shape = new List<long>();
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new ModelFormatException(path, $"shape entry {d.GetRawText()} is not a non-negative integer", item);
            shape.Add(v);
        }
        if (!e.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw new ModelFormatException(path, $"data_offsets must be [begin, end] as two integers, found {(offsets.ValueKind == JsonValueKind.Undefined ? "nothing" : offsets.GetRawText())}", item);
        long expected = 1;
        foreach (var d in shape)
            if (d != 0 && expected > long.MaxValue / d) { expected = -1; break; }
            else expected *= d;
        if (expected < 0 || expected > long.MaxValue / dt.Bytes)
            throw new ModelFormatException(path, $"shape [{string.Join(", ", shape)}] of {dtype} needs more than 2^63 bytes (corrupt shape)", item);
        expected *= dt.Bytes;
        if (begin < 0 || end < begin) throw new ModelFormatException(path, $"data_offsets [{begin}, {end}] are invalid", item);
        if (end - begin != expected)
            throw new ModelFormatException(path, $"shape [{string.Join(", ", shape)}] of {dtype} needs {expected} bytes, data_offsets give {end - begin}", item);
        if (end > dataLength)
            throw new ModelFormatException(path, $"data [{begin}, {end}) runs past the end of the data section ({dataLength} bytes): file truncated", item);
        return new SafetensorsTensorInfo(name, dtype, dt.Type, shape.ToArray(), begin, end);
    }

    public bool TryGetTensor(string name, out SafetensorsTensorInfo info) => _byName.TryGetValue(name, out info!);

    public byte* TensorData(SafetensorsTensorInfo t) => _file.Pointer + DataOffset + t.Begin;

    public void Dispose() => _file.Dispose();
}

/// <summary>Writes a .safetensors file (tensors in the order given, header padded to 8 bytes), atomically.</summary>
public sealed class SafetensorsWriter
{
    public sealed record Tensor(string Name, TensorType Type, long[] Shape, Action<Stream> WriteData)
    {
        public long ByteLength => Shape.Aggregate(1L, (a, b) => a * b) * Type.Traits().BlockBytes;
    }

    readonly List<Tensor> _tensors = new();
    readonly Dictionary<string, string> _metadata = new();

    public void SetMetadata(string key, string value) => _metadata[key] = value;

    public void Add(Tensor tensor)
    {
        SafetensorsFile.DTypeName(tensor.Type);
        if (_tensors.Any(t => t.Name == tensor.Name)) throw new ArgumentException($"tensor '{tensor.Name}' added twice");
        _tensors.Add(tensor);
    }

    public void Write(string path)
    {
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (_metadata.Count > 0)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in _metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in _tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", SafetensorsFile.DTypeName(t.Type));
                json.WriteStartArray("shape");
                foreach (var d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.ByteLength;
            }
            json.WriteEndObject();
        }
        var headerBytes = header.ToArray().ToList();
        while (headerBytes.Count % 8 != 0) headerBytes.Add((byte)' ');
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Count);
            stream.Write(length);
            stream.Write(headerBytes.ToArray());
            foreach (var t in _tensors)
            {
                long before = stream.Position;
                t.WriteData(stream);
                if (stream.Position - before != t.ByteLength)
                    throw new InvalidOperationException($"tensor '{t.Name}': wrote {stream.Position - before} bytes, expected {t.ByteLength}");
            }
        });
    }
}
