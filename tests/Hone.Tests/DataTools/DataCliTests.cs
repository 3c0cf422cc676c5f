using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.DataTools;

/// <summary>The <c>hone data</c> verbs through the real executable: exit codes, one-line errors, JSON summaries.</summary>
public partial class DataCliTests
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    static string Sample(TempDirectory dir) => Jsonl.Write(dir, "in.jsonl",
        "{\"text\":\"the quick brown fox jumps over the lazy dog near the river bank today\",\"ppl\":3.5,\"g\":1}",
        "{\"text\":\"the quick brown fox jumps over the lazy dog near the river bank today\",\"ppl\":4,\"g\":1}",
        "{\"text\":\"a completely different record about something else entirely\",\"ppl\":12,\"g\":2}",
        "{\"text\":\"another record\",\"ppl\":40,\"g\":3}");

    static JsonObject Json(HoneCli.Result r)
    {
        Assert.True(r.ExitCode == 0, r.ToString());
        return JsonNode.Parse(r.Stdout)!.AsObject();
    }

    static void AssertOneLineError(HoneCli.Result r, string contains, int exitCode = 1)
    {
        Assert.True(r.ExitCode == exitCode, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.ToString());
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(contains, lines[0]);
    }

    [SkippableFact]
    public void A_pipe_is_refused_naming_it_and_a_duplicate_key_names_its_line()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /dev/stdin");
        AssertOneLineError(HoneCli.RunWithInput("{\"text\":\"a\"}\n", "data", "stats", "/dev/stdin"), "/dev/stdin: not a regular file");
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "dup.jsonl", "{\"text\":\"a\"}", "{\"text\":\"b\",\"id\":2,\"text\":\"c\"}");
        AssertOneLineError(HoneCli.Run("data", "stats", input), $"{input}:2: duplicate key \"text\"");
    }

    /// <summary>A damaged copy of the real HumanEval problems (decompressed): problem 3 names "prompt" twice.</summary>
    [SkippableFact]
    public void A_duplicate_key_in_a_copy_of_the_real_humaneval_names_file_line_and_key()
    {
        using var gz = new System.IO.Compression.GZipStream(File.OpenRead(SharedData.Require("datasets/humaneval/HumanEval.jsonl.gz")),
            System.IO.Compression.CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var lines = reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.True(lines.Count > 100);
        Assert.StartsWith("{\"task_id\"", lines[2]);
        lines[2] = "{\"prompt\": \"def f():\\n\", " + lines[2][1..];
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "humaneval.jsonl", [.. lines]);
        foreach (var verb in new[] { "stats", "dedup" })
        {
            string[] args = verb == "stats" ? ["data", "stats", input, "--field", "prompt"] : ["data", "dedup", input, "--field", "prompt", "--out", dir.File("d.jsonl")];
            AssertOneLineError(HoneCli.Run(args), $"{input}:3: duplicate key \"prompt\"");
        }
        Assert.False(File.Exists(dir.File("d.jsonl")));
    }

    [Fact]
    public void Stats_prints_a_summary_and_json()
    {
        using var dir = new TempDirectory();
        var input = Sample(dir);
        var text = HoneCli.Run("data", "stats", input);
        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.Contains("4 records", text.Stdout);
        Assert.Contains("1 exact", text.Stdout);
        var json = Json(HoneCli.Run("data", "stats", input, "--json"));
        Assert.Equal((4L, 1L, 3L), ((long)json["records"]!, (long)json["duplicate_records"]!, (long)json["distinct_texts"]!));
        Assert.Equal(14, (double)json["character_lengths"]!["min"]!);
        Assert.Equal(4L, (long)json["top_fields"]!["ppl"]!);
        Assert.NotNull(json["anomalies"]!["non_ascii_share"]);
    }

    [Fact]
    public void Dedup_filter_decontaminate_and_split_write_their_outputs()
    {
        using var dir = new TempDirectory();
        var input = Sample(dir);
        var dedup = Json(HoneCli.Run("data", "dedup", input, "--out", dir.File("d.jsonl"), "--near", "--threshold", "0.7", "--json"));
        Assert.Equal((3L, 1L, 0L), ((long)dedup["kept"]!, (long)dedup["exact_duplicates"]!, (long)dedup["near_duplicates"]!));
        Assert.Equal(Hone.DataTools.LshBands.Choose(0.7, 128).Bands, (int)dedup["minhash"]!["bands"]!);
        Assert.Equal(3, Jsonl.Lines(dir.File("d.jsonl")).Length);

        var filter = Json(HoneCli.Run("data", "filter", input, "--out", dir.File("f.jsonl"), "--min-ppl", "4", "--max-ppl", "12", "--json"));
        Assert.Equal((2L, 1L, 1L), ((long)filter["kept"]!, (long)filter["removed_by"]!["below_min"]!, (long)filter["removed_by"]!["above_max"]!));
        var quantiles = Json(HoneCli.Run("data", "filter", input, "--out", dir.File("q.jsonl"), "--keep-quantiles", "0.25,0.75", "--json"));
        Assert.Equal([3.875, 19.0], quantiles["quantile_bounds"]!.AsArray().Select(n => (double)n!));

        var eval = Jsonl.Write(dir, "eval.jsonl", "{\"question\":\"The quick brown fox jumps over the lazy dog near the river bank.\"}");
        var decon = Json(HoneCli.Run("data", "decontaminate", input, "--against", eval, "--out", dir.File("c.jsonl"), "--json"));
        Assert.Equal((2L, 2L), ((long)decon["dropped"]!, (long)decon["kept"]!));
        Assert.Equal(2, Jsonl.Lines(dir.File("c.contamination.jsonl")).Length);

        var split = Json(HoneCli.Run("data", "split", input, "--out-train", dir.File("t.jsonl"), "--out-val", dir.File("v.jsonl"), "--val", "0.5", "--by", "g", "--json"));
        Assert.Equal(4L, (long)split["train"]! + (long)split["validation"]!);
        var human = HoneCli.Run("data", "split", input, "--out-train", dir.File("t.jsonl"), "--out-val", dir.File("v.jsonl"), "--seed", "3");
        Assert.True(human.ExitCode == 0, human.ToString());
        Assert.Contains("wrote", human.Stdout);
    }

    [SkippableFact]
    public void Score_adds_fields_through_the_command()
    {
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"Once upon a time, there was a little girl.\"}", "{\"text\":\"\"}");
        var json = Json(HoneCli.Run("data", "score", input, "--model", model, "--out", dir.File("s.jsonl"), "--ctx", "64", "--json"));
        Assert.Equal((2L, 1L, 1L), ((long)json["records"]!, (long)json["scored"]!, (long)json["unscorable"]!));
        Assert.StartsWith("full:", (string)json["protocol"]!);
        var first = JsonNode.Parse(Jsonl.Lines(dir.File("s.jsonl"))[0])!;
        Assert.InRange((double)first["ppl"]!, 1.0, 100.0);
        var filtered = Json(HoneCli.Run("data", "filter", dir.File("s.jsonl"), "--out", dir.File("f.jsonl"), "--max-ppl", "1000", "--json"));
        Assert.Equal((1L, 1L), ((long)filtered["kept"]!, (long)filtered["removed_by"]!["no_value"]!));
    }

    [Fact]
    public void Errors_are_one_line_with_exit_code_1()
    {
        using var dir = new TempDirectory();
        var input = Sample(dir);
        AssertOneLineError(HoneCli.Run("data", "stats", dir.File("missing.jsonl")), "missing.jsonl: no such file");
        var bad = Jsonl.Write(dir, "bad.jsonl", "{\"text\":\"ok\"}", "{\"text\":\"broken\"");
        AssertOneLineError(HoneCli.Run("data", "dedup", bad, "--out", dir.File("o.jsonl")), "bad.jsonl:2: not valid JSON");
        Assert.False(File.Exists(dir.File("o.jsonl")));
        var skipped = Json(HoneCli.Run("data", "dedup", bad, "--out", dir.File("o.jsonl"), "--skip-bad-lines", "--json"));
        Assert.Equal(1L, (long)skipped["bad_lines"]!);
        AssertOneLineError(HoneCli.Run("data", "filter", input, "--out", dir.File("f.jsonl")), "nothing to filter by");
        AssertOneLineError(HoneCli.Run("data", "filter", input, "--out", dir.File("f.jsonl"), "--keep-quantiles", "0.9"), "--keep-quantiles takes LOW,HIGH");
        AssertOneLineError(HoneCli.Run("data", "dedup", input, "--out", input), "would overwrite the input");
        AssertOneLineError(HoneCli.Run("data", "split", input, "--out-train", dir.File("t"), "--out-val", dir.File("v"), "--val", "2"), "--val must be between 0 and 1");
        AssertOneLineError(HoneCli.Run("data", "decontaminate", input, "--against", dir.File("nope.csv"), "--out", dir.File("c.jsonl")), "nope.csv: no such evaluation file");
        var usage = HoneCli.Run("data", "dedup", input);
        Assert.NotEqual(0, usage.ExitCode);
        Assert.Contains("--out", usage.Stderr);
    }

    [SkippableFact]
    public void Sigterm_stops_the_run_and_leaves_no_output()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "sends SIGTERM through Linux libc");
        using var dir = new TempDirectory();
        var input = AtomicOutputTests.BigInput(dir, 300_000);
        using var p = HoneCli.Start(null, "data", "dedup", input, "--out", dir.File("out.jsonl"), "--near", "--threads", "1");
        HangGuard.WaitUntil(() => Directory.GetFiles(dir.Path, ".out.jsonl.*.tmp").Any(f => new FileInfo(f).Length > 0) || p.HasExited, 5);
        Assert.False(p.HasExited, "the run ended before it could be stopped; make the input bigger\n" + p.Stderr);
        Assert.Equal(0, Kill(p.Id, 15)); // SIGTERM
        var r = p.WaitForExit();
        Assert.True(r.ExitCode == 130, r.ToString());
        Assert.Contains("cancelled", r.Stderr);
        Assert.Empty(Jsonl.Others(dir, "in.jsonl"));
    }
}
