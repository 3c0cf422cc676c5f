using System.Diagnostics;
using System.Text.Json.Nodes;
using Hone.Grammars;
using Hone.Inference;

namespace Hone.Evaluation;

/// <param name="N">samples per problem</param>
/// <param name="K">the k of pass@k and pass^k (each ≤ N)</param>
/// <param name="TargetField">the reference for exact/regex/json checkers (null: none, as for command checkers)</param>
/// <param name="Grammar">outputs constrained to this grammar (a task's json_schema or grammar), or null</param>
/// <param name="GrammarSource">what the grammar came from, for the protocol</param>
public sealed record SampledTaskDefinition(string Data, PromptSettings Prompt, string? TargetField, int N, IReadOnlyList<int> K, SamplerOptions Sampling,
    int MaxTokens, IReadOnlyList<string> Stop, CheckerSpec Checker, GrammarSpec? Grammar = null, JsonNode? GrammarSource = null);

/// <summary>
/// N samples per problem, each judged by a checker; per problem with c of n passing, pass@k = 1 − C(n−c,k)/C(n,k) and
/// pass^k = C(c,k)/C(n,k) (<see cref="PassAtK"/>), averaged over problems.
/// </summary>
public static class SampledTask
{
    public static readonly string[] Keys = [.. PromptSettings.Keys, "target_field", "n", "k", "sampling", "max_tokens", "stop", "checker", "json_schema", "grammar"];
    static readonly string[] CheckerKeys = ["type", "normalize", "pattern", "command", "files", "stdin", "timeout_seconds", "memory_mb"];

    /// <summary>Sampled tasks sample unless told otherwise: Codex's temperature 0.8 and top-p 0.95, no top-k or min-p.</summary>
    public static readonly SamplerOptions DefaultSampling = new(Temperature: 0.8f, TopK: 0, TopP: 0.95f, MinP: 0f);

    public static EvalTask Parse(TaskSpecReader r, TaskOrigin origin)
    {
        int n = r.Int("n") ?? 1;
        if (n < 1) throw new FormatException($"{r.Where}: \"n\" must be at least 1");
        var k = r.Ints("k") ?? [1];
        foreach (var x in k)
            if (x < 1 || x > n) throw new FormatException($"{r.Where}: k = {x} must be in 1..n ({n})");
        var checkerReader = r.Object("checker") ?? throw new FormatException($"{r.Where}: \"checker\" is required ({{\"type\": {string.Join(" | ", Checkers.Table.Keys)}, ...}})");
        var checker = ReadChecker(checkerReader);
        string? target = r.String("target_field");
        if (checker.Type != "command" && target == null) target = checker.Type == "facts" ? "expected" : "answer";
        var d = new SampledTaskDefinition(origin.Resolve(r.RequiredString("data")), PromptSettings.Read(r, origin), target, n, k.Distinct().Order().ToArray(),
            TaskSampling.Read(r.Object("sampling"), DefaultSampling), r.Int("max_tokens") ?? 256, r.Strings("stop") ?? [], checker);
        var (grammar, grammarSource) = ReadGrammar(r, origin);
        d = d with { Grammar = grammar, GrammarSource = grammarSource };
        if (d.MaxTokens < 1) throw new FormatException($"{r.Where}: \"max_tokens\" must be at least 1");
        return new EvalTask(origin.Name, "sampled", origin.Source, d, c => Run(origin.Name, origin.Source, d, c));
    }

    /// <summary>"json_schema": a schema object or a schema file (relative to the task file); "grammar": a GBNF file.
    /// Compiled when the task is read, so a schema keyword Hone cannot enforce fails before any generation.</summary>
    static (GrammarSpec?, JsonNode?) ReadGrammar(TaskSpecReader r, TaskOrigin origin)
    {
        var schemaNode = r.Node("json_schema");
        string? grammarFile = r.String("grammar");
        if (schemaNode != null && grammarFile != null) throw new FormatException($"{r.Where}: give \"json_schema\" or \"grammar\", not both");
        try
        {
            if (grammarFile != null)
            {
                string path = origin.Resolve(grammarFile);
                return (new GrammarSpec(Grammar.FromGbnfFile(path)), new JsonObject { ["grammar"] = path });
            }
            switch (schemaNode)
            {
                case null: return (null, null);
                case JsonObject inline: return (new GrammarSpec(Grammar.FromJsonSchema(inline)), new JsonObject { ["json_schema"] = inline.DeepClone() });
                case JsonValue v when v.TryGetValue(out string? file):
                    string path = origin.Resolve(file);
                    return (new GrammarSpec(Grammar.FromJsonSchemaFile(path)), new JsonObject { ["json_schema"] = path });
                default: throw new FormatException($"{r.Where}: \"json_schema\" must be a schema object or a schema file name");
            }
        }
        catch (Exception e) when (e is GrammarException or FileNotFoundException) { throw new FormatException($"{r.Where}: {e.Message}"); }
    }

