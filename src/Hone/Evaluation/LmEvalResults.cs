using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hone.Tokenization;

namespace Hone.Evaluation;

/// <summary>The results file's layout: Hone's own, or lm-evaluation-harness's.</summary>
public enum EvalResultsFormat { Hone, LmEval }

/// <summary>Tokenizer and context facts lm-eval records next to its numbers (its add_tokenizer_info).</summary>
public sealed record LmEvalModelInfo(string? BosToken, int? BosId, string? EosToken, int? EosId, string? PadToken, int? PadId, int MaxLength)
{
    public static LmEvalModelInfo Of(Tokenizer tokenizer, int maxLength) => new(tokenizer.BosToken, tokenizer.BosId, tokenizer.EosToken, tokenizer.EosId,
        tokenizer.PaddingId is int p ? tokenizer.TokenText(p) : null, tokenizer.PaddingId, maxLength);
}

/// <summary>
/// Hone's results in lm-evaluation-harness 0.4's results layout (what `lm_eval --output_path` writes as
/// results_*.json), so its tools read Hone's numbers: "results" keyed by task with "&lt;metric&gt;,&lt;filter&gt;" keys
/// ("acc,none", "acc_stderr,none", …) and "alias"; "group_subtasks", "configs", "versions", "n-shot",
/// "higher_is_better", "n-samples", "config", "git_hash", "date", the environment and tokenizer facts, and the
/// tracker's model and timing fields.
/// <para>Metrics keep their meaning. multiple_choice: acc and acc_norm (Hone normalizes by UTF-8 bytes where lm-eval
/// counts characters: the same for ASCII choices). perplexity: word_perplexity (exp(NLL / words), words counted as
/// lm-eval's count_words), byte_perplexity (exp(NLL / UTF-8 bytes)), bits_per_byte, and token_perplexity — Hone's
/// per-token perplexity, named so it is not taken for lm-eval's "perplexity" (a different quantity). generate: each
/// scorer's metric (exact_match, contains, regex, f1). sampled: pass@k and pass^k. Every filter is "none": Hone
/// scores the completion itself. Standard errors are Hone's analytical ones ("N/A" where Hone has none, as lm-eval
/// writes). Each task's Hone protocol is kept in configs[task].metadata.</para>
/// </summary>
public static class LmEvalResults
{
    const string Filter = "none";

