using System.Text;
using Hone.Tensors;

namespace Hone.Formats;

/// <summary>
/// Writes a GGUF v3 file: metadata in insertion order, tensor infos, then tensor data aligned to 32 bytes.
/// The file is written to a temporary name and renamed into place, so a failed or interrupted write never
/// leaves a partial file under the final name.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>A tensor to write: its bytes come from <paramref name="WriteData"/>, which must write exactly
    /// the type's byte count for the shape.</summary>
    /// <param name="Shape">row-major shape, outermost first ([out, in] for a weight)</param>
    public sealed record Tensor(string Name, TensorType Type, long[] Shape, Action<Stream> WriteData)
    {
        public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
        public long ByteLength => Type.Traits().BytesFor(ElementCount);
    }

    readonly List<KeyValuePair<string, GgufValue>> _metadata = new();
    readonly List<Tensor> _tensors = new();

    public int Alignment { get; init; } = GgufFile.DefaultAlignment;

    public void Set(string key, GgufValue value)
    {
        int i = _metadata.FindIndex(kv => kv.Key == key);
        if (i >= 0) _metadata[i] = new(key, value); else _metadata.Add(new(key, value));
    }

    public void Add(Tensor tensor)
    {
        if (_tensors.Any(t => t.Name == tensor.Name)) throw new ArgumentException($"tensor '{tensor.Name}' added twice");
        var traits = tensor.Type.Traits();
        if (tensor.Shape.Length is 0 or > 4) throw new ArgumentException($"tensor '{tensor.Name}' has {tensor.Shape.Length} dimensions");
        if (tensor.Shape[^1] % traits.BlockSize != 0)
            throw new ArgumentException($"tensor '{tensor.Name}': row length {tensor.Shape[^1]} is not a multiple of the {traits.Name} block size {traits.BlockSize}");
        _tensors.Add(tensor);
    }

    public void Write(string path)
    {
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(GgufFile.Magic);
            w.Write(3u);
            w.Write((long)_tensors.Count);
            long kvCount = _metadata.Count + (Alignment != GgufFile.DefaultAlignment && !_metadata.Any(kv => kv.Key == "general.alignment") ? 1 : 0);
            w.Write(kvCount);
            foreach (var (key, value) in _metadata) { WriteString(w, key); WriteValue(w, value.Type, value.Value); }
            if (kvCount > _metadata.Count) { WriteString(w, "general.alignment"); WriteValue(w, GgufValueType.UInt32, (uint)Alignment); }
            long offset = 0;
            var offsets = new List<long>();
            foreach (var t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Shape.Length);
                for (int d = t.Shape.Length - 1; d >= 0; d--) w.Write(t.Shape[d]); // ggml order: innermost first
                w.Write((uint)t.Type);
                w.Write(offset);
                offsets.Add(offset);
                offset = Align(offset + t.ByteLength);
            }
            w.Flush();
            Pad(stream);
            long dataStart = stream.Position;
            for (int i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                long before = stream.Position;
                if (before - dataStart != offsets[i]) throw new InvalidOperationException("GGUF writer lost track of offsets");
                t.WriteData(stream);
                long written = stream.Position - before;
                if (written != t.ByteLength)
                    throw new InvalidOperationException($"tensor '{t.Name}': wrote {written} bytes, expected {t.ByteLength}");
                Pad(stream);
            }
        });
    }

    long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    void Pad(Stream s)
    {
        long pad = Align(s.Position) - s.Position;
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((long)bytes.Length);
        w.Write(bytes);
    }

    static void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        w.Write((uint)type);
        WritePayload(w, type, value);
    }

    static void WritePayload(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write(Convert.ToByte(value)); break;
            case GgufValueType.Int8: w.Write(Convert.ToSByte(value)); break;
            case GgufValueType.UInt16: w.Write(Convert.ToUInt16(value)); break;
            case GgufValueType.Int16: w.Write(Convert.ToInt16(value)); break;
            case GgufValueType.UInt32: w.Write(Convert.ToUInt32(value)); break;
            case GgufValueType.Int32: w.Write(Convert.ToInt32(value)); break;
            case GgufValueType.Float32: w.Write(Convert.ToSingle(value)); break;
            case GgufValueType.Bool: w.Write((byte)((bool)value ? 1 : 0)); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write(Convert.ToUInt64(value)); break;
            case GgufValueType.Int64: w.Write(Convert.ToInt64(value)); break;
            case GgufValueType.Float64: w.Write(Convert.ToDouble(value)); break;
            case GgufValueType.Array:
                var array = (GgufArray)value;
                w.Write((uint)array.ElementType);
                w.Write((long)array.Items.Count);
                foreach (var item in array.Items)
                {
                    if (array.ElementType == GgufValueType.Array) { var inner = (GgufArray)item; WriteValueNested(w, inner); }
                    else WritePayload(w, array.ElementType, item);
                }
                break;
            default: throw new ArgumentException($"unknown GGUF value type {type}");
        }
    }

    static void WriteValueNested(BinaryWriter w, GgufArray array) => WritePayload(w, GgufValueType.Array, array);
}
