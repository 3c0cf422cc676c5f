using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hone.Evaluation;
using Hone.Grammars;
using Microsoft.Extensions.AI;

namespace Hone.Synthesis;

/// <summary>A generated example before filtering.</summary>
/// <param name="Index">its number in the run (0-based): with the run's seed it fixes every random choice made for it</param>
/// <param name="Seed">the seed it derives from (evol: the one rewritten; self-instruct: the first example shown)</param>
public sealed record SynthCandidate(int Index, SynthSeed Seed, string Operation, string Instruction, string Answer);

/// <summary>A verifier's verdict: passed, and a short outcome label (pass, missing_fact, schema_mismatch, exit_1, …).</summary>
public sealed record VerifierResult(bool Passed, string Outcome);

/// <summary>One check every kept example must pass.</summary>
public interface ISynthVerifier
{
    /// <summary>The name in the report and the provenance (facts, regex, json_schema, command, judge; #2… when repeated).</summary>
    string Name { get; }
    Task<VerifierResult> CheckAsync(SynthCandidate candidate, CancellationToken cancel);
}

/// <summary>A verifier as given on the command line: <c>facts</c>, <c>regex:PATTERN</c>, <c>json-schema:FILE</c>,
/// <c>command:FILE</c> or <c>judge:RUBRIC</c> (<c>judge:@FILE</c> reads the rubric from a file).</summary>
public sealed record SynthVerifierSpec(string Kind, string? Argument)
{
    public static readonly IReadOnlyList<string> Kinds = ["facts", "regex", "json-schema", "command", "judge"];

    public static SynthVerifierSpec Parse(string text)
    {
        int colon = text.IndexOf(':');
        string kind = colon < 0 ? text : text[..colon];
        string? argument = colon < 0 ? null : text[(colon + 1)..];
        if (!Kinds.Contains(kind)) throw new ArgumentException($"--verify {text}: unknown verifier \"{kind}\" (known: facts, regex:PATTERN, json-schema:FILE, command:FILE, judge:RUBRIC)");
        if (kind == "facts" && argument != null) throw new ArgumentException($"--verify {text}: facts takes no argument (its target is each seed's facts/target/expected field)");
        if (kind != "facts" && string.IsNullOrEmpty(argument)) throw new ArgumentException($"--verify {kind} needs an argument: --verify {kind}:{(kind switch { "regex" => "PATTERN", "judge" => "RUBRIC", _ => "FILE" })}");
        return new SynthVerifierSpec(kind, argument);
    }
}

/// <summary>Builds verifiers from their specs; every problem (a missing file, a bad pattern or schema, a seed without a
/// target) is found here, before any generation.</summary>
public static class SynthVerifiers
{
    public static IReadOnlyList<ISynthVerifier> Create(IReadOnlyList<SynthVerifierSpec> specs, IReadOnlyList<SynthSeed> seeds, Checkers.Settings commandSettings,
        SynthChat? judge, string seedsFile)
    {
        var verifiers = new List<ISynthVerifier>();
        var counts = new Dictionary<string, int>();
        foreach (var s in specs)
        {
            string baseName = s.Kind.Replace('-', '_');
            int n = counts[baseName] = counts.GetValueOrDefault(baseName) + 1;
            string name = n == 1 ? baseName : $"{baseName}#{n}";
            verifiers.Add(s.Kind switch
            {
                "facts" => new FactsVerifier(name, seeds, seedsFile),
                "regex" => new RegexVerifier(name, s.Argument!),
                "json-schema" => new JsonSchemaVerifier(name, s.Argument!),
                "command" => new CommandVerifier(name, s.Argument!, commandSettings),
                "judge" => new JudgeVerifier(name, Rubric(s.Argument!), judge ?? throw new ArgumentException("--verify judge needs a judge model (the teacher, or --judge / --judge-endpoint)")),
                _ => throw new ArgumentException($"unknown verifier {s.Kind}"),
            });
        }
        return verifiers;
    }

    static string Rubric(string argument)
    {
        if (!argument.StartsWith('@')) return argument;
        string path = argument[1..];
        if (!File.Exists(path)) throw new FileNotFoundException($"--verify judge:@{path}: rubric file not found", path);
        return File.ReadAllText(path).Trim();
    }

    /// <summary>The facts target as the facts checker reads it: an object {"contains", "regex", "forbidden"} as it is; a
    /// string or an array of strings as the strings that must appear.</summary>
    public static JsonObject FactsTarget(JsonNode? target, string where) => target switch
    {
        JsonObject o when o.ContainsKey("contains") || o.ContainsKey("regex") || o.ContainsKey("forbidden") => o,
        JsonValue v when v.TryGetValue(out string? s) => new JsonObject { ["contains"] = new JsonArray(s) },
        JsonArray a when a.All(x => x is JsonValue xv && xv.TryGetValue(out string? _)) => new JsonObject { ["contains"] = a.DeepClone() },
        null => throw new FormatException($"{where}: --verify facts needs each seed to have a \"facts\" (or \"target\", \"expected\") field"),
        _ => throw new FormatException($"{where}: the facts target must be a string, a list of strings, or {{\"contains\": [...], \"regex\": ..., \"forbidden\": [...]}}"),
    };

    sealed class FactsVerifier : ISynthVerifier
    {
        readonly Dictionary<string, JsonObject> _targets = new(StringComparer.Ordinal);
        public string Name { get; }

