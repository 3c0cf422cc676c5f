using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Formats;

/// <summary>
/// JSON as model loaders read it (config.json, a safetensors header, a shard index): valid UTF-8 and no key twice in
/// one object. JSON itself leaves duplicates open and readers disagree on which copy wins, so a duplicate is an error
/// naming the key, never a silent choice.
/// </summary>
public static class StrictJson
{
    /// <summary>Read and parse a whole file; every problem is a <see cref="ModelFormatException"/> naming it.</summary>
    public static JsonNode? ParseFile(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ModelFormatException(path, $"cannot read: {e.Message}", inner: e); }
        return Parse(bytes, path);
    }

    /// <param name="file">named in errors</param>
    /// <param name="baseOffset">where <paramref name="utf8"/> starts in the file, for the byte offsets in errors</param>
    public static JsonNode? Parse(byte[] utf8, string file, long baseOffset = 0)
    {
        ReadOnlyMemory<byte> text = utf8;
        if (text.Span.StartsWith("\uFEFF"u8)) { text = text[3..]; baseOffset += 3; }
        CheckUtf8(text.Span, file, baseOffset);
        try
        {
            using (var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 128 }))
                RejectDuplicateKeys(doc.RootElement, file, "");
            return JsonNode.Parse(text.Span, documentOptions: new JsonDocumentOptions { MaxDepth = 128 });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(file, $"not valid JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}: {e.Message}", inner: e);
        }
    }

    /// <summary>Throw naming the byte offset of the first invalid UTF-8 sequence, if there is one.</summary>
    public static void CheckUtf8(ReadOnlySpan<byte> bytes, string file, long baseOffset, string what = "the text")
    {
        int at = FirstInvalidUtf8(bytes);
        if (at < 0) return;
        throw new ModelFormatException(file, $"{what} is not valid UTF-8 (byte 0x{bytes[at]:X2} at offset {baseOffset + at})");
    }

    /// <summary>The offset of the first byte that does not start a valid UTF-8 sequence, or −1 when all of it is valid.</summary>
    public static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return -1;
        int at = 0;
        while (at < bytes.Length && Rune.DecodeFromUtf8(bytes[at..], out _, out int consumed) == System.Buffers.OperationStatus.Done) at += consumed;
        return at;
    }

    /// <summary>Throw naming the first key that appears twice in one object (as a dotted path from the root).</summary>
    public static void RejectDuplicateKeys(JsonElement element, string file, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                HashSet<string>? seen = null;
                foreach (var property in element.EnumerateObject())
                {
                    string key = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
                    if (!(seen ??= new(StringComparer.Ordinal)).Add(property.Name))
                        throw new ModelFormatException(file, "key appears twice (JSON readers differ on which copy wins)", key);
                    RejectDuplicateKeys(property.Value, file, key);
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in element.EnumerateArray()) RejectDuplicateKeys(item, file, $"{path}[{i++}]");
                break;
        }
    }
}
