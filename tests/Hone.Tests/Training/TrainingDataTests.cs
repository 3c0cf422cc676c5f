using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Hone.Tests.Tokenization;
using Hone.Tokenization;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Training;

/// <summary>Training data that is damaged, huge or longer than the rows: clear errors, bounded copies, counts.</summary>
public class TrainingDataTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static TrainingData Load(string model, string data, TrainingStage stage, int seqLen = 64, bool? packing = false, double valSplit = 0)
    {
        using var checkpoint = Checkpoint.Open(model);
        return TrainingDataLoader.Load(checkpoint, new TrainOptions
        {
            Model = model, Data = data, Stage = stage, SeqLen = seqLen, Packing = packing, Seed = 1, ValSplit = valSplit,
        });
    }

    static string Chat(string q, string a) => new JsonObject { ["messages"] = new JsonArray(
        new JsonObject { ["role"] = "user", ["content"] = q }, new JsonObject { ["role"] = "assistant", ["content"] = a }) }.ToJsonString();

    /// <summary>A long text from real prose: tiny Shakespeare repeated past <see cref="Tokenizer.DocumentPiece"/>.</summary>
    static string LongText(int characters)
    {
        string source = File.ReadAllText(SharedData.Require("datasets/tinyshakespeare/input.txt"));
        var sb = new StringBuilder(characters + source.Length);
        while (sb.Length < characters) sb.Append(source).Append(' ');
        return sb.ToString(0, characters);
    }

    public static TheoryData<string> Tokenizers => ["llama2-hf", "llama-spm.gguf", "gpt2-hf", "llama3"];

    [SkippableTheory]
    [MemberData(nameof(Tokenizers))]
    public void A_long_document_encoded_in_pieces_gives_the_ids_of_the_whole_text(string source)
    {
        var tokenizer = SwiftTransformersVectorTests.Load(source);
        string text = LongText(Tokenizer.DocumentPiece * 2 + 12345);
        var pieces = tokenizer.EncodeDocument(text, null, null);
        var whole = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
        Assert.True(pieces.Length > 100_000);
        Assert.Equal(whole.Length, pieces.Length);
        Assert.True(whole.AsSpan().SequenceEqual(pieces), $"{source}: first difference at {FirstDifference(whole, pieces)}");
    }

    static int FirstDifference(int[] a, int[] b)
    {
        for (int i = 0; i < Math.Min(a.Length, b.Length); i++) if (a[i] != b[i]) return i;
        return Math.Min(a.Length, b.Length);
    }

    [Fact]
    public void Pieces_end_before_a_single_space_between_words_or_at_the_length()
    {
        Assert.Equal(6, Tokenizer.PieceEnd("abc de fg hi", 0, 5));     // "abc de| fg": the space at 6 is between 'e' and 'f'
        Assert.Equal(10, Tokenizer.PieceEnd("abc de  fg hi", 0, 6));   // a double space is not a cut
        Assert.Equal(5, Tokenizer.PieceEnd("abcdefghijklmnop", 0, 5)); // no space: cut at the length
        Assert.Equal(3, Tokenizer.PieceEnd("abc\U0001F600defghijk", 0, 4)); // never between the halves of a surrogate pair
        Assert.Equal(3, Tokenizer.PieceEnd("abc", 0, 5));
    }

    [SkippableFact]
    public void A_one_line_document_of_several_megabytes_trains_as_cpt()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        string text = LongText(3 * Tokenizer.DocumentPiece);
        File.WriteAllText(dir.File("big.jsonl"), new JsonObject { ["text"] = text }.ToJsonString() + "\n");
        var data = Load(model, dir.File("big.jsonl"), TrainingStage.Cpt, packing: null);
        using var checkpoint = Checkpoint.Open(model);
        var tokenizer = checkpoint.LoadTokenizer();
        int expected = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false).Length + 2; // BOS, EOS
        Assert.Equal((expected - 1) / 64, data.Train.RowsPerEpoch);
        Assert.Contains("1 documents", data.Description);
    }

    [SkippableTheory]
    [MemberData(nameof(Tokenizers))]
    public void A_long_document_loads_as_bos_the_ids_of_the_whole_text_and_eos(string source)
    {
        var tokenizer = SwiftTransformersVectorTests.Load(source);
        // More pieces than the encoder collects garbage after, so the collections happen in between.
        string text = LongText(Tokenizer.DocumentPiece * 17 + 12345);
        var example = TrainingDataLoader.Document(tokenizer, new DocumentText(text));
        var whole = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
        int? bos = tokenizer.AddsBos ? tokenizer.BosId : null;
        int[] expected = [.. bos is int b ? [b] : Array.Empty<int>(), .. whole, .. tokenizer.EosId is int e ? [e] : Array.Empty<int>()];
        Assert.Equal(expected.Length, example.Ids.Length);
        Assert.True(expected.AsSpan().SequenceEqual(example.Ids), $"{source}: ids differ");
        Assert.False(example.IsTarget[0]);
        Assert.Equal(expected.Length - 1, example.TargetCount);
    }

    [Fact]
    public void Cpt_texts_decode_every_escape_as_system_text_json_does()
    {
        using var dir = new TempDirectory();
        string[] lines =
        [
            "{\"text\": \"plain caf\u00e9 \ud83d\ude00 \u4e2d\"}",
            "{\"a\": {\"text\": 1}, \"text\": \"\\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u0041\\u00e9\\u4E2D\\ud83d\\ude00 caf\u00e9\\n\", \"b\": [1]}",
            "{\"text\": \"\\n\"}",
            "{\"text\": \"\"}",
            "{\"t\\u0065xt\": \"escaped key\\u0021\"}",
            "{\"text\": \"" + string.Concat(Enumerable.Repeat("line\\n\u00e9 ", 50_000)) + "\"}",
        ];
        var path = dir.File("texts.jsonl");
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        var got = RecordFile.Texts(path).Select(t => (t.Line, t.Text?.Take(), t.Error)).ToList();
        var expected = lines.Select((l, i) => ((long)i + 1, (string?)JsonNode.Parse(l)!["text"]!.GetValue<string>(), (string?)null)).ToList();
        Assert.Equal(expected, got);
    }

    [SkippableFact]
    public void Cpt_records_without_a_text_string_are_errors_naming_the_line()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var path = dir.File("bad.jsonl");
        foreach (var (line, message) in new[] { ("[1, 2]", "\"text\" string"), ("null", "null record"), ("{\"text\": 5}", "\"text\" string"),
                     ("{\"body\": \"a\"}", "\"text\" string"), ("{\"text\": \"a\"", "not valid JSON"), ("{\"text\": \"a\\ud800b\"}", "UTF-16") })
        {
            File.WriteAllText(path, "{\"text\": \"Once upon a time.\"}\n\n" + line + "\n");
            var e = Assert.Throws<DataFormatException>(() => Load(model, path, TrainingStage.Cpt));
            Assert.Equal((path, 3L), (e.File, e.Line));
            Assert.Contains(message, e.Message);
        }
        File.WriteAllText(path, "{\"text\": \"Once upon a time.\"}\n[1]\n{\"text\": \"The end.\"}\n");
        using var checkpoint = Checkpoint.Open(model);
        var data = TrainingDataLoader.Load(checkpoint, new TrainOptions { Model = model, Data = path, Stage = TrainingStage.Cpt, SeqLen = 4, SkipBadLines = true, Seed = 1, ValSplit = 0 });
        Assert.Equal(1, data.SkippedLines);
        Assert.Contains("2 documents", data.Description);
    }

    [SkippableFact]
    public void Invalid_utf8_and_duplicate_keys_are_errors_naming_the_line()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var path = dir.File("bad.jsonl");
        var good = Encoding.UTF8.GetBytes("{\"text\": \"Once upon a time.\"}\n");
        // The byte 0xC3 followed by a space is not UTF-8; it is the 14th byte of the second line.
        File.WriteAllBytes(path, [.. good, .. "{\"text\": \"caf"u8.ToArray(), 0xC3, .. " bad\"}\n"u8.ToArray()]);
        var e = Assert.Throws<DataFormatException>(() => Load(model, path, TrainingStage.Cpt));
        Assert.Equal((path, 2L), (e.File, e.Line));
        Assert.Contains("invalid UTF-8 at byte 14", e.Message);

        File.WriteAllText(path, "{\"text\": \"a\"}\n{\"text\": \"b\", \"text\": \"c\"}\n");
        e = Assert.Throws<DataFormatException>(() => Load(model, path, TrainingStage.Cpt));
        Assert.Equal(2L, e.Line);
        Assert.Contains("text", e.Message);
        Assert.Contains("uplicate", e.Message);

        File.WriteAllText(dir.File("dup.json"), "[{\"text\": \"a\", \"text\": \"b\"}]");
        e = Assert.Throws<DataFormatException>(() => Load(model, dir.File("dup.json"), TrainingStage.Cpt));
        Assert.Contains("uplicate", e.Message);

        File.WriteAllBytes(dir.File("bad.txt"), [.. "First line.\n\nSecond "u8.ToArray(), 0xFF, .. " line.\n"u8.ToArray()]);
        e = Assert.Throws<DataFormatException>(() => Load(model, dir.File("bad.txt"), TrainingStage.Cpt));
        Assert.Contains("invalid UTF-8", e.Message);
    }

    [SkippableFact]
    public void Sft_examples_longer_than_the_row_are_truncated_or_dropped_with_counts()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        string longPrompt = string.Join(' ', Enumerable.Repeat("The little dog ran in the park with a red ball.", 30));
        File.WriteAllLines(dir.File("sft.jsonl"), [
            Chat("Hi?", "Hello there."),
            Chat("Tell me a story.", string.Join(' ', Enumerable.Repeat("Once upon a time there was a cat.", 30))), // answer runs past the row
            Chat(longPrompt, "Yes."),                                                                         // answer starts past the row
        ]);
        var data = Load(model, dir.File("sft.jsonl"), TrainingStage.Sft);
        Assert.Equal(2, data.Train.RowsPerEpoch);
        Assert.Contains("1 longer than 65 tokens truncated", data.Description);
        Assert.Contains("1 dropped (no answer token within the first 65", data.Description);

        File.WriteAllLines(dir.File("long.jsonl"), [Chat(longPrompt, "Yes."), Chat(longPrompt + " Again.", "No.")]);
        var e = Assert.Throws<DataFormatException>(() => Load(model, dir.File("long.jsonl"), TrainingStage.Sft));
        Assert.Contains("none of the 2 examples has an answer token within its first 65 tokens", e.Message);
        Assert.Contains("raise --seq-len", e.Message);
        Assert.Equal(2, Load(model, dir.File("long.jsonl"), TrainingStage.Sft, seqLen: 2048).Train.RowsPerEpoch);
    }
}