    /// <param name="records">Hone result records of one run (as <see cref="EvalResults.Record"/> writes them)</param>
    /// <param name="model">tokenizer facts (null: left out, as lm-eval does for models without a tokenizer object)</param>
    /// <param name="endedUtc">when the run ended (null: its start plus the tasks' times)</param>
    public static JsonObject Document(IReadOnlyList<JsonObject> records, LmEvalModelInfo? model = null, DateTime? endedUtc = null)
    {
        if (records.Count == 0) throw new ArgumentException("no results to write");
        var first = records[0];
        var results = new JsonObject();
        var configs = new JsonObject();
        var versions = new JsonObject();
        var shots = new JsonObject();
        var higher = new JsonObject();
        var samples = new JsonObject();
        var subtasks = new JsonObject();
        foreach (var record in records)
        {
            string task = (string?)record["task"] ?? throw new FormatException("a result record has no \"task\"");
            if (results.ContainsKey(task)) throw new ArgumentException($"task \"{task}\" appears twice; lm-eval's layout keys results by task name");
            var metrics = Metrics(record);
            var entry = new JsonObject { ["alias"] = task };
            foreach (var m in metrics)
            {
                entry[$"{m.Name},{Filter}"] = Float(m.Value);
                entry[$"{m.Name}_stderr,{Filter}"] = Float(m.StandardError) ?? "N/A";
            }
            results[task] = entry;
            int fewshot = I(record["protocol"]?["num_fewshot"]) ?? 0;
            configs[task] = Config(record, task, metrics, fewshot);
            versions[task] = TaskLoader.FormatVersion;
            shots[task] = fewshot;
            higher[task] = new JsonObject(metrics.Select(m => KeyValuePair.Create(m.Name, (JsonNode?)m.HigherIsBetter)));
            int evaluated = I(record["n"]) ?? 0;
            int available = I(record["details"]?["items_available"]) ?? evaluated;
            int? limit = I(record["limit"]);
            samples[task] = new JsonObject { ["original"] = available, ["effective"] = limit is int l ? Math.Min(l, available) : available };
            subtasks[task] = new JsonArray();
        }

        string modelPath = (string?)first["model"] ?? "";
        string? adapter = (string?)first["adapter"];
        string modelArgs = $"pretrained={modelPath}" + (adapter != null ? $",peft={adapter}" : "");
        // lm-eval names the model after peft= before pretrained= (its _get_model_name).
        string modelName = adapter ?? modelPath;
        DateTime started = DateTime.TryParse((string?)first["started_utc"], CultureInfo.InvariantCulture,
            DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var s) ? s : DateTime.UtcNow;
        double elapsed = records.Sum(r => D(r["elapsed_seconds"]) ?? 0);
        DateTime ended = endedUtc ?? started.AddSeconds(elapsed);
        JsonNode? Unix(DateTime t) => Float(Math.Round((t - DateTime.UnixEpoch).TotalSeconds, 3));
        ulong? seed = U(first["seed"]);
        string? system = records.Select(r => (string?)r["protocol"]?["prompt"]?["system"]).Where(x => x != null).Distinct().Count() == 1
            ? records.Select(r => (string?)r["protocol"]?["prompt"]?["system"]).First(x => x != null) : null;

        var document = new JsonObject
        {
            ["results"] = results,
            ["group_subtasks"] = subtasks,
            ["configs"] = Sorted(configs),
            ["versions"] = Sorted(versions),
            ["n-shot"] = Sorted(shots),
            ["higher_is_better"] = Sorted(higher),
            ["n-samples"] = samples,
            ["config"] = new JsonObject
            {
                ["model"] = "hone",
                ["model_args"] = modelArgs,
                ["batch_size"] = 1,                   // one sequence at a time
                ["batch_sizes"] = new JsonArray(),
                ["device"] = "cpu",
                ["use_cache"] = null,
                ["limit"] = first["limit"]?.DeepClone(),
                ["bootstrap_iters"] = 0,               // standard errors are analytical, never bootstrapped
                ["gen_kwargs"] = null,                 // per task, in configs[task].generation_kwargs
                ["random_seed"] = seed,                // one seed drives few-shot draws and sampling
                ["numpy_seed"] = null,
                ["torch_seed"] = null,
                ["fewshot_seed"] = seed,
            },
            ["git_hash"] = GitHash((string?)first["hone_version"]),
            ["date"] = Unix(started),
            ["pretty_env_info"] = $"Hone {(string?)first["hone_version"]}; {RuntimeInformation.FrameworkDescription}; {RuntimeInformation.OSDescription}; " +
                                  $"{RuntimeInformation.ProcessArchitecture}; {Environment.ProcessorCount} logical processors",
            ["transformers_version"] = null,           // not used: Hone is its own engine
            ["lm_eval_version"] = null,                // not produced by lm-eval; see hone_version
            ["upper_git_hash"] = null,
            ["hone_version"] = (string?)first["hone_version"],
        };
        if (model != null)
        {
            document["tokenizer_pad_token"] = new JsonArray(model.PadToken, model.PadId?.ToString(CultureInfo.InvariantCulture) ?? "None");
            document["tokenizer_eos_token"] = new JsonArray(model.EosToken, model.EosId?.ToString(CultureInfo.InvariantCulture) ?? "None");
            document["tokenizer_bos_token"] = new JsonArray(model.BosToken, model.BosId?.ToString(CultureInfo.InvariantCulture) ?? "None");
            document["eot_token_id"] = model.EosId;
            document["max_length"] = model.MaxLength;
        }
        document["task_hashes"] = new JsonObject();   // lm-eval hashes logged samples; none are logged here
        document["model_source"] = "hone";
        document["model_name"] = modelName;
        document["model_name_sanitized"] = Regex.Replace(modelName, "[\"<>:/|\\\\?*\\[\\]]+", "__");
        document["system_instruction"] = system;
        document["system_instruction_sha"] = system != null ? Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(system))) : null;
        document["fewshot_as_multiturn"] = false;
        document["chat_template"] = null;              // per task: configs[task].metadata.hone_protocol.prompt.chat_template
        document["chat_template_sha"] = null;
        document["start_time"] = Unix(started);
        document["end_time"] = Unix(ended);
        document["total_evaluation_time_seconds"] = Float(Math.Round((ended - started).TotalSeconds, 3))!.ToJsonString(); // a string, as lm-eval's str(float)
        return document;
    }

    /// <summary>One metric as lm-eval names it, with its aggregation (lm-eval's registry names).</summary>
    public sealed record Metric(string Name, double? Value, double? StandardError, bool HigherIsBetter, string Aggregation);

    /// <summary>A record's metrics under lm-eval's names: only what Hone computed, derived exactly where the name asks
    /// for a different normalization of the same log-likelihood.</summary>
    public static List<Metric> Metrics(JsonObject record)
    {
        var own = record["metrics"] as JsonObject ?? throw new FormatException($"result \"{record["task"]}\" has no \"metrics\" object");
        (double? Value, double? Stderr, bool Higher) Get(string name) => own[name] is JsonObject m
            ? (D(m["value"]), D(m["stderr"]), (bool?)m["higher_is_better"] ?? true) : (null, null, true);
        var list = new List<Metric>();
        if ((string?)record["kind"] == "perplexity")
        {
            var details = record["details"];
            double? nll = D(details?["negative_log_likelihood"]);
            long? words = L(details?["words"]);
            var (bpb, bpbError, _) = Get("bits_per_byte");
            var (ppl, pplError, _) = Get("perplexity");
            if (nll is double n && words is > 0) list.Add(new("word_perplexity", Math.Exp(n / words.Value), null, false, "weighted_perplexity"));
            if (bpb is double b)
            {
                // exp(NLL / bytes) = 2^(bits per byte); its standard error by the delta method, as Hone's perplexity's.
                double bytePerplexity = Math.Pow(2, b);
                list.Add(new("byte_perplexity", bytePerplexity, bpbError is double e ? bytePerplexity * Math.Log(2) * e : null, false, "weighted_perplexity"));
                list.Add(new("bits_per_byte", b, bpbError, false, "bits_per_byte"));
            }
            if (ppl != null) list.Add(new("token_perplexity", ppl, pplError, false, "weighted_perplexity"));
            return list;
        }
        foreach (var (name, node) in own)
            if (node is JsonObject m)
                list.Add(new(name, D(m["value"]), D(m["stderr"]), (bool?)m["higher_is_better"] ?? true, "mean"));
        return list;
    }

    /// <summary>The task's configuration in lm-eval's TaskConfig keys, from Hone's protocol (kept whole in metadata).</summary>
    static JsonObject Config(JsonObject record, string task, List<Metric> metrics, int fewshot)
    {
        string kind = (string?)record["kind"] ?? "";
        var protocol = record["protocol"] as JsonObject;
        var config = new JsonObject
        {
            ["task"] = task,
            ["dataset_path"] = (string?)protocol?["data"],
            ["output_type"] = kind switch
            {
                "perplexity" => "loglikelihood_rolling",
                "multiple_choice" => "multiple_choice",
                _ => "generate_until",
            },
        };
        switch (kind)
        {
            case "multiple_choice":
                config["doc_to_text"] = (string?)protocol?["question_template"];
                config["description"] = (string?)protocol?["description"] ?? "";
                config["target_delimiter"] = (string?)protocol?["target_delimiter"] ?? " ";
                config["fewshot_delimiter"] = (string?)protocol?["fewshot_delimiter"] ?? "\n\n";
                break;
            case "generate" or "sampled":
                config["doc_to_text"] = (string?)protocol?["prompt"]?["template"];
                config["doc_to_target"] = (string?)protocol?["target_field"];
                config["description"] = "";
                config["target_delimiter"] = " ";
                config["fewshot_delimiter"] = "\n\n";
                break;
        }
        config["num_fewshot"] = fewshot;
        config["metric_list"] = new JsonArray(metrics.Select(m => (JsonNode)new JsonObject
        {
            ["metric"] = m.Name, ["aggregation"] = m.Aggregation, ["higher_is_better"] = m.HigherIsBetter,
        }).ToArray());
        if (kind is "generate" or "sampled")
        {
            var sampling = protocol?["sampling"];
            bool sampled = (string?)sampling?["mode"] == "sampled";
            var generation = new JsonObject
            {
                ["until"] = protocol?["stop"]?.DeepClone() ?? new JsonArray(),
                ["max_gen_toks"] = I(protocol?["max_tokens"]),
                ["do_sample"] = sampled,
                ["temperature"] = Float(sampled ? D(sampling?["temperature"]) : 0.0),
            };
            if (sampled)
            {
                generation["top_p"] = Float(D(sampling?["top_p"]));
                generation["top_k"] = I(sampling?["top_k"]);
                generation["min_p"] = Float(D(sampling?["min_p"]));
            }
            config["generation_kwargs"] = generation;
        }
        config["repeats"] = kind == "sampled" ? I(protocol?["n"]) ?? 1 : 1;
        config["should_decontaminate"] = false;
        if ((string?)protocol?["checker"]?["type"] == "command") config["unsafe_code"] = true;
        config["metadata"] = new JsonObject
        {
            ["version"] = TaskLoader.FormatVersion,
            ["hone_kind"] = kind,
            ["hone_source"] = (string?)record["source"],
            ["hone_protocol"] = protocol?.DeepClone(),
        };
        return config;
    }

    // Records built in code hold typed values (a float temperature, an int count) that JsonNode's casts refuse to
    // convert; reading the number's text works for every numeric type, parsed or built.
    static double? D(JsonNode? n) => n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number
        ? double.Parse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture) : null;
    static int? I(JsonNode? n) => D(n) is double d && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue ? (int)d : null;
    static long? L(JsonNode? n) => n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number
        && long.TryParse(v.ToJsonString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long x) ? x : null;
    static ulong? U(JsonNode? n) => n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number
        && ulong.TryParse(v.ToJsonString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong x) ? x : null;

    /// <summary>A float as Python's json writes one: always with a decimal point or exponent ("0.0", not "0"), so
    /// lm-eval's readers, which format isinstance(v, float) values, see floats. Not finite: null.</summary>
    static JsonNode? Float(double? x)
    {
        if (x is not double d || !double.IsFinite(d)) return null;
        string text = d.ToString("R", CultureInfo.InvariantCulture);
        if (text.IndexOfAny(['.', 'E', 'e']) < 0) text += ".0";
        return JsonNode.Parse(text);
    }

    static JsonObject Sorted(JsonObject o)
    {
        var pairs = o.Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())).OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        return new JsonObject(pairs);
    }

    /// <summary>The source commit in Hone's informational version ("1.0.0+abc123…"), as lm-eval records its own.</summary>
    static string? GitHash(string? version) => version?.IndexOf('+') is int plus and >= 0 ? version[(plus + 1)..] : null;
}
