using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.DataTools;

public class DecontaminateTests
{
    [Fact]
    public void Words_are_lowercased_with_punctuation_deleted_and_split_on_whitespace()
    {
        Assert.Equal(["hello", "world", "its", "email", "quoted", "314", "5", "naïve", "ε", "x²"],
            Words.Of("Hello, World! It's e-mail — “quoted” 3.14 $5\tNAÏVE\nΕ x²"));
        Assert.Empty(Words.Of(" ... !!! "));
    }

    [Fact]
    public void Ngrams_match_through_case_and_punctuation_but_need_n_words()
    {
        var eval = new EvalNgrams(13);
        using var dir = new TempDirectory();
        var evalFile = dir.File("eval.txt");
        File.WriteAllText(evalFile, "The quick brown fox jumps over the lazy dog near the river bank today.\n\nshort paragraph\n");
        eval.Add(evalFile);
        Assert.Equal(new EvalSetInfo(evalFile, "text", 2, 1, 2), eval.Sets[0]); // 14 words: two 13-grams; the short paragraph has none
        var scratch = new EvalNgrams.NgramScratch();
        var hit = eval.Match("Story: THE QUICK, brown fox -- jumps over the lazy dog near the river bank!", scratch);
        Assert.Equal((1, 0, 1L, 1), (hit.FirstWord, hit.Set, hit.EvalLine, hit.Matches));
        Assert.Equal("the quick brown fox jumps over the lazy dog near the river bank", eval.NgramText(scratch, hit.FirstWord));
        // Twelve shared words are not enough.
        Assert.Equal(0, eval.Match("quick brown fox jumps over the lazy dog near the river bank", scratch).Matches);
        Assert.Equal(2, eval.Match("the quick brown fox jumps over the lazy dog near the river bank today", scratch).Matches);
    }

    [Fact]
    public void Evaluation_sets_in_csv_jsonl_and_text_with_a_report_per_dropped_record()
    {
        using var dir = new TempDirectory();
        var mmlu = dir.File("mmlu_test.csv");
        File.WriteAllText(mmlu,
            "\"Which of these, on a long\nline, is the one true answer?\",alpha beta,gamma delta,\"epsilon \"\"zeta\"\"\",eta theta,C\n" +
            "Short?,a,b,c,d,A\n");
        var jsonl = dir.File("eval.jsonl");
        File.WriteAllText(jsonl, "{\"q\":{\"body\":\"one two three four five six seven eight nine ten eleven twelve thirteen\"},\"n\":1}\n");
        var input = Jsonl.Write(dir, "train.jsonl",
            "{\"text\":\"clean record with nothing in common\"}",
            "{\"text\":\"Quiz: which of these on a long line is the one true answer? Alpha beta gamma delta epsilon zeta eta theta.\"}",
            "{\"text\":\"ONE two three four five six seven eight nine ten eleven twelve thirteen fourteen\"}",
            "{\"text\":\"the one true answer alpha beta gamma delta epsilon zeta eta theta c\"}");
        var o = new DecontaminateOptions(input, [mmlu, jsonl], dir.File("clean.jsonl"), Threads: 2);
        var r = Decontaminate.Run(o);
        Assert.Equal((4L, 2L, 2L), (r.Records, r.Kept, r.Dropped));
        Assert.Equal(["{\"text\":\"clean record with nothing in common\"}", "{\"text\":\"the one true answer alpha beta gamma delta epsilon zeta eta theta c\"}"],
            Jsonl.Lines(dir.File("clean.jsonl"))); // the answer letter C is not part of the evaluation text
        // The MMLU row has 12 + 8 words: eight 13-grams; the short row none.
        Assert.Equal(new EvalSetInfo(mmlu, "csv", 2, 1, 8), r.EvalSets[0]);
        Assert.Equal(new EvalSetInfo(jsonl, "json", 1, 0, 1), r.EvalSets[1]);
        Assert.Equal([1L, 1L], r.DroppedBySet);
        Assert.Equal(dir.File("clean.contamination.jsonl"), r.Report);
        var report = Jsonl.Lines(r.Report).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(2, report.Length);
        Assert.Equal((2L, mmlu, 1L, 8L), ((long)report[0]["line"]!, (string)report[0]["eval"]!, (long)report[0]["eval_line"]!, (long)report[0]["matching_ngrams"]!));
        Assert.Equal("which of these on a long line is the one true answer alpha", (string)report[0]["ngram"]!);
        Assert.Equal([mmlu], report[0]["eval_sets"]!.AsArray().Select(n => (string)n!));
        Assert.Equal((3L, jsonl, 1L), ((long)report[1]["line"]!, (string)report[1]["eval"]!, (long)report[1]["eval_line"]!));
        Assert.Empty(Jsonl.Others(dir, "mmlu_test.csv", "eval.jsonl", "train.jsonl", "clean.jsonl", "clean.contamination.jsonl"));
    }

