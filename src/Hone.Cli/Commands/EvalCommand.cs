using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Evaluation.Report;
using Hone.Inference;

namespace Hone.Cli.Commands;

internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var tasks = new Option<string[]>("--task") { Description = "a task file (JSON) or a built-in name; repeatable", AllowMultipleArgumentsPerToken = false };
        var adapter = new Option<string?>("--adapter") { Description = $"apply an adapter: a PEFT directory ({string.Join(", ", Hone.Model.AdapterKinds.Names)}) or a llama.cpp LoRA .gguf" };
        var limit = new Option<int?>("--limit") { Description = "evaluate only the first N items of each task" }.Within(1, int.MaxValue);
        var seed = new Option<ulong>("--seed", "-s") { Description = "seed for few-shot draws and sampling", DefaultValueFactory = _ => 1234UL };
        var fewshot = new Option<int?>("--num-fewshot") { Description = "few-shot examples for multiple-choice tasks (overrides the task's num_fewshot)" }.Within(0, 1000);
        var output = new Option<string>("--out", "-o") { Description = "write the results here (JSON, atomically), in the layout --format names" };
        var format = new Option<string>("--format")
        {
            Description = "the results file's layout: hone (default) = Hone's own, one self-contained record per task (metrics with standard errors " +
                          "and how they were computed, the protocol, a few answers, model, seed, time, version), read by `hone eval compare` and " +
                          "`hone report`; lm-eval = lm-evaluation-harness 0.4's results layout (results[task][\"acc,none\"], \"acc_stderr,none\", " +
                          "configs, versions, n-shot, higher_is_better, n-samples, config) for its tools",
            DefaultValueFactory = _ => "hone",
        };
        format.AcceptOnlyFromAmong(Formats.Keys.ToArray());
        var ctx = CliSupport.Context();
        var allowNetwork = new Option<bool>("--allow-network") { Description = "let command checkers reach the network (otherwise the sandbox has its own network namespace with only a loopback)" };
        var allowUnsandboxed = new Option<bool>("--allow-unsandboxed-commands")
        {
            Description = "where no sandbox can be made (bubblewrap missing or user namespaces forbidden), run command checkers anyway " +
                          "with only the resource limits and a network namespace: model-written code can then read and change your files",
        };
        var precision = CliSupport.Precision(measuring: true);
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("eval",
            "Evaluate a model on tasks, with the protocol recorded next to every number.\n" +
            "Task kinds: perplexity (perplexity, bits_per_byte), multiple_choice (acc, acc_norm by log-likelihood, lm-eval semantics),\n" +
            "generate (exact_match, contains, regex, f1), sampled (pass@k, pass^k with exact, regex, json or command checkers),\n" +
            "truth_ratio (TOFU's truth ratio of true against perturbed answers; with \"reference\": a results file of a model never trained\n" +
            "on the facts, forget_quality = the KS-test p-value between the two models' truth ratios; see hone synth policy-unlearning).\n" +
            BuiltinTasks.Summary + ".\n" +
            "Results: one record per task with metrics, standard errors, protocol, model, adapter, seed, time and Hone version.\n" +
            "--format lm-eval writes lm-evaluation-harness's layout instead: perplexity tasks as word_perplexity, byte_perplexity,\n" +
            "bits_per_byte (and token_perplexity, Hone's per-token one), multiple choice as acc and acc_norm, generate tasks as their\n" +
            "scorers (exact_match, ...), sampled tasks as pass@k and pass^k; every filter \"none\", standard errors \"N/A\" where Hone has none.\n" +
            "Compare runs with: hone eval compare before.json after.json\n" +
            "Precision: exact by default (fp32 activations; see --precision), recorded in each result's protocol.\n" +
            CommandSandbox.HelpText)
        {
            tasks, adapter, limit, seed, fewshot, output, format, ctx, allowNetwork, allowUnsandboxed, precision, threads, json,
        };
        model.AddTo(cmd);
        cmd.Subcommands.Add(CreateCompare());
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var names = r.GetValue(tasks) ?? [];
            if (names.Length == 0) throw new ArgumentException("name at least one task with --task (a task file or a built-in name)");
            string outPath = r.GetValue(output) ?? throw new ArgumentException("--out is required: where to write the results");
            var options = new EvalOptions(r.GetValue(limit), r.GetValue(seed), r.GetValue(fewshot), r.GetValue(allowNetwork),
                r.GetValue(allowUnsandboxed), CliSupport.ParsePrecision(r.GetValue(precision)));
            if (options.Limit is < 1) throw new ArgumentException("--limit must be at least 1");
            if (options.NumFewshot is < 0) throw new ArgumentException("--num-fewshot must be ≥ 0");
            if (options.NumFewshot is > 0 && names.Select(TaskLoader.Load).FirstOrDefault(t => t.Kind != "multiple_choice") is { } other)
                throw new ArgumentException($"--num-fewshot applies to multiple_choice tasks; {other.Name} is a {other.Kind} task");
            using var cancel = CliSupport.CancelOnCtrlC(terminateToo: true);
            JsonObject document;
            List<TaskResult> results;
            try
            {
                (document, results) = EvalRunner.Run(model.Read(r)!, r.GetValue(adapter), names, options, outPath, r.GetValue(threads), r.GetValue(ctx),
                    (i, count, task) => Console.Error.WriteLine($"[{i + 1}/{count}] {task.Name} ({task.Kind})"),
                    result => Console.Error.WriteLine($"  {string.Join(", ", result.Metrics.Select(m => $"{m.Name} {Value(m.Value, m.StandardError)}"))}  (n {result.Count}, {result.ElapsedSeconds:F1} s)"),
                    CliSupport.Progress, cancel.Token, Formats[r.GetValue(format)!]);
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled; no results written");
                return 130;
            }
            if (r.GetValue(json))
            {
                Console.WriteLine(document.ToJsonString());
                return 0;
            }
            var table = new List<string[]> { new[] { "task", "metric", "value", "stderr", "n" } };
            foreach (var t in results)
                foreach (var m in t.Metrics)
                    table.Add([t.Task, m.Name, F(m.Value), m.StandardError is double se ? "±" + F(se) : "-", t.Count.ToString(CultureInfo.InvariantCulture)]);
            Console.Write(Table(table));
            Console.Error.WriteLine($"results written to {outPath}");
            return 0;
        }));
        return cmd;
    }

    static Command CreateCompare()
    {
        var files = new Argument<string[]>("results") { Description = "two or more results files; deltas are against the first", Arity = new ArgumentArity(2, 100) };
        var json = CliSupport.Json();
        var cmd = new Command("compare",
            "Compare results files: per task and metric, each file's value ± standard error and its difference from the first.\n" +
            "* marks |Δ| > 2 standard errors of the difference (√(se₁² + se₂²), runs treated as independent); ! marks a task whose protocol differs between files.")
        {
            files, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var paths = r.GetValue(files)!;
            var loaded = paths.Select(EvalResults.Read).ToList();
            var rows = ResultsComparison.Compare(loaded.Select(l => (IReadOnlyList<JsonObject>)l).ToList());
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["files"] = new JsonArray(paths.Select(p => (JsonNode)p).ToArray()),
                    ["rows"] = new JsonArray(rows.Select(row => (JsonNode)new JsonObject
                    {
                        ["task"] = row.Task, ["metric"] = row.Metric, ["higher_is_better"] = row.HigherIsBetter, ["protocol_differs"] = row.ProtocolDiffers,
                        ["values"] = new JsonArray(row.Values.Select(v => v is { } x ? (JsonNode)new JsonObject { ["value"] = x.Value, ["stderr"] = x.StandardError } : null).ToArray()),
                        ["deltas"] = new JsonArray(row.Deltas.Select(d => d is { } x
                            ? (JsonNode)new JsonObject { ["delta"] = x.Delta, ["stderr"] = x.StandardError, ["significant"] = x.Significant } : null).ToArray()),
                    }).ToArray()),
                }.ToJsonString());
                return 0;
            }
            for (int f = 0; f < paths.Length; f++)
            {
                var first = loaded[f].FirstOrDefault();
                string what = first == null ? "(no results)" : $"model {first["model"]}{(first["adapter"] is JsonNode ad ? $", adapter {ad}" : "")}, seed {first["seed"]}";
                Console.WriteLine($"[{f + 1}] {paths[f]}: {what}");
            }
            Console.WriteLine();
            var header = new List<string> { "task", "metric" };
            header.AddRange(paths.Select((_, f) => $"[{f + 1}]"));
            header.AddRange(paths.Skip(1).Select((_, f) => $"Δ [{f + 2}]-[1]"));
            var table = new List<string[]> { header.ToArray() };
            bool anySignificant = false, anyProtocol = false;
            foreach (var row in rows)
            {
                var cells = new List<string> { row.Task + (row.ProtocolDiffers ? " !" : ""), row.Metric };
                cells.AddRange(row.Values.Select(v => v is { } x ? Value(x.Value, x.StandardError) : "-"));
                foreach (var d in row.Deltas)
                {
                    if (d is not { } x) { cells.Add("-"); continue; }
                    string cell = (x.Delta >= 0 ? "+" : "") + Value(x.Delta, x.StandardError);
                    if (x.Significant)
                    {
                        anySignificant = true;
                        cell += (x.Delta > 0) == row.HigherIsBetter ? " * better" : " * worse";
                    }
                    cells.Add(cell);
                }
                anyProtocol |= row.ProtocolDiffers;
                table.Add(cells.ToArray());
            }
            Console.Write(Table(table));
            Console.WriteLine();
            Console.WriteLine(anySignificant ? "* |Δ| > 2 standard errors of the difference (√(se₁² + se₂²), runs treated as independent)"
                                             : "no difference exceeds 2 standard errors");
            if (anyProtocol) Console.WriteLine("! the protocol differs between files for this task: the numbers may not be comparable");
            var verdicts = Verdicts.For(rows);
            if (verdicts.Count > 0)
            {
                Console.WriteLine();
                Console.WriteLine($"[{paths.Length}] against [1]:");
                foreach (var v in verdicts) Console.WriteLine("  " + v.Text);
            }
            return 0;
        }));
        return cmd;
    }

    static readonly Dictionary<string, EvalResultsFormat> Formats = new() { ["hone"] = EvalResultsFormat.Hone, ["lm-eval"] = EvalResultsFormat.LmEval };

    static string F(double x) => double.IsFinite(x) ? x.ToString("F4", CultureInfo.InvariantCulture) : x.ToString(CultureInfo.InvariantCulture);

    static string Value(double value, double? se) => se is double s ? $"{F(value)} ± {F(s)}" : F(value);

    static string Table(List<string[]> rows)
    {
        int columns = rows.Max(r => r.Length);
        var widths = Enumerable.Range(0, columns).Select(c => rows.Max(r => c < r.Length ? r[c].Length : 0)).ToArray();
        var sb = new StringBuilder();
        foreach (var r in rows)
            sb.AppendLine(string.Join("  ", r.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd());
        return sb.ToString();
    }
}
