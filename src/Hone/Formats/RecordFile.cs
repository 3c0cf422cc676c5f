using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Formats;

/// <summary>The files training and evaluation data come in: JSONL, a JSON array of records, CSV (a header row, then
/// one record per row with the header's names as fields), or plain text.</summary>
public static class RecordFile
{
    /// <summary>Records of a data file with their 1-based line numbers: JSONL lines, a JSON array, or (when
    /// <paramref name="textDocuments"/>) .txt/.md documents separated by blank lines, each as {"text": ...}. A line that
    /// is not valid UTF-8, not JSON or has a key twice comes back as an error message (so callers can skip it and go
    /// on); a JSON array or text file with such a fault is an error naming the file.</summary>
    public static IEnumerable<(long Line, JsonNode? Record, string? Error)> Records(string path, bool textDocuments)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
        if (path.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
        {
            if (!textDocuments) throw new DataFormatException(path, 0, "plain text is continued-pretraining data; use --stage cpt, or JSONL conversations for sft");
            foreach (var (line, text) in TextDocuments(path)) yield return (line, new JsonObject { ["text"] = text.Take() }, null);
            yield break;
        }
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var record in CsvRecords(path)) yield return record;
            yield break;
        }
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            JsonNode? root;
            var bytes = File.ReadAllBytes(path);
            if (JsonLines.InvalidUtf8(bytes) is string bad) throw new DataFormatException(path, 0, bad);
            try { root = JsonNode.Parse(bytes, documentOptions: JsonLines.DocumentOptions); }
            catch (JsonException e) { throw new DataFormatException(path, (e.LineNumber ?? 0) + 1, $"not valid JSON: {JsonLines.Message(e)}"); }
            if (root is not JsonArray array) throw new DataFormatException(path, 1, "a .json data file must hold an array of records (or use .jsonl)");
            for (int i = 0; i < array.Count; i++) yield return (i + 1, array[i], array[i] == null ? "null record" : null);
            yield break;
        }
        using var reader = new JsonlReader(path);
        while (reader.ReadLine(out var line, out long number, out _))
        {
            var node = JsonLines.Parse(line, out string? error);
            yield return (number, node, error ?? (node == null ? "null record" : null));
        }
    }

    /// <summary>The "text" fields of a data file's records (continued-pretraining documents), with the checks and
    /// messages of <see cref="Records"/> plus "expected a "text" string field". JSONL lines are parsed in place and
    /// the reader's buffer for a long line is released before the text is handed over, and the text comes in a
    /// <see cref="DocumentText"/> the caller takes it out of, so that for a one-line document of hundreds of megabytes
    /// nothing but the string outlives the parse.</summary>
    public static IEnumerable<(long Line, DocumentText? Text, string? Error)> Texts(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
        if (path.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var (line, text) in TextDocuments(path)) yield return (line, text, null);
            yield break;
        }
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var (line, record, error) in Records(path, textDocuments: true))
            {
                if (error != null) { yield return (line, null, error); continue; }
                string? text = record is JsonObject o && o["text"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
                yield return text != null ? (line, new DocumentText(text), null) : (line, null, NoTextField);
            }
            yield break;
        }
        using var reader = new JsonlReader(path);
        while (reader.ReadLineAsMemory(out var line, out long number, out _))
        {
            string? error = JsonLines.InvalidUtf8(line.Span);
            var text = error == null ? TextField(line, out error) : null;
            reader.ReleaseLongLineBuffer();
            yield return (number, text, error);
        }
    }

    const string NoTextField = "expected a \"text\" string field";

    static DocumentText? TextField(ReadOnlyMemory<byte> line, out string? error)
    {
        // JsonDocument over memory parses in place (JsonNode.Parse would copy the bytes) and is returned to its pool.
        try
        {
            using (var document = JsonDocument.Parse(line, JsonLines.DocumentOptions))
            {
                var root = document.RootElement;
                error = root.ValueKind == JsonValueKind.Null ? "null record" : null;
                if (error == null && !(root.ValueKind == JsonValueKind.Object && root.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String))
                    error = NoTextField;
                if (error != null) return null;
            }
            // The parse checked the line; find the text's escaped bytes and decode them straight into the string
            // (GetString would rent an unescape buffer as long as the text, which the shared pool then keeps).
            var reader = new Utf8JsonReader(line.Span);
            reader.Read();
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool isText = reader.ValueTextEquals("text"u8);
                reader.Read();
                if (!isText) { reader.Skip(); continue; }
                string value = Unescape(line.Slice(checked((int)reader.TokenStartIndex + 1), reader.ValueSpan.Length), out error);
                return error == null ? new DocumentText(value) : null;
            }
            throw new InvalidOperationException("the \"text\" field was not found again");
        }
        catch (JsonException e) { error = "not valid JSON: " + JsonLines.Message(e); return null; }
    }

    /// <summary>A JSON string's checked, escaped UTF-8 bytes (without the quotes) as a string, as
    /// <see cref="JsonElement.GetString"/> gives it, but with no buffer beside the result; an escaped lone surrogate
    /// (which GetString refuses) is an error.</summary>
    internal static string Unescape(ReadOnlyMemory<byte> escaped, out string? error)
    {
        int length = 0;
        error = null;
        for (var rest = escaped.Span; ;)
        {
            int slash = rest.IndexOf((byte)'\\');
            length = checked(length + Encoding.UTF8.GetCharCount(slash < 0 ? rest : rest[..slash]));
            if (slash < 0) break;
            int skip = 2;
            if (rest[slash + 1] == (byte)'u')
            {
                char c = Hex(rest, slash + 2);
                skip = 6;
                if (char.IsHighSurrogate(c) && rest.Length >= slash + 12 && rest[slash + 6] == (byte)'\\' && rest[slash + 7] == (byte)'u'
                    && char.IsLowSurrogate(Hex(rest, slash + 8)))
                { skip = 12; length++; }
                else if (char.IsSurrogate(c)) { error = $"the \"text\" string has an escaped lone surrogate \\u{(int)c:X4} (not valid UTF-16)"; return ""; }
            }
            length = checked(length + 1);
            rest = rest[(slash + skip)..];
        }
        return string.Create(length, escaped, static (chars, escaped) =>
        {
            for (var rest = escaped.Span; ;)
            {
                int slash = rest.IndexOf((byte)'\\');
                chars = chars[Encoding.UTF8.GetChars(slash < 0 ? rest : rest[..slash], chars)..];
                if (slash < 0) break;
                byte kind = rest[slash + 1];
                chars[0] = kind switch
                {
                    (byte)'n' => '\n', (byte)'t' => '\t', (byte)'r' => '\r', (byte)'b' => '\b', (byte)'f' => '\f',
                    (byte)'u' => Hex(rest, slash + 2),
                    _ => (char)kind, // \" \\ \/
                };
                chars = chars[1..];
                rest = rest[(slash + (kind == (byte)'u' ? 6 : 2))..];
            }
        });
    }

    static char Hex(ReadOnlySpan<byte> s, int at) => (char)ushort.Parse(s.Slice(at, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    static IEnumerable<(long Line, JsonNode? Record, string? Error)> CsvRecords(string path)
    {
        using var reader = TextFile.Open(path);
        List<string>? header = null;
        foreach (var (line, cells) in Csv.Rows(reader, path))
        {
            if (header == null)
            {
                header = cells.Select(c => c.Trim()).ToList();
                var duplicate = header.GroupBy(h => h).FirstOrDefault(g => g.Count() > 1);
                if (header.Any(h => h.Length == 0)) throw new DataFormatException(path, line, "the header row has an empty column name");
                if (duplicate != null) throw new DataFormatException(path, line, $"the header names column '{duplicate.Key}' twice");
                continue;
            }
            if (cells.Count != header.Count) { yield return (line, null, $"{cells.Count} cells where the header has {header.Count}"); continue; }
            var record = new JsonObject();
            for (int i = 0; i < cells.Count; i++) record[header[i]] = cells[i];
            yield return (line, record, null);
        }
        if (header == null) throw new DataFormatException(path, 1, "the CSV file is empty (no header row)");
    }

    static IEnumerable<(long Line, DocumentText Text)> TextDocuments(string path)
    {
        var current = new StringBuilder();
        long start = 1, number = 0;
        using var reader = TextFile.Open(path); // strict UTF-8: damage is an error naming the file and line
        while (reader.ReadLine() is string line)
        {
            number++;
            if (line.Trim().Length == 0)
            {
                if (current.Length > 0) { var text = new DocumentText(current.ToString()); current = new StringBuilder(); yield return (start, text); }
                start = number + 1;
                continue;
            }
            if (current.Length > 0) current.Append('\n');
            current.Append(line);
        }
        if (current.Length > 0) { var text = new DocumentText(current.ToString()); current = new StringBuilder(); yield return (start, text); }
    }
}

/// <summary>A document's text, taken out once by whoever tokenizes it, so that no reader or record still refers to a
/// string of hundreds of megabytes once its tokens are made.</summary>
public sealed class DocumentText(string text)
{
    string? _text = text;

    public string Take() => Interlocked.Exchange(ref _text, null) ?? throw new InvalidOperationException("the document's text was already taken");
}
