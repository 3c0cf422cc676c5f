using System.Diagnostics.CodeAnalysis;
using System.Text.Json.Nodes;

namespace Hone.Evaluation;

/// <summary>
/// Ready task definitions by name, over data in a shared data folder (datasets/mmlu/..., datasets/humaneval/...):
/// $HONE_SHARED_DATA, else the first shared/data found walking up from the working directory or the program.
/// Each is the same JSON a task file would hold, so `hone eval` treats both alike.
/// </summary>
public static class BuiltinTasks
{
    public const string Summary = "built-in: mmlu:<subject> (e.g. mmlu:clinical_knowledge), humaneval — both read the shared data folder";

    /// <summary>Built-in families: name prefix → (argument after the colon, data root) → definition.</summary>
    static readonly Dictionary<string, Func<string?, string, JsonObject>> Families = new()
    {
        ["mmlu"] = Mmlu,
        ["humaneval"] = HumanEval,
    };

    public static bool TryResolve(string name, [NotNullWhen(true)] out JsonObject? spec, [NotNullWhen(true)] out string? baseDirectory) =>
        TryResolve(name, DataRoot, out spec, out baseDirectory);

    /// <param name="dataRoot">finds the shared data folder (null: none), asked only for built-in names</param>
    public static bool TryResolve(string name, Func<string?> dataRoot, [NotNullWhen(true)] out JsonObject? spec, [NotNullWhen(true)] out string? baseDirectory)
    {
        spec = null; baseDirectory = null;
        int colon = name.IndexOf(':');
        string family = colon < 0 ? name : name[..colon];
        string? argument = colon < 0 ? null : name[(colon + 1)..];
        if (!Families.TryGetValue(family, out var make)) return false;
        var root = dataRoot() ?? throw new FileNotFoundException(
            $"{name} is a built-in task over the shared data folder, and none was found: set HONE_SHARED_DATA to the folder that holds datasets/");
        spec = make(argument, root);
        baseDirectory = root;
        return true;
    }

    public static string? DataRoot()
    {
        var env = Environment.GetEnvironmentVariable("HONE_SHARED_DATA");
        if (!string.IsNullOrEmpty(env)) return Directory.Exists(Path.Combine(env, "datasets")) ? Path.GetFullPath(env) : null;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "data");
                if (Directory.Exists(Path.Combine(candidate, "datasets"))) return candidate;
            }
        return null;
    }

    /// <summary>lm-eval's MMLU task (hendrycks/test CSVs): test split scored, few-shot examples from the dev split.</summary>
    static JsonObject Mmlu(string? subject, string root)
    {
        var testDir = Path.Combine(root, "datasets", "mmlu", "test");
        string Available() => Directory.Exists(testDir)
            ? string.Join(", ", Directory.GetFiles(testDir, "*_test.csv").Select(f => Path.GetFileName(f)[..^"_test.csv".Length]).Order())
            : "none";
        if (string.IsNullOrEmpty(subject)) throw new ArgumentException($"name an MMLU subject: mmlu:<subject> (available: {Available()})");
        var test = Path.Combine(testDir, subject + "_test.csv");
        if (!File.Exists(test))
            throw new FileNotFoundException($"mmlu:{subject}: {test} not found (available subjects: {Available()})", test);
        return new JsonObject
        {
            ["version"] = TaskLoader.FormatVersion,
            ["kind"] = "multiple_choice",
            ["format"] = "mmlu",
            ["subject"] = subject.Replace('_', ' '),
            ["data"] = $"datasets/mmlu/test/{subject}_test.csv",
            ["fewshot_data"] = $"datasets/mmlu/dev/{subject}_dev.csv",
            ["num_fewshot"] = 0,
        };
    }

    /// <summary>HumanEval as lm-eval and human-eval run it: greedy pass@1, the Codex stop sequences, and the program
    /// prompt + completion + test + check(entry_point) executed by python3 (exit 0 = pass).</summary>
    static JsonObject HumanEval(string? variant, string root)
    {
        if (variant != null) throw new ArgumentException($"unknown HumanEval variant \"{variant}\": the built-in is plain `humaneval`");
        return new JsonObject
        {
            ["version"] = TaskLoader.FormatVersion,
            ["kind"] = "sampled",
            ["data"] = "datasets/humaneval/HumanEval.jsonl.gz",
            ["prompt"] = "{prompt}",
            ["n"] = 1,
            ["k"] = new JsonArray(1),
            ["sampling"] = new JsonObject { ["temperature"] = 0 },
            ["max_tokens"] = 512,
            ["stop"] = new JsonArray("\nclass", "\ndef", "\n#", "\nif", "\nprint"),
            ["checker"] = new JsonObject
            {
                ["type"] = "command",
                ["command"] = new JsonArray("python3", "check.py"),
                ["files"] = new JsonObject { ["check.py"] = "{prompt}{completion}\n{test}\ncheck({entry_point})\n" },
                ["timeout_seconds"] = 10,
            },
        };
    }
}
