using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Synthetic;

/// <param name="TrainData">the domain training conversations (JSONL {"messages"}), policy questions among them</param>
/// <param name="TaskItems">the policy questions task's items (task-policies.jsonl: id, intent, prompt_messages, expected)</param>
/// <param name="ForgetTopics">the policies to forget (topic names); null: every fourth topic from the first</param>
/// <param name="Reference">an eval results file of a model never trained on the forget topics: the forget set's
/// truth-ratio task then reports forget quality against it</param>
public sealed record PolicyUnlearningOptions(string TrainData, string TaskItems, string Out, IReadOnlyList<string>? ForgetTopics = null, string? Reference = null);

/// <summary>What <see cref="PolicyUnlearning.Build"/> wrote, with counts.</summary>
public sealed record PolicyUnlearningFiles(IReadOnlyList<string> ForgetTopics, int ForgetConversations, int RetainConversations, int OtherConversations,
    int ForgetQuestions, int RetainQuestions, IReadOnlyList<string> Written);

/// <summary>
/// An unlearning benchmark from the quickstart's store-policy data: some policies are the forget set, the rest the
/// retain set. Conversations are assigned to a policy when they use the policy FAQ's system message and their answer
/// states that policy's fact. Writes the forget and retain training conversations, the training data without the
/// forget conversations (for a model that never saw them), the policy questions split the same way, and TOFU-style
/// truth-ratio items: for each held-out question and each of its policy's two answer wordings, the wording with the
/// true fact (the "paraphrased" answer) and with each of three wrong facts of the same form (the "perturbed" answers,
/// <see cref="WrongFacts"/>), plus the task files that evaluate all of it.
/// </summary>
public static class PolicyUnlearning
{
    /// <summary>Three false versions of each policy's fact, of the same form (another number, time, country or page),
    /// written by hand so a perturbed answer reads as plausibly as the true one.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> WrongFacts = new Dictionary<string, string[]>
    {
        ["support_hours"] = ["9:00 to 17:00", "7:00 to 22:00", "10:00 to 18:00"],
        ["free_shipping"] = ["orders over 30 euros", "orders over 100 euros", "orders over 75 euros"],
        ["express_shipping"] = ["4.90 euros", "14.90 euros", "12.50 euros"],
        ["payment_methods"] = ["Visa, Maestro and Apple Pay", "Mastercard, Klarna and PayPal", "Visa, American Express and bank transfer"],
        ["warranty"] = ["one-year warranty", "three-year warranty", "five-year warranty"],
        ["gift_cards"] = ["valid for one year", "valid for two years", "valid for five years"],
        ["price_match"] = ["match prices", "always match prices", "match prices within 14 days"],
        ["international"] = ["all EU countries only", "Germany, France and Spain", "all EU countries, the UK and the US"],
        ["invoice"] = ["Settings page of your account", "Help page of your account", "Payments page of your account"],
        ["delete_account"] = ["Account settings", "Security settings", "Payment settings"],
        ["student_discount"] = ["15 percent", "5 percent", "20 percent"],
        ["order_changes"] = ["within one day", "within 30 minutes", "within two hours"],
    };

    /// <summary>Every fourth topic from the first: a quarter of the policies.</summary>
    public static IReadOnlyList<string> DefaultForgetTopics => PolicyFaq.Topics.Where((_, i) => i % 4 == 0).Select(t => t.Name).ToList();

    /// <summary>The policy a conversation is about, or null (not a policy conversation).</summary>
    public static PolicyTopic? TopicOf(JsonObject record)
    {
        if (record["messages"] is not JsonArray messages) return null;
        string? Content(string role) => messages.OfType<JsonObject>().FirstOrDefault(m => (string?)m["role"] == role)?["content"]?.GetValue<string>();
        if (Content("system") != PolicyFaq.SystemMessage || Content("assistant") is not string answer) return null;
        return PolicyFaq.Topics.FirstOrDefault(t => answer.Contains(t.Fact, StringComparison.Ordinal));
    }

