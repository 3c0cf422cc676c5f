using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using Hone.Tokenization;
using Hone.Formats;

namespace Hone.DataTools;

/// <summary>Where a record's text came from.</summary>
public enum TextSource
{
    /// <summary>The string field named by --field.</summary>
    Field,
    /// <summary>OpenAI <c>messages</c>: the contents joined by newlines.</summary>
    Messages,
    /// <summary>ShareGPT <c>conversations</c>: the values joined by newlines (and <c>system</c> first).</summary>
    Conversations,
    /// <summary>Alpaca <c>instruction</c>/<c>input</c>/<c>output</c> (and <c>system</c>, <c>history</c>).</summary>
    Alpaca,
}

/// <summary>What one scan of a record found.</summary>
public struct ScannedRecord
{
    public string? Text;
    public TextSource Source;
    /// <summary>Whether the number field is in the record (its value may still be JSON null).</summary>
    public bool HasNumber;
    public double? Number;
    /// <summary>The group field's value: a string's contents, or the JSON text of any other value; null when absent.</summary>
    public string? Group;
    /// <summary>Bit i is set when watched field i is present at the top level.</summary>
    public int Watched;
}

/// <summary>
/// Reads what the data tools need from one JSONL line in a single pass of a <see cref="Utf8JsonReader"/>, without
/// building a document: the text (the --field string, or for SFT records without it the concatenated message
/// contents), a numeric field, a grouping field, which of some fields are present, and the top-level field names.
/// The whole line is validated (UTF-8 and JSON, one object, nothing after it). One instance per thread.
/// </summary>
public sealed class RecordScanner
{
    readonly byte[] _field;
    readonly byte[]? _numberField, _groupField;
    readonly byte[][] _watched;
    readonly bool _wantText;
    char[] _nameBuffer = new char[64];
    readonly List<string> _pendingNames = [];

    public string Field { get; }

    /// <param name="wantText">extract the text (false: only validate and read the other fields)</param>
    /// <param name="watched">fields whose presence is reported as bits of <see cref="ScannedRecord.Watched"/> (at most 31)</param>
    public RecordScanner(string field, bool wantText = true, string? numberField = null, string? groupField = null, IReadOnlyList<string>? watched = null)
    {
        Field = field;
        _field = Encoding.UTF8.GetBytes(field);
        _wantText = wantText;
        _numberField = numberField == null ? null : Encoding.UTF8.GetBytes(numberField);
        _groupField = groupField == null ? null : Encoding.UTF8.GetBytes(groupField);
        _watched = (watched ?? []).Select(Encoding.UTF8.GetBytes).ToArray();
        if (_watched.Length > 31) throw new ArgumentException("at most 31 watched fields");
    }