        public FactsVerifier(string name, IReadOnlyList<SynthSeed> seeds, string file)
        {
            Name = name;
            foreach (var s in seeds)
            {
                var target = FactsTarget(s.Target, $"{file}:{s.Line}");
                if (target["regex"] is JsonValue r && r.TryGetValue(out string? pattern)) TextScorers.ValidatePattern(pattern, $"{file}:{s.Line}: facts regex");
                foreach (var f in target["forbidden"] as JsonArray ?? [])
                    if (f is JsonValue fv && fv.TryGetValue(out string? fp)) TextScorers.ValidatePattern(fp, $"{file}:{s.Line}: facts forbidden");
                _targets[s.Id] = target;
            }
        }

        public Task<VerifierResult> CheckAsync(SynthCandidate c, CancellationToken cancel)
        {
            var result = Checkers.Check(new CheckerSpec("facts", []), new CheckInput(c.Answer, c.Seed.Record, _targets[c.Seed.Id]), new Checkers.Settings(false));
            return Task.FromResult(new VerifierResult(result.Passed, result.Outcome));
        }
    }

    sealed class RegexVerifier : ISynthVerifier
    {
        readonly Regex _regex;
        public string Name { get; }

        public RegexVerifier(string name, string pattern)
        {
            Name = name;
            try { _regex = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)); }
            catch (ArgumentException e) { throw new ArgumentException($"--verify regex:{pattern}: bad regular expression: {e.Message}"); }
        }

        public Task<VerifierResult> CheckAsync(SynthCandidate c, CancellationToken cancel)
        {
            bool match;
            try { match = _regex.IsMatch(c.Answer); }
            catch (RegexMatchTimeoutException) { return Task.FromResult(new VerifierResult(false, "regex_timeout")); }
            return Task.FromResult(new VerifierResult(match, match ? "pass" : "no_match"));
        }
    }

    /// <summary>The answer (trimmed) must be JSON the schema allows, judged by the grammar Hone compiles the schema to
    /// for constrained decoding — the same language the teacher would be held to with a response format.</summary>
    sealed class JsonSchemaVerifier : ISynthVerifier
    {
        readonly Grammar _grammar;
        public string Name { get; }

        public JsonSchemaVerifier(string name, string path)
        {
            Name = name;
            if (!File.Exists(path)) throw new FileNotFoundException($"--verify json-schema:{path}: schema file not found", path);
            try { _grammar = Grammar.FromJsonSchemaFile(path); }
            catch (GrammarException e) { throw new FormatException($"--verify json-schema:{path}: {e.Message}"); }
        }

        public Task<VerifierResult> CheckAsync(SynthCandidate c, CancellationToken cancel)
        {
            bool ok;
            lock (_grammar) ok = _grammar.Matches(c.Answer.Trim());
            return Task.FromResult(new VerifierResult(ok, ok ? "pass" : "schema_mismatch"));
        }
    }

    /// <summary>An evaluation command checker (a JSON file as in a task's "checker": "command", "files", "stdin",
    /// "timeout_seconds", "memory_mb"; "type" may be left out), run in the sandbox. Its templates see the seed record's
    /// fields, {instruction}, {answer} and {completion} (the answer).</summary>
    sealed class CommandVerifier : ISynthVerifier
    {
        readonly CheckerSpec _spec;
        readonly Checkers.Settings _settings;
        public string Name { get; }

        public CommandVerifier(string name, string path, Checkers.Settings settings)
        {
            Name = name;
            _settings = settings;
            if (!File.Exists(path)) throw new FileNotFoundException($"--verify command:{path}: checker file not found", path);
            var o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new FormatException($"{path}: a command checker must be a JSON object");
            o["type"] ??= "command";
            _spec = SampledTask.ReadChecker(new TaskSpecReader(o, path));
            if (_spec.Type != "command") throw new FormatException($"{path}: \"type\" must be \"command\" (facts, regex and JSON schemas have their own --verify kinds)");
        }

        public Task<VerifierResult> CheckAsync(SynthCandidate c, CancellationToken cancel)
        {
            var record = (JsonObject)c.Seed.Record.DeepClone();
            record["instruction"] = c.Instruction;
            record["answer"] = c.Answer;
            var result = Checkers.Check(_spec, new CheckInput(c.Answer, record, null), _settings);
            return Task.FromResult(new VerifierResult(result.Passed, result.Outcome));
        }
    }

    /// <summary>A model grades the example against a rubric (<see cref="SynthPrompts.JudgeRequest"/>), greedily.</summary>
    sealed class JudgeVerifier(string name, string rubric, SynthChat judge) : ISynthVerifier
    {
        public string Name { get; } = name;

        public async Task<VerifierResult> CheckAsync(SynthCandidate c, CancellationToken cancel)
        {
            string reply = await judge.AskAsync(SynthPrompts.JudgeSystem, SynthPrompts.Judge(rubric, c.Instruction, c.Answer),
                new ChatOptions { Temperature = 0, MaxOutputTokens = 8, Seed = c.Index }, cancel).ConfigureAwait(false);
            string verdict = SynthPrompts.JudgeVerdict(reply);
            return new VerifierResult(verdict == "pass", verdict == "pass" ? "pass" : $"judge_{verdict}");
        }
    }
}