    public static CheckerSpec ReadChecker(TaskSpecReader c)
    {
        c.AllowOnly(CheckerKeys);
        string type = c.RequiredString("type");
        if (!Checkers.Table.ContainsKey(type)) throw new FormatException($"{c.Where}: unknown checker \"{type}\" (known: {string.Join(", ", Checkers.Table.Keys)})");
        var normalize = c.Strings("normalize") ?? [];
        TextNormalization.Validate(normalize, c.Where);
        string? pattern = c.String("pattern");
        if (pattern != null) TextScorers.ValidatePattern(pattern, c.Where);
        var command = c.Strings("command");
        var files = c.StringMap("files");
        string? stdin = c.String("stdin");
        double timeout = c.Double("timeout_seconds") ?? 10;
        int memory = c.Int("memory_mb") ?? (int)(CommandLimits.DefaultMemoryBytes >> 20);
        void Only(string what, bool ok) { if (!ok) throw new FormatException($"{c.Where}: {what}"); }
        Only("the regex checker needs a \"pattern\"", type != "regex" || pattern != null);
        Only("\"pattern\" is for the regex checker", type == "regex" || pattern == null);
        Only("\"normalize\" is for the exact and regex checkers", type is "exact" or "regex" || normalize.Length == 0);
        Only("the command checker needs \"command\": [program, arguments...]", type != "command" || command is { Length: > 0 });
        Only("\"command\", \"files\", \"stdin\", \"timeout_seconds\" and \"memory_mb\" are for the command checker",
            type == "command" || (command == null && files == null && stdin == null && !c.Has("timeout_seconds") && !c.Has("memory_mb")));
        Only("\"timeout_seconds\" must be positive and at most 86400 (a day)", timeout > 0 && timeout <= 86400);
        Only("\"memory_mb\" must be between 16 and 1048576", memory is >= 16 and <= 1 << 20);
        if (files != null)
            foreach (var name in files.Keys)
                Only($"file name \"{name}\" must be a plain name inside the working directory", name.Length > 0 && name == Path.GetFileName(name) && name is not ("." or ".."));
        foreach (var t in (command ?? []).Concat(files?.Values.AsEnumerable() ?? []).Append(stdin ?? "")) PromptTemplate.Fields(t);
        return new CheckerSpec(type, normalize, pattern, command, type == "command" ? files ?? new Dictionary<string, string>() : null, stdin, timeout, memory);
    }