    /// <summary>Scan a line; false with an error message (no file or line, the caller adds them) when it is unusable.</summary>
    /// <param name="names">when given, each top-level field name is counted in it</param>
    public bool Scan(ReadOnlySpan<byte> line, out ScannedRecord record, out string? error, Dictionary<string, long>? names = null)
    {
        record = default;
        error = null;
        _pendingNames.Clear();
        if (JsonLines.InvalidUtf8(line) is string bad) { error = bad; return false; }
        bool hasSftKey = false;
        try
        {
            var reader = new Utf8JsonReader(line, new JsonReaderOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) { error = "a record must be a JSON object"; return false; }
            bool textFound = false, groupFound = false;
            int sftKeys = 0;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (names != null) NoteName(ref reader, names);
                for (int i = 0; i < _watched.Length; i++) if (reader.ValueTextEquals(_watched[i])) record.Watched |= 1 << i;
                // A key the tool reads given twice would make the record mean two things: refused, as the training loader does.
                bool isText = _wantText && reader.ValueTextEquals(_field);
                bool isNumber = _numberField != null && reader.ValueTextEquals(_numberField);
                bool isGroup = _groupField != null && reader.ValueTextEquals(_groupField);
                int sftKey = reader.ValueTextEquals("messages"u8) ? 1 : reader.ValueTextEquals("conversations"u8) ? 2 : reader.ValueTextEquals("instruction"u8) ? 4 : 0;
                if ((isText && textFound) || (isNumber && record.HasNumber) || (isGroup && groupFound) || (sftKeys & sftKey) != 0)
                {
                    error = $"duplicate key \"{reader.GetString()}\"";
                    return false;
                }
                sftKeys |= sftKey;
                groupFound |= isGroup;
                if (sftKey != 0) hasSftKey = true;
                reader.Read();
                if (isText)
                {
                    if (reader.TokenType != JsonTokenType.String) { error = $"\"{Field}\" is {Describe(reader.TokenType)}, expected a string"; return false; }
                    record.Text = ReadString(ref reader);
                    record.Source = TextSource.Field;
                    textFound = true;
                }
                if (isNumber)
                {
                    record.HasNumber = true;
                    if (reader.TokenType == JsonTokenType.Number) record.Number = reader.GetDouble();
                    else if (reader.TokenType != JsonTokenType.Null) { error = $"\"{Encoding.UTF8.GetString(_numberField!)}\" is {Describe(reader.TokenType)}, expected a number"; return false; }
                }
                if (isGroup)
                {
                    if (reader.TokenType == JsonTokenType.String) record.Group = ReadString(ref reader);
                    else
                    {
                        int start = (int)reader.TokenStartIndex;
                        reader.Skip();
                        record.Group = Encoding.UTF8.GetString(line[start..(int)reader.BytesConsumed]);
                    }
                }
                else if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray) reader.Skip();
            }
            if (reader.TokenType != JsonTokenType.EndObject) { error = "a record must be a JSON object"; return false; }
            if (reader.Read()) { error = "more than one JSON value on the line"; return false; }
            if (_wantText && !textFound)
            {
                if (!hasSftKey) { error = $"no \"{Field}\" field (and not a messages, conversations or instruction/output record)"; return false; }
                (record.Text, record.Source) = SftText(line);
            }
            if (names != null) CountNames(_pendingNames, names);
            return true;
        }
        catch (JsonException e) { error = "not valid JSON: " + JsonLines.Message(e); return false; }
        catch (Exception e) when (e is DataFormatException or InvalidOperationException or FormatException or KeyNotFoundException)
        {
            error = e is DataFormatException d ? d.Message[(d.Message.IndexOf(": ", StringComparison.Ordinal) + 2)..] : e.Message;
            return false;
        }
    }

    /// <summary>Note a field name; its count goes up only once the whole line has scanned cleanly.</summary>
    void NoteName(ref Utf8JsonReader reader, Dictionary<string, long> names)
    {
        int length = reader.ValueSpan.Length;
        if (_nameBuffer.Length < length) _nameBuffer = new char[Math.Max(length, _nameBuffer.Length * 2)];
        int written = reader.CopyString(_nameBuffer);
        var lookup = names.GetAlternateLookup<ReadOnlySpan<char>>();
        var name = _nameBuffer.AsSpan(0, written);
        if (lookup.TryGetValue(name, out string? key, out _)) _pendingNames.Add(key);
        else if (names.Count < MaxDistinctNames) { key = name.ToString(); names.Add(key, 0); _pendingNames.Add(key); }
        else _pendingNames.Add(OtherNames);
    }

    static void CountNames(List<string> pending, Dictionary<string, long> names)
    {
        foreach (var key in pending) names[key] = names.GetValueOrDefault(key) + 1;
    }

    /// <summary>Field-name counts stop adding names past this many (a file with a key per record would otherwise
    /// grow without bound); later new names are counted under <see cref="OtherNames"/>.</summary>
    public const int MaxDistinctNames = 10_000;
    public const string OtherNames = "(other names)";

    /// <summary>The string at the reader. A JSON string may escape a lone surrogate (\ud800), which
    /// <see cref="Utf8JsonReader.GetString"/> refuses; such strings are decoded here keeping the lone surrogate, so the
    /// text is still counted and the anomaly reported.</summary>
    static string ReadString(ref Utf8JsonReader reader)
    {
        try { return reader.GetString()!; }
        catch (InvalidOperationException) { return DecodeKeepingSurrogates(reader.ValueSpan); }
    }

    static string DecodeKeepingSurrogates(ReadOnlySpan<byte> raw)
    {
        var sb = new StringBuilder(raw.Length);
        int i = 0;
        while (i < raw.Length)
        {
            int backslash = raw[i..].IndexOf((byte)'\\');
            int end = backslash < 0 ? raw.Length : i + backslash;
            sb.Append(Encoding.UTF8.GetString(raw[i..end]));
            if (backslash < 0) break;
            char c = (char)raw[end + 1];
            i = end + 2;
            switch (c)
            {
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'u': sb.Append((char)Convert.ToUInt16(Encoding.ASCII.GetString(raw.Slice(i, 4)), 16)); i += 4; break;
                default: sb.Append(c); break; // \" \\ \/
            }
        }
        return sb.ToString();
    }

    static (string Text, TextSource Source) SftText(ReadOnlySpan<byte> line)
    {
        var node = JsonNode.Parse(line, documentOptions: JsonLines.DocumentOptions)!;
        var messages = ChatConversation.ToMessages(node, "", 0);
        var source = node["messages"] is JsonArray ? TextSource.Messages : node["conversations"] is JsonArray ? TextSource.Conversations : TextSource.Alpaca;
        var parts = messages.Select(m => m?["content"] is JsonValue v && v.TryGetValue(out string? s) ? s : null).Where(s => s != null);
        return (string.Join("\n", parts), source);
    }

    static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.Number => "a number",
        JsonTokenType.String => "a string",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        _ => t.ToString(),
    };

}
