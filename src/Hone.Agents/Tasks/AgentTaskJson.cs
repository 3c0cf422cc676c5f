using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Agents;

/// <summary>
/// Tasks as JSON Lines (one task per line; docs/agent-benchmark.md documents the fields). Reading is strict: an unknown
/// key, a missing field or a wrong type is a one-line error naming the file, line and field.
/// </summary>
public static class AgentTaskJson
{
    public static JsonObject ToJson(AgentTask t) => new()
    {
        ["id"] = t.Id,
        ["split"] = t.Split,
        ["kind"] = t.Kind,
        ["user_id"] = t.UserId,
        ["customer"] = new JsonObject
        {
            ["first_name"] = t.Customer.FirstName,
            ["last_name"] = t.Customer.LastName,
            ["instruction"] = t.Customer.Instruction,
            ["request"] = t.Customer.Request,
            ["knows"] = new JsonObject(t.Customer.Knows.Select(k => KeyValuePair.Create(k.Key, (JsonNode?)k.Value))),
            ["does_not_know"] = Strings(t.Customer.DoesNotKnow),
            ["desired"] = t.Customer.Desired is { } d ? Call(d) : null,
            ["wants_to_know"] = Strings(t.Customer.WantsToKnow),
        },
        ["actions"] = new JsonArray(t.Actions.Select(a => (JsonNode)Call(a)).ToArray()),
        ["outputs"] = Strings(t.Outputs),
        ["required_reads"] = new JsonArray(t.RequiredReads.Select(a => (JsonNode)Call(a)).ToArray()),
    };

    static JsonArray Strings(IEnumerable<string> values) => new(values.Select(v => (JsonNode)v).ToArray());
    static JsonObject Call(ToolCall c) => new() { ["name"] = c.Name, ["arguments"] = c.Arguments.DeepClone() };

    public static void Write(string path, IEnumerable<AgentTask> tasks)
    {
        var text = new System.Text.StringBuilder();
        foreach (var t in tasks) text.Append(ToJson(t).ToJsonString()).Append('\n');
        AtomicFile.WriteAllText(path, text.ToString());
    }

    public static List<AgentTask> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: task file not found", path);
        var tasks = new List<AgentTask>();
        long line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (text.Trim().Length == 0) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(text); }
            catch (JsonException e) { throw new DataFormatException(path, line, $"not valid JSON: {e.Message}"); }
            tasks.Add(FromJson(node, path, line));
        }
        return tasks;
    }

    public static AgentTask FromJson(JsonNode? node, string file, long line)
    {
        var f = new Fields(file, line);
        var o = f.Object(node, "task", ["id", "split", "kind", "user_id", "customer", "actions", "outputs", "required_reads"]);
        var c = f.Object(o["customer"], "customer", ["first_name", "last_name", "instruction", "request", "knows", "does_not_know", "desired", "wants_to_know"]);
        var knowsObject = f.Object(c["knows"], "customer.knows", null);
        var knows = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in knowsObject) knows[k] = f.String(v, $"customer.knows.{k}");
        string split = f.String(o["split"], "split");
        if (split is not ("train" or "test")) throw new DataFormatException(file, line, $"split: expected \"train\" or \"test\", found \"{split}\"");
        var scenario = new CustomerScenario(f.String(c["first_name"], "customer.first_name"), f.String(c["last_name"], "customer.last_name"),
            f.String(c["instruction"], "customer.instruction"), f.String(c["request"], "customer.request"), knows,
            f.Strings(c["does_not_know"], "customer.does_not_know"), c["desired"] is null ? null : f.Call(c["desired"], "customer.desired"),
            f.Strings(c["wants_to_know"], "customer.wants_to_know"));
        var actions = f.Array(o["actions"], "actions").Select((a, i) => f.Call(a, $"actions[{i}]")).ToList();
        if (actions.Count == 0) throw new DataFormatException(file, line, "actions: a task needs at least the authentication call");
        return new AgentTask(f.String(o["id"], "id"), split, f.String(o["kind"], "kind"), f.String(o["user_id"], "user_id"), scenario, actions,
            f.Strings(o["outputs"], "outputs"), f.Array(o["required_reads"], "required_reads").Select((a, i) => f.Call(a, $"required_reads[{i}]")).ToList());
    }

    sealed class Fields(string file, long line)
    {
        DataFormatException Error(string field, string message) => new(file, line, $"{field}: {message}");

        public JsonObject Object(JsonNode? node, string field, string[]? keys)
        {
            if (node is not JsonObject o) throw Error(field, "expected an object");
            if (keys != null)
            {
                foreach (var (k, _) in o)
                    if (!keys.Contains(k)) throw Error(field, $"unknown key \"{k}\" (expected {string.Join(", ", keys)})");
                foreach (var k in keys)
                    if (!o.ContainsKey(k)) throw Error(field, $"missing key \"{k}\"");
            }
            return o;
        }

        public string String(JsonNode? node, string field) =>
            node is JsonValue v && v.TryGetValue(out string? s) ? s : throw Error(field, "expected a string");

        public JsonArray Array(JsonNode? node, string field) => node as JsonArray ?? throw Error(field, "expected a list");

        public List<string> Strings(JsonNode? node, string field) => Array(node, field).Select((x, i) => String(x, $"{field}[{i}]")).ToList();

        public ToolCall Call(JsonNode? node, string field)
        {
            var o = Object(node, field, ["name", "arguments"]);
            string name = String(o["name"], field + ".name");
            if (StoreTools.Find(name) is not { } tool) throw Error(field + ".name", $"unknown tool \"{name}\"");
            var arguments = Object(o["arguments"], field + ".arguments", null);
            if (StoreTools.CheckArguments(tool.Spec.Parameters, arguments) is string problem) throw Error(field + ".arguments", problem["Error: ".Length..]);
            return new ToolCall(name, (JsonObject)arguments.DeepClone());
        }
    }
}
