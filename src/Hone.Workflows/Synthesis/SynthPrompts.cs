using System.Text;

namespace Hone.Synthesis;

/// <summary>How new instructions are made.</summary>
public enum SynthMode
{
    /// <summary>Show the teacher k random seed instructions and ask for a new one (Wang et al., Self-Instruct).</summary>
    SelfInstruct,
    /// <summary>Rewrite one seed instruction by an evolution operation (Xu et al., WizardLM's Evol-Instruct, in-depth and in-breadth).</summary>
    Evol,
}

/// <summary>An Evol-Instruct operation: its name and the request the teacher gets ({instruction} is the seed's).</summary>
public sealed record EvolOperation(string Name, string Request);

/// <summary>
/// The prompts of <c>hone synth instruct</c>, word for word (they are printed by <c>--help</c> and in the README). Each
/// is one user message through the teacher's chat template; the teacher's reply, trimmed and stripped of a leading
/// list number or "Request:" label and of surrounding quotes, is the new instruction. The answer is asked for as the
/// seed conversation was: its system message (if any), then the new instruction as the user's message.
/// </summary>
public static class SynthPrompts
{
    public const string SelfInstructHeader = "Here are some requests that users sent to an assistant:";
    public const string SelfInstructRequest = "Write one new request of the same kind, different from these. Reply with the request only.";

    /// <summary>The evolution operations, one row each (the first word of each row is its name for --operations).</summary>
    public static readonly IReadOnlyList<EvolOperation> Operations =
    [
        new("reword", "Rewrite this request in different words, keeping its meaning. Reply with the rewritten request only.\n\nRequest: {instruction}"),
        new("constrain", "Rewrite this request, adding one reasonable constraint or requirement to it. Reply with the rewritten request only.\n\nRequest: {instruction}"),
        new("concretize", "Rewrite this request to be more specific and concrete, replacing general words with particular ones. Reply with the rewritten request only.\n\nRequest: {instruction}"),
        new("related", "Write a new request on the same topic as this one, asking a related but different question. Reply with the new request only.\n\nRequest: {instruction}"),
    ];

    public const string JudgeSystem = "You are a strict grader of an assistant's responses.";
    public const string JudgeRequest =
        "Rubric: {rubric}\n\nRequest: {instruction}\n\nResponse: {answer}\n\nDoes the response satisfy the rubric? Reply with one word: PASS or FAIL.";

    public static EvolOperation Operation(string name) =>
        Operations.FirstOrDefault(o => o.Name == name)
        ?? throw new ArgumentException($"unknown evolution operation \"{name}\" (known: {string.Join(", ", Operations.Select(o => o.Name))})");

    public static string SelfInstruct(IReadOnlyList<string> examples)
    {
        var b = new StringBuilder(SelfInstructHeader).Append('\n');
        for (int i = 0; i < examples.Count; i++) b.Append(i + 1).Append(". ").Append(OneLine(examples[i])).Append('\n');
        return b.Append('\n').Append(SelfInstructRequest).ToString();
    }

    public static string Evol(EvolOperation operation, string instruction) => operation.Request.Replace("{instruction}", instruction, StringComparison.Ordinal);

    public static string Judge(string rubric, string instruction, string answer) =>
        JudgeRequest.Replace("{rubric}", rubric, StringComparison.Ordinal).Replace("{instruction}", instruction, StringComparison.Ordinal)
            .Replace("{answer}", answer, StringComparison.Ordinal);

    /// <summary>PASS when the judge's reply starts with the word PASS (case-insensitive, after spaces, quotes and
    /// asterisks), FAIL when it starts with FAIL, otherwise unclear (which fails).</summary>
    public static string JudgeVerdict(string reply)
    {
        var t = reply.TrimStart(' ', '\t', '\r', '\n', '"', '\'', '*', '`');
        if (t.StartsWith("PASS", StringComparison.OrdinalIgnoreCase)) return "pass";
        if (t.StartsWith("FAIL", StringComparison.OrdinalIgnoreCase)) return "fail";
        return "unclear";
    }

    /// <summary>The teacher's reply as an instruction: trimmed, a leading "Request:"/"New request:" label, list number
    /// ("4. ", "4) ", "- ") and enclosing quotes removed.</summary>
    public static string CleanInstruction(string reply)
    {
        string t = reply.Trim();
        foreach (var label in new[] { "New request:", "Rewritten request:", "Request:" })
            if (t.StartsWith(label, StringComparison.OrdinalIgnoreCase)) { t = t[label.Length..].TrimStart(); break; }
        int digits = 0;
        while (digits < t.Length && char.IsAsciiDigit(t[digits])) digits++;
        if (digits > 0 && digits < t.Length - 1 && t[digits] is '.' or ')' && t[digits + 1] == ' ') t = t[(digits + 2)..].TrimStart();
        else if (t.StartsWith("- ", StringComparison.Ordinal)) t = t[2..].TrimStart();
        if (t.Length >= 2 && t[0] == '"' && t[^1] == '"') t = t[1..^1].Trim();
        return t;
    }

    static string OneLine(string text) => string.Join(' ', text.Split((char[])['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
