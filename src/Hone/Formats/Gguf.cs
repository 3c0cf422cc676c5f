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
        byte b => b, sbyte b => b, ushort u => u, short s => s, uint u => u, int i => i, ulong u => checked((long)u), long l => l,
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
    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => Type.Traits().BytesFor(ElementCount);
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

        var metadata = new List<KeyValuePair<string, GgufValue>>((int)kvCount);
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
            if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
                throw new ModelFormatException(path, $"alignment {alignment} is not a power of two", "general.alignment");
        }

        var tensors = new List<GgufTensorInfo>((int)tensorCount);
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
            if (offset < 0 || offset % alignment != 0)
                throw new ModelFormatException(path, $"data offset {offset} is not aligned to {alignment}", $"tensor '{name}'");
            tensors.Add(info);
        }

        long dataOffset = (r.Position + alignment - 1) / alignment * alignment;
        long dataLength = file.Length - dataOffset;
        foreach (var t in tensors)
        {
            long elements = 1;
            foreach (var d in t.Dimensions) elements = checked(elements * d);
            long bytes = t.Type.Traits().BytesFor(elements);
            if (t.Offset + bytes > dataLength)
                throw new ModelFormatException(path,
                    $"data [{t.Offset}, {t.Offset + bytes}) runs past the end of the data section ({Math.Max(0, dataLength)} bytes): file truncated or offset corrupt",
                    $"tensor '{t.Name}'");
        }
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
        if (count < 0 || count > r.Remaining) throw new ModelFormatException(path, $"array length {count} is impossible with {r.Remaining} bytes left", key);
        var items = new List<object>((int)Math.Min(count, 1 << 20));
        for (long i = 0; i < count; i++) items.Add(ReadValue(ref r, v1, elementType, key, path, depth + 1).Value);
        return new GgufArray((GgufValueType)elementType, items);
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
