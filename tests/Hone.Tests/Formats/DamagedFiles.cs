using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Formats;

/// <summary>Makes damaged copies of real model files: byte patches at a field, rewritten GGUF metadata or tensors,
/// rewritten safetensors headers.</summary>
static class DamagedFiles
{
    /// <summary>Where a tensor's info starts in a GGUF v3 file (its name's length field), found by the name's bytes.</summary>
    public static int TensorInfoAt(byte[] gguf, string name)
    {
        int at = gguf.AsSpan().IndexOf(Encoding.UTF8.GetBytes(name));
        Assert.True(at > 8, $"{name} not found");
        return at - 8;
    }

    /// <summary>The byte offset of a v3 tensor info's data-offset field.</summary>
    public static int OffsetFieldAt(byte[] gguf, string name)
    {
        int at = TensorInfoAt(gguf, name) + 8 + Encoding.UTF8.GetByteCount(name);
        int dims = (int)BinaryPrimitives.ReadUInt32LittleEndian(gguf.AsSpan(at));
        return at + 4 + 8 * dims + 4;
    }

    /// <summary>The byte offset of a v3 tensor info's first dimension (ggml order: the row length).</summary>
    public static int DimensionFieldAt(byte[] gguf, string name, int dimension) =>
        TensorInfoAt(gguf, name) + 8 + Encoding.UTF8.GetByteCount(name) + 4 + 8 * dimension;

    /// <summary>Write a GGUF copy with edited metadata (general.alignment is dropped first; add it back to test it);
    /// tensors are copied byte for byte unless <paramref name="replace"/> gives a new shape and data.</summary>
    public static void RewriteGguf(string source, string target, Action<List<KeyValuePair<string, GgufValue>>> edit,
        Func<GgufTensorInfo, (long[] Shape, byte[] Data)?>? replace = null)
    {
        var bytes = File.ReadAllBytes(source);
        var w = new GgufWriter();
        using (var g = GgufFile.Open(source))
        {
            var metadata = g.MetadataInOrder.Where(kv => kv.Key != "general.alignment").ToList();
            edit(metadata);
            foreach (var (k, v) in metadata) w.Set(k, v);
            foreach (var t in g.Tensors)
            {
                var data = bytes.AsSpan(checked((int)(g.DataOffset + t.Offset)), checked((int)t.ByteLength)).ToArray();
                var shape = t.Shape;
                if (replace?.Invoke(t) is { } r) (shape, data) = r;
                w.Add(new GgufWriter.Tensor(t.Name, t.Type, shape, s => s.Write(data)));
            }
        }
        w.Write(target);
    }

    public static void Set(this List<KeyValuePair<string, GgufValue>> metadata, string key, GgufValue value)
    {
        int i = metadata.FindIndex(kv => kv.Key == key);
        if (i >= 0) metadata[i] = new(key, value); else metadata.Add(new(key, value));
    }

    public static void Remove(this List<KeyValuePair<string, GgufValue>> metadata, string key) =>
        Assert.Equal(1, metadata.RemoveAll(kv => kv.Key == key));

    /// <summary>The header text of a safetensors file (padding spaces removed).</summary>
    public static string SafetensorsHeader(string file)
    {
        var bytes = File.ReadAllBytes(file);
        int n = checked((int)BinaryPrimitives.ReadInt64LittleEndian(bytes));
        return Encoding.UTF8.GetString(bytes, 8, n).TrimEnd(' ');
    }

    /// <summary>Rewrite a safetensors file with an edited header text (re-padded to 8 bytes), the same data, and
    /// optionally bytes appended after it.</summary>
    public static void RewriteSafetensors(string file, Func<string, string> editHeader, byte[]? append = null)
    {
        var bytes = File.ReadAllBytes(file);
        int n = checked((int)BinaryPrimitives.ReadInt64LittleEndian(bytes));
        var header = Encoding.UTF8.GetBytes(editHeader(Encoding.UTF8.GetString(bytes, 8, n).TrimEnd(' '))).ToList();
        while (header.Count % 8 != 0) header.Add((byte)' ');
        using var f = File.Create(file);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, header.Count);
        f.Write(length);
        f.Write(header.ToArray());
        f.Write(bytes.AsSpan(8 + n));
        if (append != null) f.Write(append);
    }

    /// <summary>Edit one tensor's entry of a safetensors header as JSON.</summary>
    public static void EditSafetensorsEntry(string file, string tensor, Action<JsonObject> edit) =>
        RewriteSafetensors(file, header =>
        {
            var root = JsonNode.Parse(header)!.AsObject();
            edit(root[tensor]!.AsObject());
            return root.ToJsonString();
        });

    /// <summary>Replace the first occurrence of <paramref name="find"/> in a text file, which must be there.</summary>
    public static void ReplaceText(string file, string find, string replace)
    {
        var text = File.ReadAllText(file);
        int at = text.IndexOf(find, StringComparison.Ordinal);
        Assert.True(at >= 0, $"'{find}' not in {file}");
        File.WriteAllText(file, text[..at] + replace + text[(at + find.Length)..]);
    }
}
