using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Inference;
using Hone.Model;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Hone.Training;

namespace Hone.Data;

/// <summary>A record that cannot be used, with where it is.</summary>
public sealed class DataFormatException(string file, long line, string message)
    : Exception($"{file}:{line}: {message}")
{
    public string File { get; } = file;
    public long Line { get; } = line;
}

/// <summary>
/// Reads training data and tokenizes it for a model:
/// CPT — a .txt file (documents separated by blank lines) or JSONL {"text": ...}; each document becomes
/// [BOS] text EOS, every token a target.
/// SFT — JSONL (or a JSON array) in the OpenAI `messages` shape, Alpaca (`instruction`/`input`/`output`, optional
/// `system`, `history`) or ShareGPT (`conversations` with `from`/`value`), rendered with the model's chat template
/// (or a given one, or a plain instruction/response template for base models); only assistant tokens are
/// targets unless TrainOnPrompt.
/// Malformed records are errors naming file and line; with SkipBadLines they are counted and skipped.
/// </summary>
public static class TrainingDataLoader
{
    /// <summary>Used when a model has no chat template (base models): instruction/response with EOS after answers.</summary>
    public const string PlainTemplate =
        "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}\n\n" +
        "{% elif message['role'] == 'user' %}{% if loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'assistant' %}\n\n{% endif %}" +
        "### Instruction:\n{{ message['content'] }}\n\n### Response:\n" +
        "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}";

    public static TrainingData Load(Checkpoint checkpoint, TrainOptions o)
    {
        if (o.ReplayData != null && o.Stage != TrainingStage.Sft)
            throw new ArgumentException("replay data mixes plain documents into sft; for cpt, put them in the data");
        var tokenizer = checkpoint.LoadTokenizer();
        int skipped = 0;
        ChatTemplate? template = null;
        string templateName = "";
        if (o.Stage == TrainingStage.Sft) (template, templateName) = ResolveTemplate(tokenizer, o.Template);
        List<TrainingExample> Read(string path, TrainingStage stage)
        {
            var examples = new List<TrainingExample>();
            foreach (var (line, record, error) in Records(path, stage))
            {
                try
                {
                    if (error != null) throw new DataFormatException(path, line, error);
                    var example = stage == TrainingStage.Cpt
                        ? Document(tokenizer, record!)
                        : Conversation(tokenizer, template!, ToMessages(record!, path, line), o.TrainOnPrompt);
                    if (example.TargetCount > 0) examples.Add(example);
                }
                catch (Exception e) when (e is DataFormatException or TemplateException or FormatException or InvalidOperationException or KeyNotFoundException)
                {
                    if (!o.SkipBadLines) throw e as DataFormatException ?? new DataFormatException(path, line, e.Message);
                    skipped++;
                }
            }
            return examples;
        }
        var train = Read(o.Data, o.Stage);
        List<TrainingExample>? validation = null;
        if (o.ValData != null) validation = Read(o.ValData, o.Stage);
        else if (o.ValSplit > 0 && train.Count >= 2)
        {
            var order = Enumerable.Range(0, train.Count).ToArray();
            var rng = new Xoshiro256(o.Seed + 7919);
            for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            int held = Math.Max(1, (int)Math.Round(train.Count * o.ValSplit));
            var heldSet = order.Take(held).ToHashSet();
            validation = heldSet.Order().Select(i => train[i]).ToList();
            train = Enumerable.Range(0, train.Count).Where(i => !heldSet.Contains(i)).Select(i => train[i]).ToList();
        }
        if (train.Count == 0) throw new DataFormatException(o.Data, 0, "no usable training examples");
        // Replay documents join training after the validation split: they are never validation.
        var replay = o.ReplayData != null ? Read(o.ReplayData, TrainingStage.Cpt) : [];
        train.AddRange(replay);
        int replayed = replay.Count;
        bool packing = o.Packing ?? o.Stage == TrainingStage.Cpt;
        int pad = tokenizer.PaddingId ?? tokenizer.EosId ?? 0;
        var rows = new TrainingRows(train, o.SeqLen, packing, pad, o.Seed);
        var valRows = validation is { Count: > 0 } ? new TrainingRows(validation, o.SeqLen, packing, pad, o.Seed) : null;
        long tokens = train.Sum(e => (long)e.Ids.Length), targets = train.Sum(e => (long)e.TargetCount);
        var description = new StringBuilder($"data: {train.Count - replayed} {(o.Stage == TrainingStage.Cpt ? "documents" : "conversations")}" +
            (replayed > 0 ? $" + {replayed} replay documents" : "") + $", {tokens:N0} tokens ({targets:N0} targets)");
        if (valRows != null) description.Append($"; validation {validation!.Count}");
        if (skipped > 0) description.Append($"; skipped {skipped} bad records");
        if (template != null) description.Append($"; template {templateName}");
        description.Append(packing ? $"; packed into {rows.RowsPerEpoch} windows of {o.SeqLen}" : $"; {rows.RowsPerEpoch} rows of {o.SeqLen}");
        return new TrainingData(rows, valRows, skipped, description.ToString());
    }

