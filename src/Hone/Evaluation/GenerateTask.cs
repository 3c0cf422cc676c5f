using System.Diagnostics;
using System.Text.Json.Nodes;
using Hone.Inference;
using Hone.Tokenization;
using Hone.Tokenization.Templates;

namespace Hone.Evaluation;

/// <summary>How a record becomes prompt tokens: a template over its fields, sent as plain text or, with Chat, as the
/// user message (after an optional system message) rendered by the model's chat template with the generation prompt.</summary>
/// <param name="ChatTemplate">a Jinja template file to use instead of the model's</param>
/// <param name="AddBos">prepend BOS (null: when the tokenizer adds one); a chat template that writes BOS itself does not
/// get a second</param>
/// <param name="MessagesField">with Chat: a record field holding the whole conversation (an array of {role, content}),
/// used instead of the template (per-record system prompts, multi-turn contexts)</param>
public sealed record PromptSettings(string Template = "{prompt}", bool Chat = false, string? System = null, string? ChatTemplate = null, bool? AddBos = null,
    string? MessagesField = null)
{
    public static readonly string[] Keys = ["prompt", "chat", "system", "chat_template", "add_bos", "messages_field"];

    public static PromptSettings Read(TaskSpecReader r, TaskOrigin origin)
    {
        var s = new PromptSettings(r.String("prompt") ?? "{prompt}", r.Bool("chat") ?? false, r.String("system"),
            r.String("chat_template") is string t ? origin.Resolve(t) : null, r.Bool("add_bos"), r.String("messages_field"));
        PromptTemplate.Fields(s.Template);
        if (!s.Chat && (s.System != null || s.ChatTemplate != null || s.MessagesField != null))
            throw new FormatException($"{r.Where}: \"system\", \"chat_template\" and \"messages_field\" need \"chat\": true");
        if (s.MessagesField != null && (s.System != null || r.String("prompt") != null))
            throw new FormatException($"{r.Where}: \"messages_field\" replaces \"prompt\" and \"system\"; give one or the other");
        return s;
    }
}

/// <summary>Builds prompt ids for records and fits them to the context, leaving room for the answer.</summary>
public sealed class PromptBuilder
{
    readonly PromptSettings _settings;
    readonly Tokenizer _tokenizer;
    readonly ChatTemplate? _template;
    readonly string? _templateName;

    public PromptBuilder(PromptSettings settings, Tokenizer tokenizer)
    {
        _settings = settings;
        _tokenizer = tokenizer;
        if (settings.Chat) (_template, _templateName) = ChatConversation.ResolveTemplate(tokenizer, settings.ChatTemplate);
    }

    public bool AddBos => _settings.AddBos ?? _tokenizer.AddsBos;

    public const string TruncationRule = "prompts longer than the context minus min(max_tokens, context/2) lose their oldest tokens " +
                                         "(lm-eval's rule where max_tokens is at most half the context)";

    /// <summary>How many prompts were cut from the left to leave room for the answer.</summary>
    public int Truncated { get; private set; }

    public string Text(JsonObject record)
    {
        if (_settings.MessagesField is string field && _template != null)
        {
            if (record[field] is not JsonArray conversation)
                throw new FormatException($"the record's \"{field}\" must be an array of messages");
            return _template.Apply((JsonArray)conversation.DeepClone(), new ChatTemplateOptions { AddGenerationPrompt = true, BosToken = _tokenizer.BosToken, EosToken = _tokenizer.EosToken });
        }
        string user = PromptTemplate.Render(_settings.Template, f => PromptTemplate.FieldText(record, f));
        if (_template == null) return user;
        var messages = new JsonArray();
        if (_settings.System != null) messages.Add((JsonNode)new JsonObject { ["role"] = "system", ["content"] = _settings.System });
        messages.Add((JsonNode)new JsonObject { ["role"] = "user", ["content"] = user });
        return _template.Apply(messages, new ChatTemplateOptions { AddGenerationPrompt = true, BosToken = _tokenizer.BosToken, EosToken = _tokenizer.EosToken });
    }

    /// <summary>What the record asks, for people reading results: the last user message of a conversation, or the
    /// user text the template renders (no system prompt, no chat markup).</summary>
    public string Question(JsonObject record)
    {
        if (_settings.MessagesField is string field && _template != null)
        {
            var last = (record[field] as JsonArray)?.LastOrDefault(m => m is JsonObject o && (string?)o["role"] == "user");
            return last?["content"] is JsonValue v && v.TryGetValue(out string? content) ? content : last?["content"]?.ToJsonString() ?? "";
        }
        return PromptTemplate.Render(_settings.Template, f => PromptTemplate.FieldText(record, f));
    }

