using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Evaluation;

/// <summary>How a sampled answer is judged.</summary>
/// <param name="Type">exact | regex | json | command</param>
/// <param name="Normalize">exact/regex: normalization steps for the answer and the references</param>
/// <param name="Pattern">regex: with a capture group, group 1 of the first match must equal a reference; without, a match passes</param>
/// <param name="Command">command: argv (templates: record fields and {completion}); exit code 0 = pass</param>
/// <param name="Files">command: files written into the fresh working directory first (name → template)</param>
/// <param name="Stdin">command: text for its standard input (template); none = empty input</param>
/// <param name="TimeoutSeconds">command: wall-clock limit (then everything it started is killed)</param>
/// <param name="MemoryMegabytes">command: address space limit of each of its processes</param>
public sealed record CheckerSpec(string Type, IReadOnlyList<string> Normalize, string? Pattern = null, IReadOnlyList<string>? Command = null,
    IReadOnlyDictionary<string, string>? Files = null, string? Stdin = null, double TimeoutSeconds = 10,
    int MemoryMegabytes = (int)(CommandLimits.DefaultMemoryBytes >> 20))
{
    public CommandLimits Limits => new(TimeSpan.FromSeconds(TimeoutSeconds), (long)MemoryMegabytes << 20);

    public JsonObject Describe()
    {
        var o = new JsonObject { ["type"] = Type };
        if (Normalize.Count > 0) o["normalize"] = new JsonArray(Normalize.Select(n => (JsonNode)n).ToArray());
        if (Pattern != null) o["pattern"] = Pattern;
        if (Command != null)
        {
            o["command"] = new JsonArray(Command.Select(c => (JsonNode)c).ToArray());
            o["files"] = new JsonObject(Files!.Select(f => KeyValuePair.Create(f.Key, (JsonNode?)f.Value)));
            if (Stdin != null) o["stdin"] = Stdin;
            o["timeout_seconds"] = TimeoutSeconds;
            o["memory_mb"] = MemoryMegabytes;
        }
        return o;
    }
}

/// <param name="Completion">the generated text</param>
/// <param name="Record">the problem's data record (fields for templates)</param>
/// <param name="Target">the record's target value, if the task names a target field</param>
public sealed record CheckInput(string Completion, JsonObject Record, JsonNode? Target);

/// <param name="Outcome">a short label counted in the results: pass, fail, invalid_json, timeout, exit_1, ...</param>
/// <param name="Output">command checker: the start of what the command printed (to see why it failed)</param>
public sealed record CheckResult(bool Passed, string Outcome, string? Output = null);

/// <summary>The checkers of sampled tasks, by name.</summary>
public static class Checkers
{
    /// <summary>What the user allowed the command checker: the machine's network, running where no sandbox can be made.</summary>
    public sealed record Settings(bool AllowNetwork, bool AllowUnsandboxed = false)
    {
        public SandboxPolicy Sandbox => new(AllowNetwork, AllowUnsandboxed);
    }

    public static readonly IReadOnlyDictionary<string, Func<CheckerSpec, CheckInput, Settings, CheckResult>> Table =
        new Dictionary<string, Func<CheckerSpec, CheckInput, Settings, CheckResult>>
        {
            ["exact"] = (spec, input, _) => Outcome(TextScorers.Score(new ScorerSpec("exact_match", spec.Normalize), input.Completion, References(input.Target)) == 1),
            ["regex"] = (spec, input, _) => Outcome(TextScorers.Score(new ScorerSpec("regex", spec.Normalize, spec.Pattern), input.Completion, References(input.Target)) == 1),
            ["json"] = (_, input, _) => Json(input),
            ["facts"] = (_, input, _) => Facts(input),
            ["command"] = RunCommand,
        };

    public static CheckResult Check(CheckerSpec spec, CheckInput input, Settings settings) => Table[spec.Type](spec, input, settings);

    static CheckResult Outcome(bool passed) => new(passed, passed ? "pass" : "fail");

    /// <summary>A target string is one reference; an array of strings is several acceptable ones.</summary>
    public static IReadOnlyList<string> References(JsonNode? target) => target switch
    {
        null => [],
        JsonArray a => a.Select(n => TextOf(n)).ToArray(),
        _ => [TextOf(target)],
    };

    static string TextOf(JsonNode? n) => n is JsonValue v && v.TryGetValue(out string? s) ? s : n?.ToJsonString() ?? "null";

    // ---- facts ----

    /// <summary>The target is {"contains": [strings], "regex": pattern, "forbidden": [patterns]}: see <see cref="FactsOutcome"/>.</summary>
    static CheckResult Facts(CheckInput input)
    {
        if (input.Target is not JsonObject expected) throw new FormatException("the facts checker needs a target object {\"contains\": [...], \"regex\": ...}");
        string outcome = FactsOutcome(input.Completion, (expected["contains"] as JsonArray ?? []).Select(TextOf),
            expected["regex"] is JsonValue r && r.TryGetValue(out string? pattern) ? pattern : null,
            (expected["forbidden"] as JsonArray ?? []).Select(TextOf));
        return new CheckResult(outcome == "pass", outcome);
    }

