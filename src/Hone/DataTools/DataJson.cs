using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.DataTools;

/// <summary>JSON pieces for the tools' machine-readable summaries and for fields added to records, built by hand
/// (the core is AOT-compatible, so no reflection-based serialization).</summary>
public static class DataJson
{
    /// <summary>Writer options for files people read: non-ASCII text stays as it is (the outputs are not HTML).</summary>
    public static readonly JsonWriterOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static JsonArray Strings(IEnumerable<string> items) => new(items.Select(s => (JsonNode?)s).ToArray());

    public static JsonObject? Of(Distribution? d) => d == null ? null : new JsonObject
    {
        ["count"] = d.Count, ["min"] = d.Min, ["median"] = d.Median, ["p90"] = d.P90, ["max"] = d.Max, ["mean"] = d.Mean,
    };

    /// <summary>An enum value as a snake_case word (WritingSystem.Cjk → "cjk").</summary>
    public static string Name<T>(T value) where T : struct, Enum => JsonNamingPolicy.SnakeCaseLower.ConvertName(value.ToString());

    /// <summary>A number as JSON: shortest round-trip form; NaN and infinities (no JSON form) become null.</summary>
    public static void WriteNumber(IBufferWriter<byte> output, double? value)
    {
        if (value is not double v || !double.IsFinite(v)) { output.Write("null"u8); return; }
        var span = output.GetSpan(32);
        if (!v.TryFormat(span, out int written, "R", CultureInfo.InvariantCulture)) throw new InvalidOperationException("number formatting failed");
        output.Advance(written);
    }

    /// <summary>
    /// Write a record with fields added. When none of them is in the record yet, the original bytes are kept and the
    /// fields are spliced in before its closing brace; otherwise the record is parsed and the fields replaced (the only
    /// case where a record is re-serialized).
    /// </summary>
    public static void WriteWithFields(IBufferWriter<byte> output, ReadOnlySpan<byte> record, bool anyPresent,
        ReadOnlySpan<(JsonEncodedText Name, double? Value)> fields)
    {
        if (anyPresent)
        {
            var node = JsonNode.Parse(record)!.AsObject();
            foreach (var (name, value) in fields)
                node[name.Value] = value is double v && double.IsFinite(v) ? JsonValue.Create(v) : null;
            using var writer = new Utf8JsonWriter(output, Readable);
            node.WriteTo(writer);
            writer.Flush();
            return;
        }
        int close = record.LastIndexOf((byte)'}');
        if (close < 0) throw new ArgumentException("not a JSON object");
        output.Write(record[..close]);
        int before = record[..close].TrimEnd(" \t\r\n"u8).Length;
        bool empty = before > 0 && record[before - 1] == (byte)'{';
        for (int i = 0; i < fields.Length; i++)
        {
            if (i > 0 || !empty) output.Write(","u8);
            output.Write("\""u8);
            output.Write(fields[i].Name.EncodedUtf8Bytes);
            output.Write("\":"u8);
            WriteNumber(output, fields[i].Value);
        }
        output.Write(record[close..]);
    }
}
