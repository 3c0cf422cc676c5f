using System.Text;
using Hone.Tensors;

namespace Hone.Formats;

/// <summary>GGUF metadata value types, numbered as the GGUF spec numbers them.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>An array metadata value: element type and the elements (boxed scalars, strings, or nested arrays).</summary>
public sealed record GgufArray(GgufValueType ElementType, IReadOnlyList<object> Items);

/// <summary>One metadata value. Scalars are stored as their CLR type (byte, sbyte, ushort, short, uint, int, float,
/// bool, string, ulong, long, double); arrays as <see cref="GgufArray"/>.</summary>
public sealed record GgufValue(GgufValueType Type, object Value)
{
    public static GgufValue Of(string s) => new(GgufValueType.String, s);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Strings(IReadOnlyList<string> items) => new(GgufValueType.Array, new GgufArray(GgufValueType.String, items.Cast<object>().ToList()));
    public static GgufValue Floats(IReadOnlyList<float> items) => new(GgufValueType.Array, new GgufArray(GgufValueType.Float32, items.Cast<object>().ToList()));
    public static GgufValue Ints(IReadOnlyList<int> items) => new(GgufValueType.Array, new GgufArray(GgufValueType.Int32, items.Cast<object>().ToList()));

    /// <summary>Any integer type as long (GGUF writers differ in which width they use for the same key).</summary>
    public long AsInteger(string file, string key) => Value switch
    {
        byte b => b, sbyte b => b, ushort u => u, short s => s, uint u => u, int i => i, long l => l,
        ulong u => u <= long.MaxValue ? (long)u : throw new ModelFormatException(file, $"value {u} is out of range", key),
        _ => throw new ModelFormatException(file, $"expected an integer, found {Type}", key),
    };

    public double AsNumber(string file, string key) => Value switch
    {
        float f => f, double d => d, _ => AsInteger(file, key),
    };

    public string AsString(string file, string key) =>
        Value as string ?? throw new ModelFormatException(file, $"expected a string, found {Type}", key);

    public GgufArray AsArray(string file, string key) =>
        Value as GgufArray ?? throw new ModelFormatException(file, $"expected an array, found {Type}", key);

    public override string ToString() => Value switch
    {
        GgufArray a => $"[{a.ElementType} × {a.Items.Count}]",
        string s => s.Length > 80 ? $"\"{s[..77]}...\"" : $"\"{s}\"",
        bool b => b ? "true" : "false",
        _ => Convert.ToString(Value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };
}

/// <summary>A tensor as a GGUF file describes it.</summary>
/// <param name="Dimensions">ggml order: Dimensions[0] is the fastest-varying (the input dimension of a weight)</param>
/// <param name="Offset">byte offset from the start of the data section</param>
public sealed record GgufTensorInfo(string Name, TensorType Type, long[] Dimensions, long Offset)
{
    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => checked(a * b)); // bounded when the file was parsed
    public long ByteLength => checked(ElementCount / Type.Traits().BlockSize * Type.Traits().BlockBytes);

    /// <summary>Bytes of a tensor of this shape and type, or null when the count does not fit in 63 bits.</summary>
    internal static long? TryByteLength(long[] dimensions, TensorType type)
    {
        long elements = 1;
        foreach (var d in dimensions)
        {
            if (d < 0 || (d > 0 && elements > long.MaxValue / d)) return null;
            elements *= d;
        }
        var traits = type.Traits();
        long blocks = elements / traits.BlockSize;
        return blocks > long.MaxValue / traits.BlockBytes ? null : blocks * traits.BlockBytes;
    }
    /// <summary>Row-major shape, outermost first (PyTorch order): [out, in] for a weight.</summary>
    public long[] Shape => Dimensions.Reverse().ToArray();
}