    public static (ChatTemplate Template, string Name) ResolveTemplate(Tokenizer tokenizer, string? templateFile)
    {
        if (templateFile != null)
        {
            if (!File.Exists(templateFile)) throw new FileNotFoundException($"{templateFile}: chat template file not found", templateFile);
            return (ChatTemplate.Parse(File.ReadAllText(templateFile), templateFile), Path.GetFileName(templateFile));
        }
        if (tokenizer.ChatTemplate != null) return (ChatTemplate.Parse(tokenizer.ChatTemplate, tokenizer.ChatTemplateSource ?? "the model's chat_template"), "from the model");
        return (ChatTemplate.Parse(PlainTemplate, "plain"), "plain instruction/response (the model has none)");
    }

    /// <summary>Records of a data file with their 1-based line numbers: JSONL lines, a JSON array, or (CPT) text
    /// documents separated by blank lines. A line that is not JSON comes back as an error message (so callers can
    /// skip it and go on).</summary>
    public static IEnumerable<(long Line, JsonNode? Record, string? Error)> Records(string path, TrainingStage stage)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
        if (path.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
        {
            if (stage != TrainingStage.Cpt) throw new DataFormatException(path, 0, "plain text is continued-pretraining data; use --stage cpt, or JSONL conversations for sft");
            foreach (var (line, text) in TextDocuments(path)) yield return (line, new JsonObject { ["text"] = text }, null);
            yield break;
        }
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            JsonNode? root;
            try { root = JsonNode.Parse(File.ReadAllText(path)); }
            catch (JsonException e) { throw new DataFormatException(path, (e.LineNumber ?? 0) + 1, $"not valid JSON: {e.Message}"); }
            if (root is not JsonArray array) throw new DataFormatException(path, 1, "a .json data file must hold an array of records (or use .jsonl)");
            for (int i = 0; i < array.Count; i++) yield return (i + 1, array[i], array[i] == null ? "null record" : null);
            yield break;
        }
        using var reader = new StreamReader(path, Encoding.UTF8);
        long number = 0;
        string? content;
        while ((content = reader.ReadLine()) != null)
        {
            number++;
            if (content.Trim().Length == 0) continue;
            JsonNode? node = null;
            string? error = null;
            try { node = JsonNode.Parse(content); }
            catch (JsonException e) { error = $"not valid JSON: {e.Message}"; }
            yield return (number, node, error ?? (node == null ? "null record" : null));
        }
    }

    static IEnumerable<(long Line, string Text)> TextDocuments(string path)
    {
        var current = new StringBuilder();
        long start = 1, number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (line.Trim().Length == 0)
            {
                if (current.Length > 0) { yield return (start, current.ToString()); current.Clear(); }
                start = number + 1;
                continue;
            }
            if (current.Length > 0) current.Append('\n');
            current.Append(line);
        }
        if (current.Length > 0) yield return (start, current.ToString());
    }

    static TrainingExample Document(Tokenizer tokenizer, JsonNode record)
    {
        string text = record["text"] is JsonValue v && v.TryGetValue(out string? s) ? s : throw new FormatException("expected a \"text\" string field");
        var ids = new List<int>();
        if (tokenizer.AddsBos && tokenizer.BosId is int bos) ids.Add(bos);
        ids.AddRange(tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false));
        if (tokenizer.EosId is int eos) ids.Add(eos);
        var targets = Enumerable.Repeat(true, ids.Count).ToArray();
        targets[0] = false;
        return new TrainingExample(ids.ToArray(), targets);
    }

    /// <summary>Normalize a record to OpenAI-style messages.</summary>
    public static JsonArray ToMessages(JsonNode record, string file, long line)
    {
        if (record is not JsonObject o) throw new DataFormatException(file, line, "a record must be a JSON object");
        if (o["messages"] is JsonArray messages)
        {
            var result = new JsonArray();
            foreach (var m in messages)
            {
                string role = m?["role"] is JsonValue r && r.TryGetValue(out string? rs) ? rs : throw new DataFormatException(file, line, "a message needs a \"role\" string");
                if (role is not ("system" or "user" or "assistant" or "tool")) throw new DataFormatException(file, line, $"unknown role '{role}'");
                if (m["content"] is not JsonValue c || !c.TryGetValue(out string? _))
                    if (m["tool_calls"] == null) throw new DataFormatException(file, line, $"the {role} message needs a \"content\" string");
                result.Add((JsonNode?)m.DeepClone());
            }
            return Checked(result, file, line);
        }
        if (o["conversations"] is JsonArray conversation)
        {
            var result = new JsonArray();
            if (o["system"] is JsonValue sys && sys.TryGetValue(out string? systemText)) result.Add((JsonNode)Message("system", systemText));
            foreach (var turn in conversation)
            {
                string from = turn?["from"] is JsonValue f && f.TryGetValue(out string? fs) ? fs : throw new DataFormatException(file, line, "a ShareGPT turn needs \"from\"");
                string value = turn["value"] is JsonValue v && v.TryGetValue(out string? vs) ? vs : throw new DataFormatException(file, line, "a ShareGPT turn needs a \"value\" string");
                string role = from switch
                {
                    "human" or "user" => "user",
                    "gpt" or "assistant" or "model" => "assistant",
                    "system" => "system",
                    _ => throw new DataFormatException(file, line, $"unknown ShareGPT speaker '{from}' (human, gpt, system)"),
                };
                result.Add((JsonNode)Message(role, value));
            }
            return Checked(result, file, line);
        }
        if (o["instruction"] is JsonValue instruction && instruction.TryGetValue(out string? instructionText))
        {
            var result = new JsonArray();
            if (o["system"] is JsonValue sys && sys.TryGetValue(out string? systemText) && systemText.Length > 0) result.Add((JsonNode)Message("system", systemText));
            if (o["history"] is JsonArray history)
                foreach (var pair in history)
                {
                    if (pair is not JsonArray p || p.Count != 2) throw new DataFormatException(file, line, "history entries must be [prompt, response] pairs");
                    result.Add((JsonNode)Message("user", p[0]!.GetValue<string>()));
                    result.Add((JsonNode)Message("assistant", p[1]!.GetValue<string>()));
                }
            string input = o["input"] is JsonValue i && i.TryGetValue(out string? it) ? it : "";
            string output = o["output"] is JsonValue v && v.TryGetValue(out string? ot) ? ot : throw new DataFormatException(file, line, "an Alpaca record needs an \"output\" string");
            result.Add((JsonNode)Message("user", input.Length > 0 ? $"{instructionText}\n\n{input}" : instructionText));
            result.Add((JsonNode)Message("assistant", output));
            return result;
        }
        throw new DataFormatException(file, line, "unrecognized record: expected \"messages\" (OpenAI), \"conversations\" (ShareGPT) or \"instruction\"/\"output\" (Alpaca)");
    }

    static JsonObject Message(string role, string content) => new() { ["role"] = role, ["content"] = content };

    static JsonArray Checked(JsonArray messages, string file, long line)
    {
        if (!messages.Any(m => m!["role"]!.GetValue<string>() == "assistant")) throw new DataFormatException(file, line, "the conversation has no assistant message to learn from");
        return messages;
    }

    /// <summary>
    /// Tokenize a conversation with assistant tokens as targets. The template is rendered incrementally (before each
    /// assistant turn with the generation prompt, and after it), so each assistant turn's text is located exactly;
    /// a template that does not render conversations as growing prefixes is refused rather than guessed at.
    /// </summary>
    public static TrainingExample Conversation(Tokenizer tokenizer, ChatTemplate template, JsonArray messages, bool trainOnPrompt)
    {
        var options = new ChatTemplateOptions { BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken };
        string Render(int count, bool generationPrompt) =>
            template.Apply(new JsonArray(messages.Take(count).Select(m => m!.DeepClone()).ToArray()), options with { AddGenerationPrompt = generationPrompt });
        var segments = new List<(string Text, bool Target)>();
        string sofar = "";
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i]!["role"]!.GetValue<string>() != "assistant") continue;
            string before = Render(i, true), after = Render(i + 1, false);
            if (!before.StartsWith(sofar, StringComparison.Ordinal) || !after.StartsWith(before, StringComparison.Ordinal))
                throw new InvalidOperationException("the chat template does not render this conversation as growing prefixes, so assistant turns cannot be located; pass --template with a template that does");
            segments.Add((before[sofar.Length..], false));
            segments.Add((after[before.Length..], true));
            sofar = after;
        }
        string full = Render(messages.Count, false);
        if (!full.StartsWith(sofar, StringComparison.Ordinal)) throw new InvalidOperationException("the chat template's full rendering does not extend its partial renderings");
        segments.Add((full[sofar.Length..], false));

        var ids = new List<int>();
        var isTarget = new List<bool>();
        foreach (var (text, target) in segments)
        {
            if (text.Length == 0) continue;
            var part = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: true);
            ids.AddRange(part);
            isTarget.AddRange(Enumerable.Repeat(target || trainOnPrompt, part.Length));
        }
        if (tokenizer.AddsBos && tokenizer.BosId is int bos && (ids.Count == 0 || ids[0] != bos)) { ids.Insert(0, bos); isTarget.Insert(0, false); }
        if (isTarget.Count > 0) isTarget[0] = false;
        return new TrainingExample(ids.ToArray(), isTarget.ToArray());
    }
}