    static byte[] Gzip(string text)
    {
        using var buffer = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(buffer, System.IO.Compression.CompressionLevel.Optimal)) gz.Write(System.Text.Encoding.UTF8.GetBytes(text));
        return buffer.ToArray();
    }

    [Fact]
    public void A_damaged_gzip_evaluation_set_is_an_error_naming_it()
    {
        using var dir = new TempDirectory();
        string text = string.Join("\n\n", Enumerable.Range(0, 200).Select(i => $"question {i} asks which of these on a long line is the one true answer number {i}"));
        var good = Gzip(text);
        File.WriteAllBytes(dir.File("good.txt.gz"), good);
        var eval = new EvalNgrams(13);
        eval.Add(dir.File("good.txt.gz"));
        Assert.True(eval.Count > 100);

        var cases = new Dictionary<string, byte[]>
        {
            ["truncated.txt.gz"] = good[..(good.Length / 2)],
            ["not-gzip.txt.gz"] = System.Text.Encoding.UTF8.GetBytes(text),
            ["flipped.txt.gz"] = good.Select((b, i) => i == good.Length / 2 ? (byte)(b ^ 0x5A) : b).ToArray(),
            ["empty.txt.gz"] = [],
            ["utf8.txt"] = [.. "first words "u8.ToArray(), 0xFF, 0xFE, .. " more words"u8.ToArray()],
        };
        foreach (var (name, bytes) in cases)
        {
            File.WriteAllBytes(dir.File(name), bytes);
            var e = Assert.Throws<DataFormatException>(() => new EvalNgrams(13).Add(dir.File(name)));
            Assert.Equal(dir.File(name), e.File);
        }
        var input = dir.File("train.jsonl");
        File.WriteAllText(input, "{\"text\": \"hello\"}\n");
        var r = HoneCli.Run("data", "decontaminate", input, "--against", dir.File("truncated.txt.gz"), "--out", dir.File("clean.jsonl"));
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"error: {dir.File("truncated.txt.gz")}", r.Stderr);
        Assert.Contains("gzip", r.Stderr);
        Assert.False(File.Exists(dir.File("clean.jsonl")));
    }

    [Fact]
    public void Csv_rows_keep_quoted_commas_newlines_and_quotes()
    {
        var rows = Csv.Rows(new StringReader("a,\"b,c\",\"d\ne\"\r\n\"f \"\"g\"\"\",,h\nlast"), "t.csv").ToList();
        Assert.Equal([(1L, new List<string> { "a", "b,c", "d\ne" }), (3L, ["f \"g\"", "", "h"]), (4L, ["last"])],
            rows.Select(r => (r.Line, r.Cells)).ToList(), new RowComparer());
        var open = Assert.Throws<DataFormatException>(() => Csv.Rows(new StringReader("a,b\n\"open"), "t.csv").ToList());
        Assert.Equal("t.csv:2: a quoted CSV field is not closed", open.Message);
    }

    sealed class RowComparer : IEqualityComparer<(long, List<string>)>
    {
        public bool Equals((long, List<string>) x, (long, List<string>) y) => x.Item1 == y.Item1 && x.Item2.SequenceEqual(y.Item2);
        public int GetHashCode((long, List<string>) obj) => obj.Item1.GetHashCode();
    }

    [SkippableFact]
    public void A_question_copied_from_mmlu_is_found()
    {
        var test = SharedData.Require("datasets/mmlu/test/clinical_knowledge_test.csv");
        var dev = SharedData.Require("datasets/mmlu/dev/clinical_knowledge_dev.csv");
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "train.jsonl",
            "{\"text\":\"Nurses often ask: what size of cannula would you use in a patient who needed a rapid blood transfusion? The answer is large.\"}",
            "{\"text\":\"A patient needed a transfusion and a cannula was used.\"}");
        var r = Decontaminate.Run(new DecontaminateOptions(input, [test, dev], dir.File("clean.jsonl")));
        Assert.Equal((1L, 1L), (r.Kept, r.Dropped));
        Assert.Equal([1L, 0L], r.DroppedBySet);
        Assert.True(r.EvalSets[0].Segments > 200);
        var report = JsonNode.Parse(Jsonl.Lines(r.Report).Single())!;
        Assert.Equal(1L, (long)report["eval_line"]!);
        Assert.StartsWith("what size of cannula would you use in a patient who needed", (string)report["ngram"]!);
    }

    /// <summary>The real HumanEval.jsonl.gz, cut short and with one byte flipped in its deflate stream: `decontaminate
    /// --against` names the file and the gzip damage, exits 1 and writes nothing (it once reported "no text of 13 or more
    /// words"); the undamaged file is read as a JSONL evaluation set.</summary>
    [SkippableFact]
    public void A_damaged_copy_of_the_real_humaneval_gzip_given_to_decontaminate_is_named()
    {
        var real = File.ReadAllBytes(SharedData.Require("datasets/humaneval/HumanEval.jsonl.gz"));
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "train.jsonl",
            "{\"text\":\"def has_close_elements(numbers, threshold): check if in given list of numbers, are any two numbers closer to each other than given threshold\"}",
            "{\"text\":\"Once upon a time there was a little cat who liked to sleep in the sun all day long.\"}");

        File.WriteAllBytes(dir.File("HumanEval.jsonl.gz"), real);
        var ok = HoneCli.Run("data", "decontaminate", input, "--against", dir.File("HumanEval.jsonl.gz"), "--out", dir.File("clean.jsonl"));
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.True(File.Exists(dir.File("clean.jsonl")));

        var damaged = new Dictionary<string, byte[]>
        {
            ["truncated.jsonl.gz"] = real[..(real.Length / 2)],
            ["flipped.jsonl.gz"] = real.Select((b, i) => i == real.Length / 3 ? (byte)(b ^ 0xFF) : b).ToArray(),
        };
        foreach (var (name, bytes) in damaged)
        {
            var path = dir.File(name);
            File.WriteAllBytes(path, bytes);
            var output = dir.File(name + ".clean.jsonl");
            var r = HoneCli.Run("data", "decontaminate", input, "--against", path, "--out", output);
            Assert.True(r.ExitCode == 1, r.ToString());
            var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, r.ToString());
            Assert.StartsWith($"error: {path}", lines[0]);
            Assert.DoesNotContain("no text of", lines[0]);
            Assert.DoesNotContain(":0:", lines[0]); // a whole-file error names no line
            // Cut short: the gzip damage. A flipped byte: the gzip check, or the first line it garbles, is named.
            if (name.StartsWith("truncated")) Assert.Contains($"error: {path}: the gzip data ends early", lines[0]);
            else Assert.Matches($@"^error: {System.Text.RegularExpressions.Regex.Escape(path)}(: damaged gzip data|:\d+: not valid JSON)", lines[0]);
            Assert.False(File.Exists(output), $"{name}: an output was written");
        }
    }
}
