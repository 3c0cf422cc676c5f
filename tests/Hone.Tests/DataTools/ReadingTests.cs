using System.Text;
using Hone.DataTools;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.DataTools;

internal static class Jsonl
{
    public static string Write(TempDirectory dir, string name, params string[] lines)
    {
        var path = dir.File(name);
        File.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")));
        return path;
    }

    public static string[] Lines(string path) => File.ReadAllLines(path);

    /// <summary>Files in the folder other than the given ones (no temporary leftovers).</summary>
    public static string[] Others(TempDirectory dir, params string[] expected) =>
        Directory.GetFiles(dir.Path).Select(Path.GetFileName).Where(n => !expected.Contains(n)).ToArray()!;
}

/// <summary>The raw line reader and the one-pass record scanner.</summary>
public class ReadingTests
{
    [Fact]
    public void Reader_gives_non_blank_lines_with_numbers_and_offsets_dropping_bom_and_cr()
    {
        using var dir = new TempDirectory();
        var path = dir.File("a.jsonl");
        File.WriteAllBytes(path, [0xEF, 0xBB, 0xBF, .. "{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}"u8]);
        using var reader = new JsonlReader(path);
        var got = new List<(string, long, long)>();
        while (reader.ReadLine(out var line, out long number, out long offset)) got.Add((Encoding.UTF8.GetString(line), number, offset));
        Assert.Equal([("{\"a\":1}", 1L, 0L), ("{\"b\":2}", 4L, 17L), ("{\"c\":3}", 5L, 25L)], got);
        Assert.Equal(5, reader.Lines);
        Assert.Equal(2, reader.BlankLines);
        Assert.Equal(new FileInfo(path).Length, reader.Position);
    }

    [Fact]
    public void Reader_handles_lines_longer_than_its_buffer_and_batches_respect_their_budget()
    {
        using var dir = new TempDirectory();
        var big = "{\"text\":\"" + new string('x', 3_000_000) + "\"}";
        var path = Jsonl.Write(dir, "a.jsonl", "{\"text\":\"a\"}", big, "{\"text\":\"b\"}");
        using var reader = new JsonlReader(path);
        var batch = new LineBatch();
        Assert.True(reader.ReadBatch(batch, maxLines: 10, maxBytes: 100));
        Assert.Equal(2, batch.Count); // the budget is passed by the big line, which still comes whole
        Assert.Equal(big.Length, batch[1].Length);
        Assert.Equal(2, batch.LineNumber(1));
        Assert.True(reader.ReadBatch(batch, 10, 100));
        Assert.Equal("{\"text\":\"b\"}", Encoding.UTF8.GetString(batch[0]));
        Assert.False(reader.ReadBatch(batch, 10, 100));
    }

    [Fact]
    public void Reader_sizes_a_long_line_at_once_and_gives_the_space_back_after_it()
    {
        using var dir = new TempDirectory();
        var first = "{\"text\":\"" + new string('x', 17_000_000) + "\"}";
        var last = "{\"text\":\"" + new string('y', 2_500_000) + "\"}"; // the last line has no newline
        var path = dir.File("a.jsonl");
        File.WriteAllText(path, first + "\n{\"text\":\"a\"}\r\n\n" + last);
        using var reader = new JsonlReader(path);
        var got = new List<(string, long, long)>();
        while (reader.ReadLineAsMemory(out var line, out long number, out long offset))
        {
            got.Add((Encoding.UTF8.GetString(line.Span), number, offset));
            reader.ReleaseLongLineBuffer();
        }
        Assert.Equal([(first, 1L, 0L), ("{\"text\":\"a\"}", 2L, first.Length + 1L), (last, 4L, first.Length + 16L)], got);
        Assert.Equal(new FileInfo(path).Length, reader.Position);
    }

    static (bool Ok, ScannedRecord Record, string? Error) Scan(string line, string field = "text", string? number = null, string? group = null,
        string[]? watched = null)
    {
        var scanner = new RecordScanner(field, numberField: number, groupField: group, watched: watched);
        bool ok = scanner.Scan(Encoding.UTF8.GetBytes(line), out var record, out var error);
        return (ok, record, error);
    }

    [Fact]
    public void Scanner_reads_the_field_and_sft_shapes()
    {
        Assert.Equal("hi \"there\"\n", Scan("{\"id\":1,\"text\":\"hi \\\"there\\\"\\n\",\"x\":[1,{\"text\":2}]}").Record.Text);
        Assert.Equal("body", Scan("{\"body\":\"body\",\"text\":5}", field: "body").Record.Text);

        var messages = Scan("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"A\"}]}");
        Assert.Equal(("S\nU\nA", TextSource.Messages), (messages.Record.Text, messages.Record.Source));
        var share = Scan("{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}]}");
        Assert.Equal(("q\na", TextSource.Conversations), (share.Record.Text, share.Record.Source));
        var alpaca = Scan("{\"instruction\":\"Do\",\"input\":\"this\",\"output\":\"done\"}");
        Assert.Equal(("Do\n\nthis\ndone", TextSource.Alpaca), (alpaca.Record.Text, alpaca.Record.Source));
        // The field wins when both are there.
        Assert.Equal(TextSource.Field, Scan("{\"text\":\"t\",\"messages\":[]}").Record.Source);
    }