    /// <summary>Strict about the facts, lenient about the wording: every string must appear in the answer exactly
    /// (case-sensitive), the pattern (if any) must match, and no forbidden pattern may match (a claim that contradicts the
    /// situation, such as "delivered" for an order still being prepared). Returns missing_fact, claim_mismatch,
    /// contradiction or pass.</summary>
    public static string FactsOutcome(string completion, IEnumerable<string> contains, string? regex, IEnumerable<string> forbidden)
    {
        static bool Matches(string text, string pattern) =>
            System.Text.RegularExpressions.Regex.IsMatch(text, pattern, System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        if (contains.Any(fact => !completion.Contains(fact, StringComparison.Ordinal))) return "missing_fact";
        if (regex != null && !Matches(completion, regex)) return "claim_mismatch";
        if (forbidden.Any(f => Matches(completion, f))) return "contradiction";
        return "pass";
    }

    // ---- json ----

    /// <summary>The answer (trimmed) and the target parse as JSON and are equal as values. A target given as a string
    /// holds JSON text; any other target is the expected value itself.</summary>
    static CheckResult Json(CheckInput input)
    {
        JsonNode? expected = input.Target;
        if (expected is JsonValue v && v.TryGetValue(out string? text)) expected = ParseOrThrow(text);
        JsonNode? actual;
        try { actual = JsonNode.Parse(input.Completion.Trim()); }
        catch (JsonException) { return new CheckResult(false, "invalid_json"); }
        return Outcome(JsonEquals(actual, expected));
    }

    static JsonNode? ParseOrThrow(string text)
    {
        try { return JsonNode.Parse(text); }
        catch (JsonException e) { throw new FormatException($"the json checker's target is not valid JSON ({e.Message}): {text}"); }
    }

    /// <summary>JSON value equality: objects as unordered key sets, arrays in order, numbers by numeric value
    /// (1 = 1.0 = 1e0), strings ordinally.</summary>
    public static bool JsonEquals(JsonNode? a, JsonNode? b)
    {
        if (a is null || b is null) return a is null && b is null;
        switch (a)
        {
            case JsonObject oa when b is JsonObject ob:
                if (oa.Count != ob.Count) return false;
                foreach (var (key, value) in oa)
                    if (!ob.TryGetPropertyValue(key, out var other) || !JsonEquals(value, other)) return false;
                return true;
            case JsonArray aa when b is JsonArray ab:
                if (aa.Count != ab.Count) return false;
                for (int i = 0; i < aa.Count; i++)
                    if (!JsonEquals(aa[i], ab[i])) return false;
                return true;
            case JsonValue va when b is JsonValue vb:
                var ka = va.GetValueKind();
                if (ka != vb.GetValueKind()) return false;
                return ka switch
                {
                    JsonValueKind.String => va.GetValue<string>() == vb.GetValue<string>(),
                    JsonValueKind.Number => NumbersEqual(va.ToJsonString(), vb.ToJsonString()),
                    _ => true, // true, false, null: equal kinds are equal values
                };
            default:
                return false;
        }
    }

    static bool NumbersEqual(string a, string b)
    {
        const NumberStyles style = NumberStyles.Float;
        if (decimal.TryParse(a, style, CultureInfo.InvariantCulture, out var da) && decimal.TryParse(b, style, CultureInfo.InvariantCulture, out var db))
            return da == db;
        return double.Parse(a, style, CultureInfo.InvariantCulture) == double.Parse(b, style, CultureInfo.InvariantCulture);
    }

    // ---- command ----

    static CheckResult RunCommand(CheckerSpec spec, CheckInput input, Settings settings)
    {
        string Lookup(string field) => field == "completion" ? input.Completion : PromptTemplate.FieldText(input.Record, field);
        var dir = Directory.CreateTempSubdirectory("hone-check-").FullName;
        try
        {
            foreach (var (name, template) in spec.Files!)
                File.WriteAllText(Path.Combine(dir, name), PromptTemplate.Render(template, Lookup));
            var argv = spec.Command!.Select(a => PromptTemplate.Render(a, Lookup)).ToArray();
            var stdin = spec.Stdin == null ? null : PromptTemplate.Render(spec.Stdin, Lookup);
            var outcome = CommandSandbox.Run(argv, dir, stdin, spec.Limits, settings.Sandbox);
            return new CheckResult(outcome.Passed, outcome.TimedOut ? "timeout" : outcome.ExitCode == 0 ? "pass" : $"exit_{outcome.ExitCode}", outcome.Output);
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