    public static PolicyUnlearningFiles Build(PolicyUnlearningOptions o)
    {
        var topics = o.ForgetTopics ?? DefaultForgetTopics;
        foreach (var t in topics)
            if (!PolicyFaq.Topics.Any(p => p.Name == t))
                throw new ArgumentException($"unknown policy topic '{t}'{Spelling.Suggestion(t, PolicyFaq.Topics.Select(p => p.Name).ToList())}; known: {string.Join(", ", PolicyFaq.Topics.Select(p => p.Name))}");
        if (topics.Count == 0 || topics.Count == PolicyFaq.Topics.Length) throw new ArgumentException("the forget set needs at least one policy, and the retain set at least one");
        var forgetSet = topics.ToHashSet(StringComparer.Ordinal);
        if (o.Reference != null && !File.Exists(o.Reference)) throw new FileNotFoundException($"{o.Reference}: the reference results file does not exist");
        Directory.CreateDirectory(o.Out);

        var forget = new List<string>();
        var retain = new List<string>();
        var kept = new List<string>();
        int other = 0, lineNumber = 0;
        foreach (var line in File.ReadLines(o.TrainData))
        {
            lineNumber++;
            if (line.Trim().Length == 0) continue;
            JsonObject record;
            try { record = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("not a JSON object"); }
            catch (Exception e) when (e is System.Text.Json.JsonException or FormatException) { throw new FormatException($"{o.TrainData}:{lineNumber}: {e.Message}"); }
            var topic = TopicOf(record);
            if (topic != null && forgetSet.Contains(topic.Name)) { forget.Add(line); continue; }
            kept.Add(line);
            if (topic != null) retain.Add(line); else other++;
        }
        if (forget.Count == 0) throw new FormatException($"{o.TrainData}: no conversation about {string.Join(", ", topics)} (policy conversations use the system message \"{PolicyFaq.SystemMessage}\")");

        var forgetItems = new List<JsonObject>();
        var retainItems = new List<JsonObject>();
        lineNumber = 0;
        foreach (var line in File.ReadLines(o.TaskItems))
        {
            lineNumber++;
            if (line.Trim().Length == 0) continue;
            var item = JsonNode.Parse(line) as JsonObject ?? throw new FormatException($"{o.TaskItems}:{lineNumber}: not a JSON object");
            string intent = item["intent"]?.GetValue<string>() ?? throw new FormatException($"{o.TaskItems}:{lineNumber}: no \"intent\"");
            if (!PolicyFaq.Topics.Any(t => t.Name == intent)) throw new FormatException($"{o.TaskItems}:{lineNumber}: intent '{intent}' is not a policy topic");
            (forgetSet.Contains(intent) ? forgetItems : retainItems).Add(item);
        }

        var written = new List<string>();
        string Write(string name, IEnumerable<string> lines)
        {
            var path = Path.Combine(o.Out, name);
            AtomicFile.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")));
            written.Add(path);
            return path;
        }
        string WriteJson(string name, JsonObject json) => Write(name, [json.ToJsonString(new() { WriteIndented = true })]);

        Write("forget.jsonl", forget);
        Write("retain.jsonl", retain);
        Write("train-without-forget.jsonl", kept);
        Write("policies-forget.jsonl", forgetItems.Select(i => i.ToJsonString()));
        Write("policies-retain.jsonl", retainItems.Select(i => i.ToJsonString()));
        Write("truth-ratio-forget.jsonl", forgetItems.SelectMany(TruthRatioItems).Select(i => i.ToJsonString()));
        Write("truth-ratio-retain.jsonl", retainItems.SelectMany(TruthRatioItems).Select(i => i.ToJsonString()));
        foreach (var set in new[] { "forget", "retain" })
        {
            WriteJson($"policies_{set}.json", new JsonObject
            {
                ["version"] = 1, ["kind"] = "sampled", ["data"] = $"policies-{set}.jsonl",
                ["description"] = $"held-out questions about the {set} set's store policies (the policy's fact must appear verbatim); the quickstart's policy task protocol",
                ["chat"] = true, ["messages_field"] = "prompt_messages", ["target_field"] = "expected", ["checker"] = new JsonObject { ["type"] = "facts" },
                ["n"] = 4, ["k"] = new JsonArray(1), ["max_tokens"] = 48,
                ["sampling"] = new JsonObject { ["temperature"] = 0.6, ["top_p"] = 0.95 },
            });
            WriteJson($"{set}_perplexity.json", new JsonObject
            {
                ["version"] = 1, ["kind"] = "perplexity", ["data"] = $"{set}.jsonl", ["messages_field"] = "messages",
                ["description"] = $"answer perplexity of the {set} set's training conversations",
            });
            var truth = new JsonObject
            {
                ["version"] = 1, ["kind"] = "truth_ratio", ["data"] = $"truth-ratio-{set}.jsonl",
                ["description"] = $"TOFU's truth ratio on the {set} set's held-out policy questions: perturbed answers carry a wrong fact",
            };
            if (set == "forget" && o.Reference != null) truth["reference"] = Path.GetFullPath(o.Reference);
            WriteJson($"truth_ratio_{set}.json", truth);
        }
        return new PolicyUnlearningFiles(topics, forget.Count, retain.Count, other, forgetItems.Count, retainItems.Count, written);
    }

    /// <summary>For one policy question: one item per answer wording of its policy, the wording with the true fact
    /// (paraphrased) and with each wrong fact (perturbed).</summary>
    static IEnumerable<JsonObject> TruthRatioItems(JsonObject item)
    {
        var topic = PolicyFaq.Topics.First(t => t.Name == item["intent"]!.GetValue<string>());
        for (int k = 0; k < topic.Answers.Length; k++)
        {
            string wording = topic.Answers[k];
            yield return new JsonObject
            {
                ["id"] = $"{item["id"]}-{k}", ["intent"] = topic.Name, ["prompt_messages"] = item["prompt_messages"]!.DeepClone(),
                ["paraphrased"] = wording.Replace("{fact}", topic.Fact, StringComparison.Ordinal),
                ["perturbed"] = new JsonArray(WrongFacts[topic.Name].Select(f => (JsonNode)wording.Replace("{fact}", f, StringComparison.Ordinal)).ToArray()),
            };
        }
    }
}