    /// <summary>Prompt ids, the oldest cut so that the answer has maxTokens of room (lm-eval's rule) — but at most half
    /// the context, so a small-context model still sees a prompt (its answer then ends at the context's end).</summary>
    public int[] Encode(string text, int contextLength, int maxTokens)
    {
        List<int> ids;
        if (_template != null)
        {
            // The template writes special tokens as text; BOS is added only when wanted and not already written.
            ids = _tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: true).ToList();
            if (AddBos && _tokenizer.BosId is int b && (ids.Count == 0 || ids[0] != b)) ids.Insert(0, b);
        }
        else
        {
            ids = _tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false).ToList();
            if (AddBos) ids.Insert(0, _tokenizer.BosId ?? throw new ArgumentException("add_bos is set but the tokenizer has no BOS token"));
        }
        if (ids.Count == 0) throw new ArgumentException("the prompt is empty and there is no BOS to start from");
        int room = contextLength - Math.Min(maxTokens, contextLength / 2);
        if (ids.Count > room) { Truncated++; ids = ids.GetRange(ids.Count - room, room); }
        return ids.ToArray();
    }

    public JsonObject Describe() => new()
    {
        ["template"] = _settings.Template,
        ["chat"] = _settings.Chat,
        ["chat_template"] = _settings.Chat ? _templateName : null,
        ["system"] = _settings.System,
        ["messages_field"] = _settings.MessagesField,
        ["bos"] = AddBos,
        ["tokenization"] = _settings.Chat ? "rendered conversation encoded with special tokens parsed" : "prompt text encoded without special tokens",
    };
}

/// <summary>The text a generation added to its prompt.</summary>
public static class CompletionText
{
    public const string Description = "decode(prompt + generated ids) minus decode(prompt), cut before the first stop string " +
                                      "(decoding the generated ids alone would drop a SentencePiece leading space, and with it code indentation)";

    public static string Of(Tokenizer tokenizer, int[] prompt, GenerationResult result, IReadOnlyList<string> stops)
    {
        string before = tokenizer.Decode(prompt);
        string all = tokenizer.Decode([.. prompt, .. result.Ids]);
        string text = all.StartsWith(before, StringComparison.Ordinal) ? all[before.Length..] : result.Text;
        int cut = text.Length;
        foreach (var stop in stops)
        {
            int at = stop.Length == 0 ? -1 : text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && at < cut) cut = at;
        }
        return text[..cut];
    }
}

/// <param name="TargetField">the record field holding the reference: a string, or an array of acceptable strings</param>
/// <param name="Scorers">each scorer gives one metric (named after it unless renamed)</param>
public sealed record GenerateTaskDefinition(string Data, PromptSettings Prompt, string TargetField, IReadOnlyList<(string Metric, ScorerSpec Scorer)> Scorers,
    int MaxTokens, IReadOnlyList<string> Stop, SamplerOptions Sampling);

/// <summary>Prompt → continuation (greedy unless sampling says otherwise) → each scorer against the references.</summary>
public static class GenerateTask
{
    public static readonly string[] Keys = [.. PromptSettings.Keys, "target_field", "scorers", "max_tokens", "stop", "sampling"];
    static readonly string[] ScorerKeys = ["name", "metric", "normalize", "pattern"];

    public static EvalTask Parse(TaskSpecReader r, TaskOrigin origin)
    {
        var scorers = new List<(string, ScorerSpec)>();
        if (r.Node("scorers") is not JsonArray list || list.Count == 0)
            throw new FormatException($"{r.Where}: \"scorers\" must be a non-empty array (of {string.Join(", ", TextScorers.Table.Keys)})");
        for (int i = 0; i < list.Count; i++)
        {
            string where = $"{r.Where}: scorers[{i}]";
            var (metric, spec) = list[i] switch
            {
                JsonValue v when v.TryGetValue(out string? n) => (n, new ScorerSpec(n, [])),
                JsonObject o => ReadScorer(new TaskSpecReader(o, where)),
                _ => throw new FormatException($"{where}: a scorer is a name or an object {{name, normalize, pattern, metric}}"),
            };
            if (!TextScorers.Table.ContainsKey(spec.Name)) throw new FormatException($"{where}: unknown scorer \"{spec.Name}\" (known: {string.Join(", ", TextScorers.Table.Keys)})");
            if (spec.Normalize.Count == 0 && list[i] is JsonValue) spec = spec with { Normalize = TextScorers.DefaultNormalization(spec.Name) };
            if (spec.Name == "regex" && spec.Pattern == null) throw new FormatException($"{where}: the regex scorer needs a \"pattern\"");
            if (spec.Name != "regex" && spec.Pattern != null) throw new FormatException($"{where}: \"pattern\" is for the regex scorer");
            if (scorers.Any(s => s.Item1 == metric)) throw new FormatException($"{where}: two scorers give the metric \"{metric}\"; rename one with \"metric\"");
            scorers.Add((metric, spec));
        }
        var d = new GenerateTaskDefinition(origin.Resolve(r.RequiredString("data")), PromptSettings.Read(r, origin), r.String("target_field") ?? "answer",
            scorers, r.Int("max_tokens") ?? 128, r.Strings("stop") ?? [], TaskSampling.Read(r.Object("sampling"), SamplerOptions.Greedy));
        if (d.MaxTokens < 1) throw new FormatException($"{r.Where}: \"max_tokens\" must be at least 1");
        return new EvalTask(origin.Name, "generate", origin.Source, d, c => Run(origin.Name, origin.Source, d, c));
    }

