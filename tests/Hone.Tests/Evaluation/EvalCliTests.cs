using System.Numerics;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Inference;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>`hone eval` end to end on the real stories260K model: MMLU with --limit (log-likelihoods checked against
/// brute force), a generate task with hand-computable scores, sampled tasks with the JSON checker, perplexity against
/// `hone perplexity`, --adapter, the results file, and `hone eval compare`.</summary>
public class EvalCliTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static JsonObject Run(params string[] args)
    {
        var r = HoneCli.Run(["eval", .. args, "--threads", "2"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        int outAt = Array.IndexOf(args, "--out");
        var document = JsonNode.Parse(File.ReadAllText(args[outAt + 1]))!.AsObject();
        Assert.Equal("hone-eval-results", (string)document["format"]!);
        Assert.Equal(1, (int)document["format_version"]!);
        return document;
    }

    static JsonObject Only(JsonObject document) => Assert.Single(document["results"]!.AsArray())!.AsObject();

    static double Metric(JsonObject record, string name) => (double)record["metrics"]![name]!["value"]!;
    static double? Stderr(JsonObject record, string name) => (double?)record["metrics"]![name]!["stderr"];

    static void WriteLines(string path, params JsonObject[] records) => File.WriteAllLines(path, records.Select(r => r.ToJsonString()));

    [SkippableFact]
    public void Mmlu_subset_with_limit_writes_a_complete_record_and_brute_force_log_likelihoods()
    {
        var model = SharedData.Require(Model);
        SharedData.Require("datasets/mmlu/test/clinical_knowledge_test.csv");
        using var dir = new TempDirectory();
        var record = Only(Run(model, "--task", "mmlu:clinical_knowledge", "--limit", "6", "--out", dir.File("r.json")));
        Assert.Equal("mmlu:clinical_knowledge", (string)record["task"]!);
        Assert.Equal("multiple_choice", (string)record["kind"]!);
        Assert.Equal(6, (int)record["n"]!);
        foreach (var metric in new[] { "acc", "acc_norm" })
        {
            double p = Metric(record, metric);
            Assert.InRange(p, 0, 1);
            Assert.Equal(Math.Round(p * 6), p * 6, 9);                          // a fraction of 6 questions
            Assert.Equal(Math.Sqrt(p * (1 - p) / 5), Stderr(record, metric)!.Value, 12);
            Assert.StartsWith("binomial", (string)record["metrics"]![metric]!["stderr_method"]!);
        }
        // MMLU's choices are single letters: per-byte normalization cannot change the decision.
        Assert.Equal(Metric(record, "acc"), Metric(record, "acc_norm"));
        Assert.Equal(Path.GetFullPath(model), (string)record["model"]!);
        Assert.Null(record["adapter"]);
        Assert.Equal(1234UL, (ulong)record["seed"]!);
        Assert.Equal(6, (int)record["limit"]!);
        Assert.True((double)record["elapsed_seconds"]! > 0);
        Assert.False(string.IsNullOrEmpty((string)record["hone_version"]!));
        var protocol = record["protocol"]!;
        Assert.Equal(0, (int)protocol["num_fewshot"]!);
        Assert.Equal("The following are multiple choice questions (with answers) about clinical knowledge.\n\n", (string)protocol["description"]!);
        Assert.True((bool)protocol["bos"]!);

        // The first question's sums equal a brute-force forward per continuation token.
        var first = record["details"]!["first_question"]!;
        string context = (string)first["context"]!;
        Assert.EndsWith("\nD. 24 gauge.\nAnswer:", context);
        using var loaded = LoadedModel.Open(model, context: 512);
        var contextIds = new[] { loaded.Tokenizer.BosId!.Value }.Concat(loaded.Tokenizer.Encode(context, false, false)).ToArray();
        Assert.Equal(contextIds.Length, (int)first["context_tokens"]!);
        var logits = new float[loaded.Model.Config.VocabSize];
        for (int c = 0; c < 4; c++)
        {
            var cont = first["continuation_tokens"]![c]!.AsArray().Select(n => (int)n!).ToArray();
            double want = 0;
            for (int j = 0; j < cont.Length; j++)
            {
                loaded.Model.Reset();
                loaded.Model.Forward([.. contextIds, .. cont[..j]], logits);
                double max = logits.Max();
                want += logits[cont[j]] - (max + Math.Log(logits.Sum(l => Math.Exp(l - max))));
            }
            Assert.Equal(want, (double)first["log_likelihoods"]![c]!, 3);
        }
    }

    [SkippableFact]
    public void Few_shot_examples_are_drawn_with_the_seed_and_recorded()
    {
        var model = SharedData.Require(Model);
        SharedData.Require("datasets/mmlu/dev/clinical_knowledge_dev.csv");
        using var dir = new TempDirectory();
        var a = Only(Run(model, "--task", "mmlu:clinical_knowledge", "--limit", "2", "--num-fewshot", "2", "--seed", "7", "--out", dir.File("a.json")));
        var b = Only(Run(model, "--task", "mmlu:clinical_knowledge", "--limit", "2", "--num-fewshot", "2", "--seed", "7", "--out", dir.File("b.json")));
        var p = a["protocol"]!;
        Assert.Equal(2, (int)p["num_fewshot"]!);
        Assert.Equal("random", (string)p["fewshot_sampler"]!);
        Assert.Equal(7UL, (ulong)p["fewshot_seed"]!);
        var picked = p["fewshot_indices"]!.AsArray().Select(n => (int)n!).ToArray();
        Assert.Equal(2, picked.Distinct().Count());
        Assert.Equal(a["metrics"]!.ToJsonString(), b["metrics"]!.ToJsonString()); // same seed, same numbers
        Assert.Equal(p.ToJsonString(), b["protocol"]!.ToJsonString());
        var dev = Hone.Evaluation.EvalData.ReadMmluCsv(SharedData.Require("datasets/mmlu/dev/clinical_knowledge_dev.csv"));
        string context = (string)a["details"]!["first_question"]!["context"]!;
        int at0 = context.IndexOf(dev[picked[0]].Question.Trim(), StringComparison.Ordinal), at1 = context.IndexOf(dev[picked[1]].Question.Trim(), StringComparison.Ordinal);
        Assert.True(at0 > 0 && at1 > at0, "the drawn examples appear in the prompt in the drawn order");
    }

    [SkippableFact]
    public void Generate_task_scores_greedy_answers()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        // stories260K continues these greedily with " Lily." and " Timmy." (its published greedy sample starts
        // "Once upon a time, there was a little girl named Lily."), and "1 1 1 ..." with "00000000".
        WriteLines(dir.File("g.jsonl"),
            new JsonObject { ["question"] = "Once upon a time, there was a little girl named", ["answer"] = "Lily" },
            new JsonObject { ["question"] = "Once upon a time, there was a little boy named", ["answer"] = new JsonArray("Tim", "Timmy") },
            new JsonObject { ["question"] = "1 1 1 1 1 1 1 1 1 1 1 1", ["answer"] = "1" });
        File.WriteAllText(dir.File("task.json"), new JsonObject
        {
            ["version"] = 1, ["kind"] = "generate", ["data"] = "g.jsonl", ["prompt"] = "{question}", ["max_tokens"] = 8, ["stop"] = new JsonArray("."),
            ["scorers"] = new JsonArray(
                new JsonObject { ["name"] = "exact_match", ["normalize"] = new JsonArray("strip") },
                new JsonObject { ["name"] = "exact_match", ["metric"] = "exact_raw" },
                "contains", "f1",
                new JsonObject { ["name"] = "regex", ["pattern"] = @"^\s*(\w+)" }),
        }.ToJsonString());
        var record = Only(Run(model, "--task", dir.File("task.json"), "--out", dir.File("r.json")));
        Assert.Equal("task", (string)record["task"]!);
        Assert.Equal("generate", (string)record["kind"]!);
        Assert.Equal(3, (int)record["n"]!);
        foreach (var metric in new[] { "exact_match", "contains", "f1", "regex" })
        {
            Assert.Equal(2.0 / 3, Metric(record, metric), 12);
            Assert.Equal(1.0 / 3, Stderr(record, metric)!.Value, 12); // scores 1, 1, 0: sample variance 1/3, over n = 3
        }
        Assert.Equal(0, Metric(record, "exact_raw")); // the answers come with their leading space: " Lily"
        var first = record["details"]!["first_record"]!;
        Assert.Equal(" Lily", (string)first["output"]!);
        Assert.Equal(1, (double)first["scores"]!["exact_match"]!);
        Assert.Equal("greedy (argmax)", (string)record["protocol"]!["sampling"]!["mode"]!);
        Assert.Contains("decode(prompt + generated ids)", (string)record["protocol"]!["completion_text"]!);
    }

    [SkippableFact]
    public void Chat_prompts_go_through_the_chat_template()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        WriteLines(dir.File("g.jsonl"), new JsonObject { ["prompt"] = "Tell me a story", ["answer"] = "x" });
        File.WriteAllText(dir.File("chat.json"), """{"version": 1, "kind": "generate", "data": "g.jsonl", "chat": true, "max_tokens": 4, "scorers": ["contains"]}""");
        var record = Only(Run(model, "--task", dir.File("chat.json"), "--out", dir.File("r.json")));
        // stories260K has no template of its own: the plain instruction/response one is used and named.
        Assert.Equal("### Instruction:\nTell me a story\n\n### Response:\n", (string)record["details"]!["first_record"]!["prompt"]!);
        Assert.True((bool)record["protocol"]!["prompt"]!["chat"]!);
        Assert.Contains("plain", (string)record["protocol"]!["prompt"]!["chat_template"]!);
    }

    static string JsonTask(TempDirectory dir, string name, int n, int[] k, double temperature)
    {
        // "1 1 1 ..." → "0" (one token), valid JSON equal to the first target and unequal to the second; a story
        // prompt gives words, which are not JSON.
        WriteLines(dir.File("j.jsonl"),
            new JsonObject { ["prompt"] = "1 1 1 1 1 1 1 1 1 1 1 1", ["answer"] = "0" },
            new JsonObject { ["prompt"] = "1 1 1 1 1 1 1 1 1 1 1 1", ["answer"] = new JsonObject { ["zero"] = 0 } },
            new JsonObject { ["prompt"] = "Once upon a time", ["answer"] = "0" });
        File.WriteAllText(dir.File(name), new JsonObject
        {
            ["version"] = 1, ["kind"] = "sampled", ["data"] = "j.jsonl", ["n"] = n, ["k"] = new JsonArray(k.Select(x => (JsonNode)x).ToArray()),
            ["max_tokens"] = 1, ["sampling"] = new JsonObject { ["temperature"] = temperature }, ["checker"] = new JsonObject { ["type"] = "json" },
        }.ToJsonString());
        return dir.File(name);
    }

    [SkippableFact]
    public void Sampled_task_with_json_checker_counts_each_outcome()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var record = Only(Run(model, "--task", JsonTask(dir, "greedy.json", 3, [1, 3], 0), "--out", dir.File("r.json")));
        Assert.Equal("sampled", (string)record["kind"]!);
        var details = record["details"]!;
        Assert.Equal([3, 0, 0], details["correct_per_problem"]!.AsArray().Select(x => (int)x!));
        Assert.Equal(3, (int)details["outcomes"]!["pass"]!);
        Assert.Equal(3, (int)details["outcomes"]!["fail"]!);
        Assert.Equal(3, (int)details["outcomes"]!["invalid_json"]!);
        foreach (var m in new[] { "pass@1", "pass@3", "pass^1", "pass^3" }) Assert.Equal(1.0 / 3, Metric(record, m), 12);
        Assert.Equal(Math.Sqrt(1.0 / 3 / 3), Stderr(record, "pass@1")!.Value, 12);
        Assert.StartsWith("analytical", (string)record["metrics"]!["pass@1"]!["stderr_method"]!);
        Assert.Equal("0", (string)details["first_sample"]!["completion"]!); // the digit token carries no word-start space
        Assert.Equal(1, (int)details["first_failure"]!["problem"]!);
        Assert.Equal("fail", (string)details["first_failure"]!["outcome"]!);
    }

    [Fact]
    public void Sampled_task_with_a_json_schema_constrains_every_sample()
    {
        using var dir = new TempDirectory();
        WriteLines(dir.File("s.jsonl"),
            new JsonObject { ["prompt"] = "Where is order 3?", ["answer"] = new JsonObject { ["order"] = 3, ["status"] = "shipped" } },
            new JsonObject { ["prompt"] = "Where is order 4?", ["answer"] = new JsonObject { ["order"] = 4, ["status"] = "shipped" } });
        var schema = new JsonObject
        {
            ["type"] = "object", ["required"] = new JsonArray("order", "status"),
            ["properties"] = new JsonObject
            {
                ["order"] = new JsonObject { ["type"] = "integer", ["minimum"] = 3, ["maximum"] = 4 },
                ["status"] = new JsonObject { ["const"] = "shipped" },
            },
        };
        JsonObject Task(JsonNode? constraint) => new()
        {
            ["version"] = 1, ["kind"] = "sampled", ["data"] = "s.jsonl", ["n"] = 8, ["k"] = new JsonArray(1), ["max_tokens"] = 60,
            ["sampling"] = new JsonObject { ["temperature"] = 1.0 }, ["checker"] = new JsonObject { ["type"] = "json" }, ["json_schema"] = constraint,
        };
        File.WriteAllText(dir.File("free.json"), Task(null).ToJsonString());
        File.WriteAllText(dir.File("schema.json"), schema.ToJsonString());
        File.WriteAllText(dir.File("constrained.json"), Task("schema.json").ToJsonString());
        var free = Only(Run(TinyChatModel.Path, "--task", dir.File("free.json"), "--out", dir.File("a.json")));
        var constrained = Only(Run(TinyChatModel.Path, "--task", dir.File("constrained.json"), "--out", dir.File("b.json")));
        Assert.Equal(0, (int?)free["details"]!["outcomes"]!["pass"] ?? 0);
        // Every constrained output is a valid object of the schema: the json checker finds the right order about half the time, never invalid JSON.
        Assert.Null(constrained["details"]!["outcomes"]!["invalid_json"]);
        Assert.Equal(16, (int?)constrained["details"]!["outcomes"]!["pass"] + ((int?)constrained["details"]!["outcomes"]!["fail"] ?? 0));
        Assert.InRange(Metric(constrained, "pass@1"), 0.1, 0.9);
        Assert.EndsWith("schema.json", (string)constrained["protocol"]!["constrained_decoding"]!["source"]!["json_schema"]!);

        File.WriteAllText(dir.File("bad.json"), Task(new JsonObject { ["type"] = "object", ["patternProperties"] = new JsonObject() }).ToJsonString());
        var r = HoneCli.Run("eval", TinyChatModel.Path, "--task", dir.File("bad.json"), "--out", dir.File("c.json"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("keyword 'patternProperties' is not supported", r.Stderr);
    }

    static BigInteger Choose(int n, int k)
    {
        if (k < 0 || k > n) return 0;
        BigInteger r = 1;
        for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
        return r;
    }

    [SkippableFact]
    public void Sampled_pass_at_k_aggregates_the_per_problem_counts_and_repeats_with_the_seed()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var task = JsonTask(dir, "sampled.json", 6, [1, 2, 6], 1.5);
        var record = Only(Run(model, "--task", task, "--seed", "11", "--out", dir.File("a.json")));
        var again = Only(Run(model, "--task", task, "--seed", "11", "--out", dir.File("b.json")));
        Assert.Equal(record["details"]!.ToJsonString(), again["details"]!.ToJsonString());
        var correct = record["details"]!["correct_per_problem"]!.AsArray().Select(x => (int)x!).ToArray();
        Assert.Equal(18, record["details"]!["outcomes"]!.AsObject().Sum(o => (int)o.Value!));
        Assert.Equal(correct.Sum(), (int?)record["details"]!["outcomes"]!["pass"] ?? 0);
        foreach (var k in new[] { 1, 2, 6 })
        {
            double at = correct.Average(c => (double)(Choose(6, k) - Choose(6 - c, k)) / (double)Choose(6, k));
            double hat = correct.Average(c => (double)Choose(c, k) / (double)Choose(6, k));
            Assert.Equal(at, Metric(record, $"pass@{k}"), 12);
            Assert.Equal(hat, Metric(record, $"pass^{k}"), 12);
        }
        Assert.Equal(1.5, (double)record["protocol"]!["sampling"]!["temperature"]!, 6);
    }

    [SkippableFact]
    public void Perplexity_task_agrees_with_hone_perplexity_and_counts_bytes_of_the_text()
    {
        var model = SharedData.Require(Model);
        var text = File.ReadAllText(SharedData.Require("datasets/tinyshakespeare/input.txt"))[..3000];
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("text.txt"), text);
        File.WriteAllText(dir.File("ppl.json"), """{"version": 1, "kind": "perplexity", "data": "text.txt", "context": 128}""");
        var record = Only(Run(model, "--task", dir.File("ppl.json"), "--out", dir.File("r.json")));
        var p = HoneCli.Run("perplexity", model, "--file", dir.File("text.txt"), "--ctx", "128", "--json");
        Assert.True(p.ExitCode == 0, p.ToString());
        var reference = JsonNode.Parse(p.Stdout)!;
        double ppl = (double)reference["ppl"]!;
        Assert.Equal(ppl, Metric(record, "perplexity"), ppl * 1e-9);
        Assert.Equal((long)reference["tokens_scored"]!, (long)record["details"]!["tokens_scored"]!);
        double nll = (double)reference["nll"]!;
        double bpb = nll / Math.Log(2) / Encoding.UTF8.GetByteCount(text);
        Assert.Equal(bpb, Metric(record, "bits_per_byte"), bpb * 1e-9);
        Assert.Null(Stderr(record, "perplexity")); // one document: no spread to estimate from
        Assert.Equal(128, (int)record["protocol"]!["context"]!);

        // JSONL: one document per record, with a standard error across documents.
        WriteLines(dir.File("docs.jsonl"), Enumerable.Range(0, 4).Select(i => new JsonObject { ["text"] = text.Substring(i * 500, 400) }).ToArray());
        File.WriteAllText(dir.File("docs.json"), """{"version": 1, "kind": "perplexity", "data": "docs.jsonl"}""");
        var docs = Only(Run(model, "--task", dir.File("docs.json"), "--out", dir.File("d.json")));
        Assert.Equal(4, (int)docs["n"]!);
        Assert.True(Stderr(docs, "bits_per_byte") > 0);
        Assert.Equal(1600, (long)docs["details"]!["bytes"]!);
    }

    [SkippableFact]
    public void Answer_perplexity_scores_only_assistant_tokens_as_token_by_token_decoding_does()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("template.jinja"),
            "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n{% elif m['role'] == 'assistant' %}A: {{ m['content'] }}\n{% endif %}{% endfor %}" +
            "{% if add_generation_prompt %}A: {% endif %}");
        (string Q, string A)[] pairs = [("Where is the cat?", "The cat sat on the mat."), ("Who is Lily?", "Lily is a little girl who likes to play."), ("Is it sunny?", "Yes, the sun is out.")];
        WriteLines(dir.File("chats.jsonl"), pairs.Select(p => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = p.Q }, new JsonObject { ["role"] = "assistant", ["content"] = p.A }),
        }).ToArray());
        File.WriteAllText(dir.File("ppl.json"), """{"version": 1, "kind": "perplexity", "data": "chats.jsonl", "messages_field": "messages", "chat_template": "template.jinja"}""");
        var record = Only(Run(model, "--task", dir.File("ppl.json"), "--out", dir.File("r.json")));

        // Reference: prompt and answer tokenized on their own, then fed one token at a time through the KV cache.
        using var loaded = LoadedModel.Open(model, threads: 1);
        var tokenizer = loaded.Tokenizer;
        int v = loaded.Model.Config.VocabSize;
        var logits = new float[v];
        double nll = 0;
        long count = 0, bytes = 0;
        foreach (var (q, a) in pairs)
        {
            var prompt = tokenizer.Encode($"Q: {q}\nA: ", addSpecialTokens: true);
            var answer = tokenizer.Encode($"{a}\n", addSpecialTokens: false);
            int[] all = [.. prompt, .. answer];
            loaded.Model.Reset();
            for (int i = 0; i + 1 < all.Length; i++)
            {
                loaded.Model.Forward(all.AsSpan(i, 1), logits);
                if (i + 1 < prompt.Length) continue;
                double max = logits.Max(), sum = logits.Sum(x => Math.Exp(x - max));
                nll += max + Math.Log(sum) - logits[all[i + 1]];
                count++;
            }
            bytes += Encoding.UTF8.GetByteCount(a + "\n");
        }
        Assert.Equal(count, (long)record["details"]!["tokens_scored"]!);
        Assert.Equal(bytes, (long)record["details"]!["bytes"]!);
        Assert.Equal(Math.Exp(nll / count), Metric(record, "perplexity"), Math.Exp(nll / count) * 1e-5);
        Assert.Equal(nll / Math.Log(2) / bytes, Metric(record, "bits_per_byte"), 1e-5);
        Assert.Equal(3, (int)record["n"]!);
        Assert.Contains("assistant tokens only", (string)record["protocol"]!["scored"]!);
    }

    static unsafe string MakeAdapter(TempDirectory dir)
    {
        // A rank-2 LoRA on layer 0's query projection with a nonzero B, so it changes the model.
        var adapterDir = Path.Combine(dir.Path, "adapter");
        using var a = new LoraAdapter("blk.0.attn_q.weight", 2, 64, 64, alpha: 4);
        a.Initialize(3, null);
        for (int i = 0; i < 64 * 2; i++) a.B[i] = (i % 7 - 3) * 0.2f;
        PeftAdapter.Save(adapterDir, [a], new PeftAdapterConfig(2, 4, 0, PeftTargets.Of(["model.layers.0.self_attn.q_proj"]), false, AdapterKinds.Lora, null));
        return adapterDir;
    }

    [SkippableFact]
    public void Adapter_is_applied_recorded_and_compared()
    {
        var model = SharedData.Require(Model);
        SharedData.Require("datasets/mmlu/test/clinical_knowledge_test.csv");
        using var dir = new TempDirectory();
        var adapter = MakeAdapter(dir);
        var baseRecord = Only(Run(model, "--task", "mmlu:clinical_knowledge", "--limit", "4", "--out", dir.File("base.json")));
        var tuned = Only(Run(model, "--adapter", adapter, "--task", "mmlu:clinical_knowledge", "--limit", "4", "--out", dir.File("tuned.json")));
        Assert.Equal(Path.GetFullPath(adapter), (string)tuned["adapter"]!);
        Assert.NotEqual(baseRecord["details"]!["first_question"]!["log_likelihoods"]!.ToJsonString(),
            tuned["details"]!["first_question"]!["log_likelihoods"]!.ToJsonString());
        Assert.Equal(baseRecord["protocol"]!.ToJsonString(), tuned["protocol"]!.ToJsonString());

        var c = HoneCli.Run("eval", "compare", dir.File("base.json"), dir.File("tuned.json"));
        Assert.True(c.ExitCode == 0, c.ToString());
        Assert.Contains($"[1] {dir.File("base.json")}", c.Stdout);
        Assert.Contains($"adapter {Path.GetFullPath(adapter)}", c.Stdout);
        Assert.Contains("Δ [2]-[1]", c.Stdout);
        Assert.Matches(@"mmlu:clinical_knowledge\s+acc\s+\d\.\d{4} ± \d\.\d{4}\s+\d\.\d{4} ± \d\.\d{4}\s+[+-]\d\.\d{4}", c.Stdout);
        Assert.DoesNotContain("!", c.Stdout.Split('\n').First(l => l.Contains("acc_norm")));
    }

    static void WriteResults(string path, params (string Task, string Metric, double Value, double Se, bool Higher, string Protocol)[] rows)
    {
        var records = rows.GroupBy(r => r.Task).Select(g => (JsonNode)new JsonObject
        {
            ["task"] = g.Key, ["kind"] = "x", ["model"] = "m", ["seed"] = 1,
            ["metrics"] = new JsonObject(g.Select(r => KeyValuePair.Create(r.Metric, (JsonNode?)new JsonObject
            {
                ["value"] = r.Value, ["stderr"] = r.Se, ["stderr_method"] = "test", ["higher_is_better"] = r.Higher,
            }))),
            ["protocol"] = new JsonObject { ["p"] = g.First().Protocol },
        }).ToArray();
        File.WriteAllText(path, new JsonObject { ["format"] = "hone-eval-results", ["format_version"] = 1, ["results"] = new JsonArray(records) }.ToJsonString());
    }

    [Fact]
    public void Compare_flags_differences_beyond_two_standard_errors_with_their_direction()
    {
        using var dir = new TempDirectory();
        WriteResults(dir.File("a.json"), ("qa", "acc", 0.50, 0.05, true, "same"), ("ppl", "perplexity", 10.0, 0.1, false, "v1"), ("qa", "f1", 0.40, 0.05, true, "same"));
        WriteResults(dir.File("b.json"), ("qa", "acc", 0.80, 0.05, true, "same"), ("ppl", "perplexity", 12.0, 0.1, false, "v2"), ("qa", "f1", 0.45, 0.05, true, "same"));
        var r = HoneCli.Run("eval", "compare", dir.File("a.json"), dir.File("b.json"));
        Assert.True(r.ExitCode == 0, r.ToString());
        var lines = r.Stdout.Split('\n');
        // Δ 0.30 against √(0.05² + 0.05²) = 0.0707: flagged, and higher is better.
        Assert.Matches(@"^qa\s+acc\s+0\.5000 ± 0\.0500\s+0\.8000 ± 0\.0500\s+\+0\.3000 ± 0\.0707 \* better$", lines.First(l => l.StartsWith("qa") && l.Contains(" acc ")));
        // Δ 0.05 < 2 × 0.0707: not flagged.
        Assert.Matches(@"^qa\s+f1\s+0\.4000 ± 0\.0500\s+0\.4500 ± 0\.0500\s+\+0\.0500 ± 0\.0707$", lines.First(l => l.Contains(" f1 ")));
        // Perplexity went up: worse; its protocol differs between the files.
        Assert.Matches(@"^ppl !\s+perplexity\s+10\.0000 ± 0\.1000\s+12\.0000 ± 0\.1000\s+\+2\.0000 ± 0\.1414 \* worse$", lines.First(l => l.StartsWith("ppl")));
        Assert.Contains("protocol differs", r.Stdout);

        var json = HoneCli.Run("eval", "compare", dir.File("a.json"), dir.File("b.json"), "--json");
        var rows = JsonNode.Parse(json.Stdout)!["rows"]!.AsArray();
        Assert.Equal(3, rows.Count);
        Assert.Equal(["acc", "f1", "perplexity"], rows.Select(x => (string)x!["metric"]!));
        Assert.True((bool)rows[0]!["deltas"]![0]!["significant"]!);
        Assert.False((bool)rows[1]!["deltas"]![0]!["significant"]!);
        Assert.True((bool)rows[2]!["protocol_differs"]!);

        // Three files: every file after the first gets its own delta column; a metric missing from a file shows "-".
        WriteResults(dir.File("c.json"), ("qa", "acc", 0.55, 0.05, true, "same"));
        var three = HoneCli.Run("eval", "compare", dir.File("a.json"), dir.File("b.json"), dir.File("c.json"));
        Assert.True(three.ExitCode == 0, three.ToString());
        Assert.Matches(@"task\s+metric\s+\[1\]\s+\[2\]\s+\[3\]\s+Δ \[2\]-\[1\]\s+Δ \[3\]-\[1\]", three.Stdout);
        Assert.Matches(@"^qa\s+acc\s+0\.5000 ± 0\.0500\s+0\.8000 ± 0\.0500\s+0\.5500 ± 0\.0500\s+\+0\.3000 ± 0\.0707 \* better\s+\+0\.0500 ± 0\.0707$",
            three.Stdout.Split('\n').First(l => l.StartsWith("qa") && l.Contains(" acc ")));
        Assert.Matches(@"^qa\s+f1\s+0\.4000 ± 0\.0500\s+0\.4500 ± 0\.0500\s+-\s+\+0\.0500 ± 0\.0707\s+-$", three.Stdout.Split('\n').First(l => l.Contains(" f1 ")));

        File.WriteAllText(dir.File("bad.json"), "{\"results\": []}");
        var bad = HoneCli.Run("eval", "compare", dir.File("a.json"), dir.File("bad.json"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("not a hone eval results file", bad.Stderr);
    }

    [SkippableFact]
    public void Bad_invocations_fail_with_one_clear_line()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("t.json"), """{"version": 1, "kind": "perplexity", "data": "x.txt", "windw": 3}""");
        var r = HoneCli.Run("eval", model, "--task", dir.File("t.json"), "--out", dir.File("r.json"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("unknown key \"windw\"", r.Stderr);
        r = HoneCli.Run("eval", model, "--task", "no-such-task", "--out", dir.File("r.json"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("unknown task \"no-such-task\"", r.Stderr);
        r = HoneCli.Run("eval", model, "--task", "mmlu:clinical_knowledge");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--out is required", r.Stderr);
        File.WriteAllText(dir.File("g.json"), """{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["f1"]}""");
        r = HoneCli.Run("eval", model, "--task", dir.File("g.json"), "--num-fewshot", "2", "--out", dir.File("r.json"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--num-fewshot applies to multiple_choice tasks", r.Stderr);
        Assert.False(File.Exists(dir.File("r.json")));
    }

    static string CommandTask(TempDirectory dir)
    {
        // The checker passes when the completion was written to its scratch folder; it records what isolated it.
        WriteLines(dir.File("c.jsonl"), new JsonObject { ["prompt"] = "Once upon a time" });
        File.WriteAllText(dir.File("command.json"), new JsonObject
        {
            ["version"] = 1, ["kind"] = "sampled", ["data"] = "c.jsonl", ["n"] = 1, ["k"] = new JsonArray(1), ["max_tokens"] = 2,
            ["checker"] = new JsonObject
            {
                ["type"] = "command", ["command"] = new JsonArray("sh", "-c", "test -f answer.txt"),
                ["files"] = new JsonObject { ["answer.txt"] = "{completion}" }, ["timeout_seconds"] = 20, ["memory_mb"] = 512,
            },
        }.ToJsonString());
        return dir.File("command.json");
    }

    [SkippableFact]
    public void Command_tasks_run_sandboxed_exactly_by_default_and_are_refused_where_no_sandbox_can_be_made()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        string task = CommandTask(dir);
        // No bubblewrap: refused before generating, naming the way out; nothing written.
        var noSandbox = new Dictionary<string, string?> { ["HONE_BWRAP"] = "/nonexistent/hone-test/bwrap" };
        var refused = HoneCli.RunWithEnvironment(noSandbox, "eval", model, "--task", task, "--out", dir.File("r.json"), "--threads", "2");
        Assert.True(refused.ExitCode == 1, refused.ToString());
        Assert.Contains("no sandbox can be made here", refused.Stderr);
        Assert.Contains("--allow-unsandboxed-commands", refused.Stderr);
        Assert.False(File.Exists(dir.File("r.json")));
        // Allowed explicitly: it runs, and the record says it was not sandboxed.
        var allowed = HoneCli.RunWithEnvironment(noSandbox, "eval", model, "--task", task, "--out", dir.File("r.json"), "--threads", "2",
            "--allow-unsandboxed-commands", "--allow-network");
        Assert.True(allowed.ExitCode == 0, allowed.ToString());
        var record = Only(JsonNode.Parse(File.ReadAllText(dir.File("r.json")))!.AsObject());
        Assert.StartsWith("NOT sandboxed", (string)record["protocol"]!["sandbox"]!);
        Assert.Equal(1.0, Metric(record, "pass@1"));
        Assert.Equal("exact", (string)record["protocol"]!["precision"]!);
        Assert.Equal(512, (int)record["protocol"]!["checker"]!["memory_mb"]!);

        Skip.IfNot(Hone.Evaluation.CommandSandbox.Current.SandboxAvailable, $"no sandbox here: {Hone.Evaluation.CommandSandbox.Current.SandboxFailure}");
        record = Only(Run(model, "--task", task, "--out", dir.File("sandboxed.json"), "--precision", "fast"));
        Assert.StartsWith("bubblewrap sandbox", (string)record["protocol"]!["sandbox"]!);
        Assert.Contains("no network", (string)record["protocol"]!["sandbox"]!);
        Assert.Equal(1.0, Metric(record, "pass@1"));
        Assert.Equal("fast", (string)record["protocol"]!["precision"]!);
    }
}