    [Theory]
    [InlineData("{\"text\": 5}", "\"text\" is a number, expected a string")]
    [InlineData("{\"text\": null}", "\"text\" is null, expected a string")]
    [InlineData("{\"other\": \"x\"}", "no \"text\" field (and not a messages, conversations or instruction/output record)")]
    [InlineData("[1, 2]", "a record must be a JSON object")]
    [InlineData("{\"text\": \"a\"} {}", "not valid JSON: '{' is invalid after a single JSON value")]
    [InlineData("{\"text\": \"a\"", "not valid JSON")]
    [InlineData("{\"text\": \"a\",}", "not valid JSON")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}", "the conversation has no assistant message to learn from")]
    [InlineData("{\"text\": \"a\", \"text\": \"b\"}", "duplicate key \"text\"")]
    [InlineData("{\"messages\": [], \"id\": 1, \"messages\": []}", "duplicate key \"messages\"")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"q\", \"content\": \"r\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}", "not valid JSON: Duplicate property 'content'")]
    public void Scanner_explains_unusable_lines(string line, string expected)
    {
        var (ok, _, error) = Scan(line);
        Assert.False(ok);
        Assert.StartsWith(expected, error);
    }

    [Fact]
    public void Scanner_reports_invalid_utf8_with_its_byte_and_keeps_escaped_lone_surrogates()
    {
        var scanner = new RecordScanner("text");
        Assert.False(scanner.Scan([.. "{\"text\":\"ab"u8, 0xFF, .. "\"}"u8], out _, out var error));
        Assert.Equal("invalid UTF-8 at byte 12", error);
        var (ok, record, _) = Scan("{\"text\":\"a\\ud800b\\n\"}");
        Assert.True(ok);
        Assert.Equal("a\ud800b\n", record.Text);
    }

    [Fact]
    public void Scanner_reads_number_group_and_watched_fields()
    {
        var r = Scan("{\"text\":\"t\",\"ppl\":12.5,\"g\":{\"a\":[1, 2]},\"tokens\":3}", number: "ppl", group: "g", watched: ["ppl", "bits_per_byte", "tokens"]).Record;
        Assert.Equal((true, 12.5, "{\"a\":[1, 2]}", 0b101), (r.HasNumber, r.Number, r.Group, r.Watched));
        var nulls = Scan("{\"text\":\"t\",\"ppl\":null,\"g\":\"x\"}", number: "ppl", group: "g").Record;
        Assert.Equal((true, (double?)null, "x"), (nulls.HasNumber, nulls.Number, nulls.Group));
        Assert.False(Scan("{\"text\":\"t\"}", number: "ppl").Record.HasNumber);
        Assert.Equal("\"ppl\" is a string, expected a number", Scan("{\"text\":\"t\",\"ppl\":\"high\"}", number: "ppl").Error);
    }

    [Fact]
    public void Field_names_are_counted_only_for_lines_that_scan_cleanly()
    {
        var scanner = new RecordScanner("text");
        var names = new Dictionary<string, long>();
        Assert.True(scanner.Scan("{\"text\":\"a\",\"id\":1}"u8, out _, out _, names));
        Assert.False(scanner.Scan("{\"id\":2,\"text\":3}"u8, out _, out _, names));
        Assert.Equal(1, names["id"]);
        Assert.Equal(1, names["text"]);
    }

    [Fact]
    public void Fields_are_spliced_into_the_original_bytes_or_replaced_when_present()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        var fields = new (System.Text.Json.JsonEncodedText, double?)[] { (System.Text.Json.JsonEncodedText.Encode("ppl"), 2.5), (System.Text.Json.JsonEncodedText.Encode("n"), null) };
        DataJson.WriteWithFields(buffer, "{ \"text\" : \"é\\u00e9\" }  "u8, false, fields);
        Assert.Equal("{ \"text\" : \"é\\u00e9\" ,\"ppl\":2.5,\"n\":null}  ", Encoding.UTF8.GetString(buffer.WrittenSpan));
        buffer.ResetWrittenCount();
        DataJson.WriteWithFields(buffer, "{ }"u8, false, fields);
        Assert.Equal("{ \"ppl\":2.5,\"n\":null}", Encoding.UTF8.GetString(buffer.WrittenSpan));
        buffer.ResetWrittenCount();
        DataJson.WriteWithFields(buffer, "{\"ppl\":9,\"text\":\"x\"}"u8, true, fields);
        Assert.Equal("{\"ppl\":2.5,\"text\":\"x\",\"n\":null}", Encoding.UTF8.GetString(buffer.WrittenSpan));
        buffer.ResetWrittenCount();
        DataJson.WriteNumber(buffer, 0.1 + 0.2);
        Assert.Equal("0.30000000000000004", Encoding.UTF8.GetString(buffer.WrittenSpan));
    }
}