    static (string, ScorerSpec) ReadScorer(TaskSpecReader s)
    {
        s.AllowOnly(ScorerKeys);
        string name = s.RequiredString("name");
        var normalize = s.Strings("normalize") ?? TextScorers.DefaultNormalization(name).ToArray();
        TextNormalization.Validate(normalize, s.Where);
        string? pattern = s.String("pattern");
        if (pattern != null) TextScorers.ValidatePattern(pattern, s.Where);
        return (s.String("metric") ?? name, new ScorerSpec(name, normalize, pattern));
    }

    public static TaskResult Run(string name, string source, GenerateTaskDefinition d, EvalContext ctx)
    {
        var clock = Stopwatch.StartNew();
        var records = EvalData.ReadRecords(d.Data);
        int available = records.Count;
        if (ctx.Options.Limit is int limit) records = records.Take(limit).ToList();
        if (records.Count == 0) throw new ArgumentException($"{name}: no records in {d.Data}");
        var prompts = new PromptBuilder(d.Prompt, ctx.Tokenizer);
        var generator = new Generator(ctx.Model, ctx.Tokenizer);
        generator.Reset();
        var scores = d.Scorers.Select(_ => new List<double>()).ToArray();
        JsonObject? example = null;
        var samples = new JsonArray();
        int stopped = 0;
        for (int i = 0; i < records.Count; i++)
        {
            ctx.Cancel.ThrowIfCancellationRequested();
            var record = records[i];
            var references = Checkers.References(record[d.TargetField] ?? throw new FormatException($"{d.Data}: record {i + 1} has no \"{d.TargetField}\""));
            string text = prompts.Text(record);
            var ids = prompts.Encode(text, ctx.Model.MaxContext, d.MaxTokens);
            var sampler = d.Sampling with { Seed = TaskSampling.ItemSeed(ctx.Options.Seed, i) };
            var output = generator.Generate(ids, new GenerationOptions(d.MaxTokens, sampler, d.Stop), cancel: ctx.Cancel);
            if (output.FinishReason == "stop") stopped++;
            string completion = CompletionText.Of(ctx.Tokenizer, ids, output, d.Stop);
            for (int s = 0; s < d.Scorers.Count; s++) scores[s].Add(TextScorers.Score(d.Scorers[s].Scorer, completion, references));
            example ??= new JsonObject
            {
                ["prompt"] = text, ["output"] = completion, ["references"] = new JsonArray(references.Select(x => (JsonNode)x).ToArray()),
                ["scores"] = new JsonObject(d.Scorers.Select((s, j) => KeyValuePair.Create(s.Metric, (JsonNode?)scores[j][0]))),
            };
            if (EvalSamples.Wanted(i))
                samples.Add((JsonNode)new JsonObject
                {
                    ["item"] = i, ["question"] = EvalSamples.Cut(prompts.Question(record)),
                    ["reference"] = EvalSamples.Cut(record[d.TargetField]), ["answer"] = EvalSamples.Cut(completion),
                    ["scores"] = new JsonObject(d.Scorers.Select((s, j) => KeyValuePair.Create(s.Metric, (JsonNode?)scores[j][i]))),
                });
            ctx.Progress?.Invoke(i + 1, records.Count);
        }
        var metrics = d.Scorers.Select((s, j) =>
            new MetricResult(s.Metric, EvalStatistics.Mean(scores[j]), EvalStatistics.StandardErrorOfMean(scores[j]), EvalStatistics.MeanStandardErrorMethod, true)).ToList();
        var protocol = new JsonObject
        {
            ["data"] = d.Data,
            ["prompt"] = prompts.Describe(),
            ["target_field"] = d.TargetField,
            ["scorers"] = new JsonArray(d.Scorers.Select(s => (JsonNode)new JsonObject
            {
                ["metric"] = s.Metric, ["scorer"] = s.Scorer.Name,
                ["normalize"] = new JsonArray(s.Scorer.Normalize.Select(n => (JsonNode)n).ToArray()), ["pattern"] = s.Scorer.Pattern,
            }).ToArray()),
            ["references"] = "a string, or an array of strings of which the best-scoring counts",
            ["max_tokens"] = d.MaxTokens,
            ["stop"] = new JsonArray(d.Stop.Select(x => (JsonNode)x).ToArray()),
            ["end_of_turn_stops"] = true,
            ["completion_text"] = CompletionText.Description,
            ["sampling"] = TaskSampling.Describe(d.Sampling),
            ["seed"] = d.Sampling.Temperature == 0 ? null : TaskSampling.SeedDescription,
            ["prompt_truncation"] = PromptBuilder.TruncationRule,
        };
        var details = new JsonObject
        {
            ["items_available"] = available, ["prompts_truncated"] = prompts.Truncated, ["outputs_stopped"] = stopped, ["first_record"] = example,
            ["samples"] = samples,
        };
        return new TaskResult(name, "generate", source, records.Count, metrics, protocol, details, clock.Elapsed.TotalSeconds);
    }
}