/// <summary>
/// A GGUF file (versions 1, 2 and 3), memory-mapped. Every field is validated while parsing: counts and lengths
/// against the bytes left, value and tensor types against the known tables, tensor extents against the data section.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const int DefaultAlignment = 32;
    /// <summary>llama.cpp reads general.alignment as a u32: the largest power of two it can hold.</summary>
    public const long MaxAlignment = 1L << 31;

    readonly MappedFile _file;
    readonly Dictionary<string, GgufValue> _metadata;
    readonly Dictionary<string, GgufTensorInfo> _byName;

    public string Path => _file.Path;
    public uint Version { get; }
    public long Alignment { get; }
    public long DataOffset { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> MetadataInOrder { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata => _metadata;
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    GgufFile(MappedFile file, uint version, List<KeyValuePair<string, GgufValue>> metadata, List<GgufTensorInfo> tensors, long alignment, long dataOffset)
    {
        _file = file; Version = version; MetadataInOrder = metadata; Tensors = tensors; Alignment = alignment; DataOffset = dataOffset;
        _metadata = metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public static GgufFile Open(string path)
    {
        var file = new MappedFile(path);
        try { return Parse(file); }
        catch { file.Dispose(); throw; }
    }

    static GgufFile Parse(MappedFile file)
    {
        string path = file.Path;
        var r = new BinaryCursor(file.Pointer, file.Length, path);
        uint magic = r.U32("the magic number");
        if (magic != Magic)
            throw new ModelFormatException(path, $"not a GGUF file: magic is 0x{magic:X8}, expected 0x{Magic:X8} (\"GGUF\")");
        uint version = r.U32("the version");
        if (version is < 1 or > 3) throw new ModelFormatException(path, $"unsupported GGUF version {version} (supported: 1, 2, 3)");
        bool v1 = version == 1;
        long tensorCount = v1 ? r.U32("the tensor count") : r.I64("the tensor count");
        long kvCount = v1 ? r.U32("the metadata count") : r.I64("the metadata count");
        // Every tensor info and key/value needs at least a few bytes: reject counts that cannot fit.
        if (tensorCount < 0 || tensorCount > r.Remaining / 8) throw new ModelFormatException(path, $"tensor count {tensorCount} is impossible for a file of {file.Length} bytes (truncated or corrupt)");
        if (kvCount < 0 || kvCount > r.Remaining / 8) throw new ModelFormatException(path, $"metadata count {kvCount} is impossible for a file of {file.Length} bytes (truncated or corrupt)");

        var metadata = new List<KeyValuePair<string, GgufValue>>((int)Math.Min(kvCount, 1 << 16));
        var seenKeys = new HashSet<string>();
        for (long i = 0; i < kvCount; i++)
        {
            string key = ReadString(ref r, v1, $"metadata key #{i}");
            if (!seenKeys.Add(key)) throw new ModelFormatException(path, "duplicate metadata key", key);
            uint type = r.U32($"the type of metadata '{key}'");
            metadata.Add(new(key, ReadValue(ref r, v1, type, key, path, 0)));
        }

        long alignment = DefaultAlignment;
        var alignValue = metadata.FirstOrDefault(kv => kv.Key == "general.alignment").Value;
        if (alignValue != null)
        {
            alignment = alignValue.AsInteger(path, "general.alignment");
            if (alignment <= 0 || alignment > MaxAlignment || (alignment & (alignment - 1)) != 0)
                throw new ModelFormatException(path, $"alignment {alignment} is not a power of two from 1 to 2^31", "general.alignment");
        }

        var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 1 << 16));
        var seenNames = new HashSet<string>();
        for (long i = 0; i < tensorCount; i++)
        {
            string name = ReadString(ref r, v1, $"tensor name #{i}");
            if (!seenNames.Add(name)) throw new ModelFormatException(path, "duplicate tensor name", $"tensor '{name}'");
            uint dims = r.U32($"the dimension count of tensor '{name}'");
            if (dims is 0 or > 4) throw new ModelFormatException(path, $"has {dims} dimensions (GGUF allows 1 to 4)", $"tensor '{name}'");
            var ne = new long[dims];
            for (int d = 0; d < dims; d++)
            {
                ne[d] = v1 ? r.U32($"dimension {d} of tensor '{name}'") : r.I64($"dimension {d} of tensor '{name}'");
                if (ne[d] <= 0) throw new ModelFormatException(path, $"dimension {d} is {ne[d]}", $"tensor '{name}'");
            }
            uint type = r.U32($"the type of tensor '{name}'");
            if (!TensorTypes.IsKnown(type)) throw new ModelFormatException(path, $"unknown ggml tensor type {type}", $"tensor '{name}'");
            long offset = r.I64($"the data offset of tensor '{name}'");
            var info = new GgufTensorInfo(name, (TensorType)type, ne, offset);
            var traits = info.Type.Traits();
            if (ne[0] % traits.BlockSize != 0)
                throw new ModelFormatException(path, $"row length {ne[0]} is not a multiple of the {traits.Name} block size {traits.BlockSize}", $"tensor '{name}'");
            if (GgufTensorInfo.TryByteLength(ne, info.Type) == null)
                throw new ModelFormatException(path, $"dimensions [{string.Join(", ", ne)}] of {traits.Name} need more than 2^63 bytes (corrupt dimensions)", $"tensor '{name}'");
            if (offset < 0 || offset % alignment != 0)
                throw new ModelFormatException(path, $"data offset {offset} is not aligned to {alignment}", $"tensor '{name}'");
            tensors.Add(info);
        }

        long dataOffset = checked((r.Position + alignment - 1) / alignment * alignment);
        long dataLength = file.Length - dataOffset;
        // As llama.cpp's gguf.cpp: every tensor lies inside the data section, and the tensors follow each other in the
        // order of their infos, each padded to the alignment. Without tensors there is no data section to check.
        long expectedOffset = 0;
        GgufTensorInfo? previous = null;
        foreach (var t in tensors)
        {
            long bytes = t.ByteLength;
            if (bytes > dataLength || t.Offset > dataLength - bytes)
                throw new ModelFormatException(path,
                    $"data [{t.Offset}, {(decimal)t.Offset + bytes}) runs past the end of the data section ({Math.Max(0, dataLength)} bytes): file truncated or offset corrupt",
                    $"tensor '{t.Name}'");
            if (t.Offset != expectedOffset)
                throw new ModelFormatException(path,
                    $"data offset {t.Offset}, expected {expectedOffset}" +
                    (previous == null ? "" : $" after tensor '{previous.Name}' ({previous.Type.Name()} [{string.Join(", ", previous.Shape)}], {previous.ByteLength} bytes)") +
                    $": tensor data must follow in the order of the tensor infos, each padded to {alignment} bytes (as llama.cpp requires); an offset or a dimension is corrupt",
                    $"tensor '{t.Name}'");
            expectedOffset = t.Offset + (bytes + alignment - 1) / alignment * alignment;
            previous = t;
        }
        if (tensors.Count > 0 && dataLength > expectedOffset)
            throw new ModelFormatException(path,
                $"{dataLength - expectedOffset} bytes follow the data of the last tensor '{tensors[^1].Name}' (data section {dataLength} bytes, " +
                $"{tensors.Count} tensors need {expectedOffset}): the tensor count is lower than the tensor infos in the file, or data was appended");
        return new GgufFile(file, version, metadata, tensors, alignment, dataOffset);
    }

    static string ReadString(ref BinaryCursor r, bool v1, string what)
    {
        long length = v1 ? r.U32($"the length of {what}") : r.I64($"the length of {what}");
        return r.Utf8(length, what); // the cursor rejects negative or overlong lengths, naming the file and offset
    }

    static GgufValue ReadValue(ref BinaryCursor r, bool v1, uint type, string key, string path, int depth)
    {
        string what = $"the value of '{key}'";
        return (GgufValueType)type switch
        {
            GgufValueType.UInt8 => new(GgufValueType.UInt8, r.U8(what)),
            GgufValueType.Int8 => new(GgufValueType.Int8, r.I8(what)),
            GgufValueType.UInt16 => new(GgufValueType.UInt16, r.U16(what)),
            GgufValueType.Int16 => new(GgufValueType.Int16, r.I16(what)),
            GgufValueType.UInt32 => new(GgufValueType.UInt32, r.U32(what)),
            GgufValueType.Int32 => new(GgufValueType.Int32, r.I32(what)),
            GgufValueType.Float32 => new(GgufValueType.Float32, r.F32(what)),
            GgufValueType.Bool => new(GgufValueType.Bool, ReadBool(ref r, what, path, key)),
            GgufValueType.String => new(GgufValueType.String, ReadString(ref r, v1, what)),
            GgufValueType.UInt64 => new(GgufValueType.UInt64, r.U64(what)),
            GgufValueType.Int64 => new(GgufValueType.Int64, r.I64(what)),
            GgufValueType.Float64 => new(GgufValueType.Float64, r.F64(what)),
            GgufValueType.Array => new(GgufValueType.Array, ReadArray(ref r, v1, key, path, depth)),
            _ => throw new ModelFormatException(path, $"unknown metadata value type {type}", key),
        };
    }

    static bool ReadBool(ref BinaryCursor r, string what, string path, string key)
    {
        byte b = r.U8(what);
        return b switch { 0 => false, 1 => true, _ => throw new ModelFormatException(path, $"boolean byte is {b}", key) };
    }

    static GgufArray ReadArray(ref BinaryCursor r, bool v1, string key, string path, int depth)
    {
        if (depth > 8) throw new ModelFormatException(path, "arrays nested too deeply", key);
        uint elementType = r.U32($"the element type of '{key}'");
        long count = v1 ? r.U32($"the length of '{key}'") : r.I64($"the length of '{key}'");
        long minimumBytes = (GgufValueType)elementType switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            GgufValueType.String => v1 ? 4 : 8,
            GgufValueType.Array => v1 ? 8 : 12,
            _ => throw new ModelFormatException(path, $"unknown array element type {elementType}", key),
        };
        if (count < 0 || count > r.Remaining / minimumBytes || count > Array.MaxLength)
            throw new ModelFormatException(path, $"array length {count} is impossible with {r.Remaining} bytes left at offset {r.Position} (file truncated or length corrupt)", key);
        string what = $"an element of '{key}'";
        // Numbers are kept unboxed (a vocabulary's scores and types are large); strings and nested arrays as objects.
        IReadOnlyList<object> items;
        switch ((GgufValueType)elementType)
        {
            case GgufValueType.UInt8: { var a = new byte[count]; for (long i = 0; i < count; i++) a[i] = r.U8(what); items = new UnboxedList<byte>(a); break; }
            case GgufValueType.Int8: { var a = new sbyte[count]; for (long i = 0; i < count; i++) a[i] = r.I8(what); items = new UnboxedList<sbyte>(a); break; }
            case GgufValueType.UInt16: { var a = new ushort[count]; for (long i = 0; i < count; i++) a[i] = r.U16(what); items = new UnboxedList<ushort>(a); break; }
            case GgufValueType.Int16: { var a = new short[count]; for (long i = 0; i < count; i++) a[i] = r.I16(what); items = new UnboxedList<short>(a); break; }
            case GgufValueType.UInt32: { var a = new uint[count]; for (long i = 0; i < count; i++) a[i] = r.U32(what); items = new UnboxedList<uint>(a); break; }
            case GgufValueType.Int32: { var a = new int[count]; for (long i = 0; i < count; i++) a[i] = r.I32(what); items = new UnboxedList<int>(a); break; }
            case GgufValueType.Float32: { var a = new float[count]; for (long i = 0; i < count; i++) a[i] = r.F32(what); items = new UnboxedList<float>(a); break; }
            case GgufValueType.UInt64: { var a = new ulong[count]; for (long i = 0; i < count; i++) a[i] = r.U64(what); items = new UnboxedList<ulong>(a); break; }
            case GgufValueType.Int64: { var a = new long[count]; for (long i = 0; i < count; i++) a[i] = r.I64(what); items = new UnboxedList<long>(a); break; }
            case GgufValueType.Float64: { var a = new double[count]; for (long i = 0; i < count; i++) a[i] = r.F64(what); items = new UnboxedList<double>(a); break; }
            case GgufValueType.Bool: { var a = new bool[count]; for (long i = 0; i < count; i++) a[i] = ReadBool(ref r, what, path, key); items = new UnboxedList<bool>(a); break; }
            default:
            {
                var list = new List<object>((int)Math.Min(count, 1 << 20));
                for (long i = 0; i < count; i++) list.Add(ReadValue(ref r, v1, elementType, key, path, depth + 1).Value);
                items = list;
                break;
            }
        }
        return new GgufArray((GgufValueType)elementType, items);
    }

    /// <summary>A read-only list of numbers that boxes an element only when it is read.</summary>
    sealed class UnboxedList<T>(T[] items) : IReadOnlyList<object> where T : struct
    {
        public object this[int index] => items[index];
        public int Count => items.Length;
        public IEnumerator<object> GetEnumerator() { foreach (var x in items) yield return x; }
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    public bool TryGetTensor(string name, out GgufTensorInfo info) => _byName.TryGetValue(name, out info!);

    /// <summary>Pointer to a tensor's first byte inside the mapping (valid while this file is open).</summary>
    public byte* TensorData(GgufTensorInfo tensor) => _file.Pointer + DataOffset + tensor.Offset;

    public GgufValue? Get(string key) => _metadata.GetValueOrDefault(key);

    public long? GetInteger(string key) => Get(key)?.AsInteger(Path, key);
    public double? GetNumber(string key) => Get(key)?.AsNumber(Path, key);
    public string? GetString(string key) => Get(key)?.AsString(Path, key);

    public long RequireInteger(string key) => GetInteger(key) ?? throw new ModelFormatException(Path, "required metadata key is missing", key);

    public void Dispose() => _file.Dispose();
}