    public static TaskResult Run(string name, string source, SampledTaskDefinition d, EvalContext ctx)
    {
        var clock = Stopwatch.StartNew();
        var settings = new Checkers.Settings(ctx.Options.AllowNetwork, ctx.Options.AllowUnsandboxedCommands);
        // Refuse before generating anything, not after minutes of sampling.
        if (d.Checker.Type == "command")
        {
            try { CommandSandbox.EnsureRunnable(settings.Sandbox); }
            catch (InvalidOperationException e) { throw new InvalidOperationException($"{name}: {e.Message}"); }
        }
        var records = EvalData.ReadRecords(d.Data);
        int available = records.Count;
        if (ctx.Options.Limit is int limit) records = records.Take(limit).ToList();
        if (records.Count == 0) throw new ArgumentException($"{name}: no records in {d.Data}");
        var prompts = new PromptBuilder(d.Prompt, ctx.Tokenizer);
        var generator = new Generator(ctx.Model, ctx.Tokenizer);
        generator.Reset();
        var passAt = d.K.ToDictionary(k => k, _ => new List<double>());
        var passHat = d.K.ToDictionary(k => k, _ => new List<double>());
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var correct = new List<int>();
        JsonObject? example = null, failure = null;
        var samples = new JsonArray();
        for (int i = 0; i < records.Count; i++)
        {
            var record = records[i];
            JsonNode? target = d.TargetField == null ? null
                : record[d.TargetField] ?? throw new FormatException($"{d.Data}: record {i + 1} has no \"{d.TargetField}\"");
            string text = prompts.Text(record);
            var ids = prompts.Encode(text, ctx.Model.MaxContext, d.MaxTokens);
            int c = 0;
            JsonObject? sample = EvalSamples.Wanted(i)
                ? new JsonObject { ["item"] = i, ["question"] = EvalSamples.Cut(prompts.Question(record)), ["reference"] = EvalSamples.Cut(target) }
                : null;
            for (int s = 0; s < d.N; s++)
            {
                ctx.Cancel.ThrowIfCancellationRequested();
                var sampler = d.Sampling with { Seed = TaskSampling.ItemSeed(ctx.Options.Seed, i, s) };
                var output = generator.Generate(ids, new GenerationOptions(d.MaxTokens, sampler, d.Stop, Grammar: d.Grammar), cancel: ctx.Cancel);
                string completion = CompletionText.Of(ctx.Tokenizer, ids, output, d.Stop);
                var check = Checkers.Check(d.Checker, new CheckInput(completion, record, target), settings);
                if (check.Passed) c++;
                outcomes[check.Outcome] = outcomes.GetValueOrDefault(check.Outcome) + 1;
                example ??= new JsonObject { ["prompt"] = text, ["completion"] = completion, ["outcome"] = check.Outcome };
                if (s == 0 && sample != null) { sample["answer"] = EvalSamples.Cut(completion); sample["outcome"] = check.Outcome; }
                if (!check.Passed)
                    failure ??= new JsonObject { ["problem"] = i, ["completion"] = completion, ["outcome"] = check.Outcome, ["output"] = check.Output };
                ctx.Progress?.Invoke(i * d.N + s + 1, records.Count * d.N);
            }
            correct.Add(c);
            if (sample != null)
            {
                // The answer shown is the first sample's; how many of all n passed says how typical it is.
                sample["passed"] = c;
                sample["n"] = d.N;
                samples.Add((JsonNode)sample);
            }
            foreach (var k in d.K)
            {
                passAt[k].Add(PassAtK.PassAt(d.N, c, k));
                passHat[k].Add(PassAtK.PassHat(d.N, c, k));
            }
        }
        const string method = "analytical: standard error of the mean of the per-problem unbiased estimates over problems";
        var metrics = new List<MetricResult>();
        foreach (var k in d.K) metrics.Add(new($"pass@{k}", EvalStatistics.Mean(passAt[k]), EvalStatistics.StandardErrorOfMean(passAt[k]), method, true));
        foreach (var k in d.K) metrics.Add(new($"pass^{k}", EvalStatistics.Mean(passHat[k]), EvalStatistics.StandardErrorOfMean(passHat[k]), method, true));
        var protocol = new JsonObject
        {
            ["data"] = d.Data,
            ["prompt"] = prompts.Describe(),
            ["n"] = d.N,
            ["k"] = new JsonArray(d.K.Select(k => (JsonNode)k).ToArray()),
            ["pass@k"] = "mean over problems of 1 - C(n-c, k)/C(n, k) (Chen et al. 2021, unbiased)",
            ["pass^k"] = "mean over problems of C(c, k)/C(n, k) (all k tries succeed)",
            ["sampling"] = TaskSampling.Describe(d.Sampling),
            ["seed"] = TaskSampling.SeedDescription,
            ["max_tokens"] = d.MaxTokens,
            ["stop"] = new JsonArray(d.Stop.Select(x => (JsonNode)x).ToArray()),
            ["completion_text"] = CompletionText.Description,
            ["target_field"] = d.TargetField,
            ["checker"] = d.Checker.Describe(),
            ["constrained_decoding"] = d.GrammarSource == null ? null : new JsonObject
            {
                ["source"] = d.GrammarSource.DeepClone(),
                ["rule"] = "each output is sampled from the tokens the grammar allows at each step; it ends when the grammar is complete",
            },
            ["sandbox"] = d.Checker.Type != "command" ? null : CommandSandbox.Describe(settings.Sandbox),
            ["prompt_truncation"] = PromptBuilder.TruncationRule,
        };
        var details = new JsonObject
        {
            ["items_available"] = available,
            ["outcomes"] = new JsonObject(outcomes.Select(o => KeyValuePair.Create(o.Key, (JsonNode?)o.Value))),
            ["correct_per_problem"] = new JsonArray(correct.Select(x => (JsonNode)x).ToArray()),
            ["prompts_truncated"] = prompts.Truncated,
            ["first_sample"] = example,
            ["first_failure"] = failure,
            ["samples"] = samples,
        };
        return new TaskResult(name, "sampled", source, records.Count, metrics, protocol, details, clock.Elapsed.TotalSeconds);
    }
}
