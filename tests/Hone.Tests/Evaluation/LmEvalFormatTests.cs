using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hone.Evaluation;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>`hone eval --format lm-eval`: lm-evaluation-harness 0.4's results layout, read back the way its own
/// make_table reads it, with the same numbers as Hone's own format for the same run.</summary>
public class LmEvalFormatTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static readonly string[] TopLevelKeys =
    [
        "results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "git_hash", "date",
        "pretty_env_info", "transformers_version", "lm_eval_version", "upper_git_hash", "task_hashes", "model_source", "model_name",
        "model_name_sanitized", "system_instruction", "system_instruction_sha", "fewshot_as_multiturn", "chat_template", "chat_template_sha",
        "start_time", "end_time", "total_evaluation_time_seconds",
    ];

    /// <summary>What Python's json.loads makes a float: a number written with a point or an exponent.</summary>
    static bool IsFloat(JsonNode? n) => n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number && v.ToJsonString().IndexOfAny(['.', 'e', 'E']) >= 0;

    static string Percent4(JsonNode? n) => double.Parse(n!.ToJsonString(), CultureInfo.InvariantCulture).ToString("F4", CultureInfo.InvariantCulture);

    /// <summary>lm-eval's make_table (lm_eval/utils.py) step by step: per task its version, n-shot and higher_is_better;
    /// "alias" popped and used as the name; the other keys sorted; "metric,filter" split at the comma; *_stderr keys
    /// skipped; a float value printed "%.4f"; its stderr found under metric + "_stderr," + filter, printed "%.4f" or
    /// "   N/A" (any other stderr value would raise in Python's "%.4f" %, so it fails here).</summary>
    static List<string[]> MakeTable(JsonObject result)
    {
        var rows = new List<string[]>();
        foreach (var (task, node) in result["results"]!.AsObject())
        {
            var dic = node!.AsObject().ToDictionary(p => p.Key, p => p.Value);
            string version = result["versions"]![task] is JsonNode v ? v.ToJsonString() : "    N/A";
            string n = result["n-shot"]![task]!.ToJsonString();
            var higher = result["higher_is_better"]![task]!.AsObject();
            string name = dic.Remove("alias", out var alias) ? (string)alias! : task;
            foreach (var (mf, value) in dic.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                int comma = mf.IndexOf(',');
                string m = comma < 0 ? mf : mf[..comma], f = comma < 0 ? "" : mf[(comma + 1)..];
                if (m.EndsWith("_stderr", StringComparison.Ordinal)) continue;
                string arrow = higher[m] is JsonValue h ? ((bool)h ? "↑" : "↓") : "";
                Assert.True(IsFloat(value), $"{task} {mf}: {value?.ToJsonString()} is not a float");
                Assert.True(dic.TryGetValue($"{m}_stderr,{f}", out var se), $"{task} {mf}: no stderr");
                string stderr = se is JsonValue s && s.TryGetValue(out string? text) ? (text == "N/A" ? "   N/A" : throw new Xunit.Sdk.XunitException($"{task}: stderr \"{text}\""))
                    : IsFloat(se) ? Percent4(se) : throw new Xunit.Sdk.XunitException($"{task} {mf}: stderr {se?.ToJsonString()} is neither a float nor \"N/A\"");
                rows.Add([name, version, f, n, m, arrow, Percent4(value), "±", stderr]);
                name = "";
                version = "";
            }
        }
        return rows;
    }

    static void WriteLines(string path, params JsonObject[] records) => File.WriteAllLines(path, records.Select(r => r.ToJsonString()));

    [SkippableFact]
    public void Lm_eval_layout_holds_the_same_numbers_as_hones_own_and_reads_like_lm_eval_results()
    {
        var model = SharedData.Require(Model);
        var text = File.ReadAllText(SharedData.Require("datasets/tinyshakespeare/input.txt"))[..3000];
        using var dir = new TempDirectory();
        WriteLines(dir.File("g.jsonl"),
            new JsonObject { ["question"] = "Once upon a time, there was a little girl named", ["answer"] = "Lily" },
            new JsonObject { ["question"] = "1 1 1 1 1 1 1 1 1 1 1 1", ["answer"] = "1" },
            new JsonObject { ["question"] = "Once upon a time, there was a little boy named", ["answer"] = "Tim" });
        File.WriteAllText(dir.File("gen.json"), """{"version": 1, "kind": "generate", "data": "g.jsonl", "prompt": "{question}", "max_tokens": 8, "stop": ["."], "scorers": ["exact_match", "f1"]}""");
        WriteLines(dir.File("q.jsonl"),
            new JsonObject { ["question"] = "The dog ran to the", ["choices"] = new JsonArray("park", "big green park near the house", "café"), ["answer"] = 1 },
            new JsonObject { ["question"] = "Tom was very", ["choices"] = new JsonArray("happy", "sad", "hungry"), ["answer"] = 0 },
            new JsonObject { ["question"] = "She saw a big red", ["choices"] = new JsonArray("ball", "car"), ["answer"] = 1 });
        File.WriteAllText(dir.File("mc.json"), """{"version": 1, "kind": "multiple_choice", "data": "q.jsonl", "format": "cloze", "prompt": "{question}"}""");
        var docs = Enumerable.Range(0, 4).Select(i => text.Substring(i * 600, 500)).ToArray();
        WriteLines(dir.File("docs.jsonl"), docs.Select(d => new JsonObject { ["text"] = d }).ToArray());
        File.WriteAllText(dir.File("ppl.json"), """{"version": 1, "kind": "perplexity", "data": "docs.jsonl"}""");
        WriteLines(dir.File("j.jsonl"),
            new JsonObject { ["prompt"] = "1 1 1 1 1 1 1 1 1 1 1 1", ["answer"] = "0" },
            new JsonObject { ["prompt"] = "Once upon a time", ["answer"] = "0" },
            new JsonObject { ["prompt"] = "1 1 1", ["answer"] = "1" });
        File.WriteAllText(dir.File("s.json"), """{"version": 1, "kind": "sampled", "data": "j.jsonl", "n": 4, "k": [1, 2], "max_tokens": 2, "sampling": {"temperature": 1.0}, "checker": {"type": "json"}}""");
        string[] tasks = ["--task", dir.File("gen.json"), "--task", dir.File("mc.json"), "--task", dir.File("ppl.json"), "--task", dir.File("s.json")];

        var hone = HoneCli.Run(["eval", model, .. tasks, "--limit", "2", "--seed", "5", "--threads", "2", "--out", dir.File("hone.json")]);
        Assert.True(hone.ExitCode == 0, hone.ToString());
        var lm = HoneCli.Run(["eval", model, .. tasks, "--limit", "2", "--seed", "5", "--threads", "2", "--out", dir.File("lm.json"), "--format", "lm-eval"]);
        Assert.True(lm.ExitCode == 0, lm.ToString());
        var records = EvalResults.Read(dir.File("hone.json"));
        var file = File.ReadAllText(dir.File("lm.json"));
        var result = JsonNode.Parse(file)!.AsObject();

        foreach (var key in TopLevelKeys) Assert.True(result.ContainsKey(key), $"no \"{key}\"");
        Assert.Null(result["format"]); // not Hone's layout
        Assert.Equal(["gen", "mc", "ppl", "s"], result["results"]!.AsObject().Select(p => p.Key));

        double Value(JsonObject record, string metric) => (double)record["metrics"]![metric]!["value"]!;
        double? Stderr(JsonObject record, string metric) => (double?)record["metrics"]![metric]!["stderr"];
        foreach (var record in records)
        {
            string task = (string)record["task"]!;
            var entry = result["results"]![task]!.AsObject();
            Assert.Equal(task, (string)entry["alias"]!);
            var expected = new List<(string Metric, double Value, double? Stderr)>();
            if ((string)record["kind"]! == "perplexity")
            {
                // word_perplexity recomputed here: exp(NLL / words), words as lm-eval's len(re.split(r"\s+", doc)).
                double nll = (double)record["details"]!["negative_log_likelihood"]!;
                long words = docs.Take(2).Sum(d => Regex.Split(d, @"\s+").Length);
                double bpb = Value(record, "bits_per_byte");
                double bytes = (long)record["details"]!["bytes"]!;
                Assert.Equal(Math.Exp(nll / bytes), Math.Pow(2, bpb), 1e-9 * Math.Pow(2, bpb));
                expected.Add(("word_perplexity", Math.Exp(nll / words), null));
                expected.Add(("byte_perplexity", Math.Pow(2, bpb), Math.Pow(2, bpb) * Math.Log(2) * Stderr(record, "bits_per_byte")));
                expected.Add(("bits_per_byte", bpb, Stderr(record, "bits_per_byte")));
                expected.Add(("token_perplexity", Value(record, "perplexity"), Stderr(record, "perplexity")));
            }
            else
                foreach (var (metric, _) in record["metrics"]!.AsObject()) expected.Add((metric, Value(record, metric), Stderr(record, metric)));
            Assert.Equal(expected.SelectMany(e => new[] { $"{e.Metric},none", $"{e.Metric}_stderr,none" }).Prepend("alias"), entry.Select(p => p.Key));
            foreach (var (metric, value, stderr) in expected)
            {
                Assert.Equal(value, (double)entry[$"{metric},none"]!, Math.Abs(value) * 1e-12);
                if (stderr is double se) Assert.Equal(se, (double)entry[$"{metric}_stderr,none"]!, se * 1e-12);
                else Assert.Equal("N/A", (string)entry[$"{metric}_stderr,none"]!);
            }

            var config = result["configs"]![task]!.AsObject();
            Assert.Equal(task, (string)config["task"]!);
            Assert.Equal((string)record["protocol"]!["data"]!, (string)config["dataset_path"]!);
            Assert.Equal(expected.Select(e => e.Metric), config["metric_list"]!.AsArray().Select(m => (string)m!["metric"]!));
            Assert.Equal(0, (int)config["num_fewshot"]!);
            Assert.Equal(0, (int)result["n-shot"]![task]!);
            Assert.Equal(1, (int)result["versions"]![task]!);
            Assert.Equal(record["protocol"]!.ToJsonString(), config["metadata"]!["hone_protocol"]!.ToJsonString());
            Assert.Equal(expected.Select(e => e.Metric), result["higher_is_better"]![task]!.AsObject().Select(p => p.Key));
            Assert.Equal(2, (int)result["n-samples"]![task]!["effective"]!);
            Assert.Empty(result["group_subtasks"]![task]!.AsArray());
        }
        Assert.Equal("loglikelihood_rolling", (string)result["configs"]!["ppl"]!["output_type"]!);
        Assert.Equal("multiple_choice", (string)result["configs"]!["mc"]!["output_type"]!);
        Assert.Equal("generate_until", (string)result["configs"]!["gen"]!["output_type"]!);
        var generation = result["configs"]!["gen"]!["generation_kwargs"]!;
        Assert.Equal(["."], generation["until"]!.AsArray().Select(x => (string)x!));
        Assert.Equal(8, (int)generation["max_gen_toks"]!);
        Assert.False((bool)generation["do_sample"]!);
        Assert.True((bool)result["configs"]!["s"]!["generation_kwargs"]!["do_sample"]!);
        Assert.Equal(4, (int)result["configs"]!["s"]!["repeats"]!);
        Assert.Equal(3, (int)result["n-samples"]!["gen"]!["original"]!);
        Assert.Equal(4, (int)result["n-samples"]!["ppl"]!["original"]!);
        Assert.All(result["higher_is_better"]!["ppl"]!.AsObject(), p => Assert.False((bool)p.Value!));
        Assert.All(result["higher_is_better"]!["mc"]!.AsObject(), p => Assert.True((bool)p.Value!));

        var run = result["config"]!;
        Assert.Equal("hone", (string)run["model"]!);
        Assert.Equal("pretrained=" + Path.GetFullPath(model), (string)run["model_args"]!);
        Assert.Equal(2, (int)run["limit"]!);
        Assert.Equal(5, (int)run["random_seed"]!);
        Assert.Equal(1, (int)run["batch_size"]!);
        Assert.Equal(Path.GetFullPath(model), (string)result["model_name"]!);
        Assert.DoesNotContain("/", (string)result["model_name_sanitized"]!);
        Assert.True(IsFloat(result["date"]));
        Assert.True(double.Parse((string)result["total_evaluation_time_seconds"]!, CultureInfo.InvariantCulture) > 0);
        Assert.Equal(["<s>", "1"], result["tokenizer_bos_token"]!.AsArray().Select(x => (string)x!));
        Assert.Equal((int)records[0]["context"]!, (int)result["max_length"]!);
        Assert.Equal((string)records[0]["hone_version"]!, (string)result["hone_version"]!);

        // Read as lm-eval prints it: every value a float, every stderr a float or "N/A".
        var table = MakeTable(result);
        var acc = records.Single(r => (string)r["task"]! == "mc");
        Assert.Contains(table, row => row.SequenceEqual(["mc", "1", "none", "0", "acc", "↑", Value(acc, "acc").ToString("F4", CultureInfo.InvariantCulture), "±",
            Stderr(acc, "acc")!.Value.ToString("F4", CultureInfo.InvariantCulture)]));
        Assert.Contains(table, row => row[4] == "word_perplexity" && row[5] == "↓" && row[8] == "   N/A");
        Assert.Equal(2 + 4 + 2 + 4, table.Count);

        // Hone's own readers say what the file is rather than misreading it.
        var compare = HoneCli.Run("eval", "compare", dir.File("hone.json"), dir.File("lm.json"));
        Assert.Equal(1, compare.ExitCode);
        Assert.Contains("an lm-evaluation-harness results file", compare.Stderr);
    }

    static JsonObject Record(string task, string kind, JsonObject metrics, JsonObject? details = null) => new()
    {
        ["task"] = task, ["kind"] = kind, ["source"] = "test", ["n"] = 10, ["metrics"] = metrics, ["protocol"] = new JsonObject { ["data"] = "d.jsonl" },
        ["details"] = details ?? new JsonObject(), ["model"] = "/m/model.gguf", ["adapter"] = "/runs/sft", ["seed"] = 7, ["limit"] = null, ["context"] = 256,
        ["elapsed_seconds"] = 1.5, ["hone_version"] = "1.2.3+abcdef0", ["started_utc"] = "2026-01-02T03:04:05Z",
    };

    static JsonObject Metric(double? value, double? stderr, bool higher = true) => new() { ["value"] = value, ["stderr"] = stderr, ["higher_is_better"] = higher };

    [Fact]
    public void Only_what_hone_computed_is_written_with_missing_errors_as_NA_and_floats_as_floats()
    {
        var document = LmEvalResults.Document(
        [
            Record("qa", "multiple_choice", new JsonObject { ["acc"] = Metric(0, null), ["acc_norm"] = Metric(1, 0.25) }),
            // No word count (a file from before words were counted): no word_perplexity, rather than a made-up one.
            Record("ppl", "perplexity", new JsonObject { ["perplexity"] = Metric(12.5, null, false), ["bits_per_byte"] = Metric(1.5, 0.1, false) },
                new JsonObject { ["negative_log_likelihood"] = 100.0, ["bytes"] = 96 }),
        ]);
        var qa = document["results"]!["qa"]!;
        Assert.Equal("N/A", (string)qa["acc_stderr,none"]!);
        Assert.Equal(0.25, (double)qa["acc_norm_stderr,none"]!);
        Assert.Equal(["alias", "byte_perplexity,none", "byte_perplexity_stderr,none", "bits_per_byte,none", "bits_per_byte_stderr,none",
            "token_perplexity,none", "token_perplexity_stderr,none"], document["results"]!["ppl"]!.AsObject().Select(p => p.Key));
        Assert.Equal(Math.Pow(2, 1.5), (double)document["results"]!["ppl"]!["byte_perplexity,none"]!, 1e-12);
        Assert.Equal(Math.Pow(2, 1.5) * Math.Log(2) * 0.1, (double)document["results"]!["ppl"]!["byte_perplexity_stderr,none"]!, 1e-12);
        Assert.Equal("N/A", (string)document["results"]!["ppl"]!["token_perplexity_stderr,none"]!);
        // 0 and 1 are written 0.0 and 1.0, as Python writes floats: lm-eval's table formats only floats.
        string json = document.ToJsonString(EvalResults.Indented);
        Assert.Contains("\"acc,none\": 0.0,", json);
        Assert.Contains("\"acc_norm,none\": 1.0,", json);
        Assert.Equal(2 + 3, MakeTable(document).Count);
        // lm-eval names the model after its adapter (peft= before pretrained=) and sanitizes the name for paths.
        Assert.Equal("pretrained=/m/model.gguf,peft=/runs/sft", (string)document["config"]!["model_args"]!);
        Assert.Equal("/runs/sft", (string)document["model_name"]!);
        Assert.Equal("__runs__sft", (string)document["model_name_sanitized"]!);
        Assert.Equal("abcdef0", (string)document["git_hash"]!);
        Assert.Equal((new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc) - DateTime.UnixEpoch).TotalSeconds, (double)document["date"]!);
        Assert.Equal("3.0", (string)document["total_evaluation_time_seconds"]!);
        Assert.Null(document["tokenizer_bos_token"]); // no tokenizer facts given: left out, as lm-eval does for GGUF servers

        var twice = Assert.Throws<ArgumentException>(() => LmEvalResults.Document(
            [Record("qa", "generate", new JsonObject { ["f1"] = Metric(0.5, 0.1) }), Record("qa", "generate", new JsonObject { ["f1"] = Metric(0.5, 0.1) })]));
        Assert.Contains("\"qa\" appears twice", twice.Message);
    }

    [Fact]
    public void Help_says_what_each_format_is_and_an_unknown_one_is_refused()
    {
        var help = HoneCli.Run("eval", "--help");
        Assert.Equal(0, help.ExitCode);
        string text = Regex.Replace(help.Stdout, @"\s+", " ");
        Assert.Contains("--format", text);
        Assert.Contains("hone (default) = Hone's own", text);
        Assert.Contains("lm-eval = lm-evaluation-harness 0.4's results layout", text);
        var bad = HoneCli.Run("eval", "model.gguf", "--task", "t.json", "--out", "r.json", "--format", "csv");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("csv", bad.Stderr + bad.Stdout);
    }
}
