using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Hone.Tokenization.Templates;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Templates;

/// <summary>
/// A render is bounded: templates that would loop for hours, build gigabyte strings or recurse without end stop with a
/// TemplateException that names the limit and the line. Real templates stay far inside every limit. Each hostile case is a
/// damaged copy of a real template (Qwen2.5's, from shared/data) and, so the check also runs without shared data, a minimal
/// template of its own. The hang guard only fails a render that has not ended after minutes; nothing here times anything.
/// </summary>
public class TemplateLimitTests(ITestOutputHelper output)
{
    const string RealTemplate = "chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja";
    static TimeSpan HangGuard => Infrastructure.HangGuard.Limit; // the suite's one hang guard: generous, never a time limit

    static JsonArray Conversation(int turns, int contentLength)
    {
        var messages = new JsonArray { new JsonObject { ["role"] = "system", ["content"] = "You are helpful." } };
        var text = string.Concat(Enumerable.Repeat("All work and no play makes a dull model. ", contentLength / 41 + 1))[..contentLength];
        for (int i = 0; i < turns; i++)
        {
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = $"question {i}: {text}" });
            messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = $"answer {i}: {text}" });
        }
        return messages;
    }

    static readonly ChatTemplateOptions Options = new() { AddGenerationPrompt = true, BosToken = "<s>", EosToken = "</s>", Clock = () => new DateTime(2025, 1, 2) };

    /// <summary>Renders on a worker thread; fails (instead of hanging the suite) if the render has not ended after <see cref="HangGuard"/>.</summary>
    static TemplateException RenderFails(string source, string name, JsonArray? messages = null)
    {
        var template = ChatTemplate.Parse(source, name);
        var render = Task.Run(() => template.Apply(messages ?? Conversation(2, 20), Options));
        if (!Task.WhenAny(render, Task.Delay(HangGuard)).Result.Equals(render))
            Assert.Fail($"the render of {name} did not end within {HangGuard.TotalMinutes} minutes (the hang guard fired)");
        var error = Assert.IsAssignableFrom<TemplateException>(render.Exception?.InnerException
            ?? throw new Xunit.Sdk.XunitException($"{name} rendered ({render.Result.Length} characters) instead of failing"));
        return error;
    }

    /// <summary>The real template with <paramref name="damage"/> inserted at the start of its message loop.</summary>
    static string Damaged(string damage)
    {
        var source = File.ReadAllText(SharedData.Require(RealTemplate));
        const string loop = "{%- for message in messages %}";
        Assert.Contains(loop, source);
        return source.Replace(loop, damage + loop);
    }

    public static TheoryData<string, string, TemplateErrorKind, string> Hostile() => new()
    {
        { "nested-ranges", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", TemplateErrorKind.Limit, "steps" },
        { "huge-width", "{{ '%0999999999d' % 5 }}", TemplateErrorKind.Limit, "'%' format width would be 999,999,999 characters" },
        { "doubling", "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}", TemplateErrorKind.Limit, "'+' of strings would be" },
        { "repetition", "{{ 'ab' * 10000000000 }}", TemplateErrorKind.Limit, "str * int repetition would be" },
        { "format-spec-width", "{{ '{:>999999999}'.format('x') }}", TemplateErrorKind.Limit, "format-spec width would be" },
        { "huge-precision", "{{ '%.999999999f' % 1.5 }}", TemplateErrorKind.Limit, "precision would be" },
        { "center", "{{ 'x'.center(4000000000) }}", TemplateErrorKind.Limit, "center width would be" },
        { "width-too-big", "{{ '%99999999999999999999d' % 5 }}", TemplateErrorKind.Value, "width too big" },
        { "list-repetition", "{{ (range(100000)|list) * 100000 }}", TemplateErrorKind.Limit, "list * int repetition would hold" },
        { "macro-fan-out", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", TemplateErrorKind.Limit, "steps" },
        { "output", "{% for i in range(100000) %}{{ 'xxxxxxxxxx' * 1000 }}{% endfor %}", TemplateErrorKind.Limit, "the rendered output would be" },
        { "repr-explosion", "{% set ns = namespace(x=['0123456789']) %}{% for i in range(30) %}{% set ns.x = [ns.x, ns.x, ns.x] %}{% endfor %}{{ ns.x }}", TemplateErrorKind.Limit, "repr grows past" },
        { "deep-nesting", "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", TemplateErrorKind.Recursion, "maximum recursion depth exceeded" },
        { "touch-loop", "{% set big = 'x' * 30000000 %}{% for i in range(100000) %}{% if 'y' in big %}{% endif %}{% endfor %}", TemplateErrorKind.Limit, "characters and items" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void A_hostile_template_stops_with_an_error_that_names_the_limit(string name, string template, TemplateErrorKind kind, string message)
    {
        var error = RenderFails(template, name);
        Assert.Equal(kind, error.Kind);
        Assert.Contains(message, error.Message);
        Assert.Contains($"template '{name}', line 1", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [SkippableTheory]
    [MemberData(nameof(Hostile))]
    public void A_damaged_copy_of_a_real_template_stops_with_an_error_that_names_the_limit_and_line(string name, string damage, TemplateErrorKind kind, string message)
    {
        var source = Damaged(damage);
        var line = source[..source.IndexOf(damage, StringComparison.Ordinal)].Count(c => c == '\n') + 1;
        var error = RenderFails(source, "qwen2.5-" + name);
        Assert.Equal(kind, error.Kind);
        Assert.Contains(message, error.Message);
        Assert.Equal(line, error.Line);
        Assert.Contains($"template 'qwen2.5-{name}', line {line}", error.Message);
    }

    [SkippableFact]
    public void Every_real_template_renders_a_long_conversation_far_inside_the_limits()
    {
        var root = SharedData.Require("chat-templates");
        var sources = new List<(string Name, string Source)>();
        foreach (var file in Directory.GetFiles(Path.Combine(root, "llama.cpp"), "*.jinja")) sources.Add((Path.GetFileName(file), File.ReadAllText(file)));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "ollama", "index.json")))!.AsArray();
        for (int i = 0; i < index.Count; i++) sources.Add(($"ollama#{i}", index[i]!["template"]!.GetValue<string>()));
        // 1,000 turns of 2,000 characters each: 4 million characters, far past any context Hone runs. Templates that refuse a
        // system message (Gemma's) get the same conversation without it, and those that need tools (Hermes') get two.
        var withSystem = Conversation(1000, 2000);
        var withoutSystem = (JsonArray)withSystem.DeepClone();
        withoutSystem.RemoveAt(0);
        // Hermes' tool-use template iterates the tools unconditionally.
        var tools = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates", "real-templates.json")))!["conversations"]!["tool_call"]!["tools"]!;
        var withTools = Options with { Tools = tools.DeepClone().AsArray() };
        double worstSteps = 0, worstHandled = 0;
        int rendered = 0;
        foreach (var (name, source) in sources)
        {
            ChatTemplate template;
            try { template = ChatTemplate.Parse(source, name); }
            catch (TemplateException e) { output.WriteLine($"{name}: not supported ({e.Message})"); continue; }
            RenderBudget? spent = null;
            JsonArray? messages = null;
            string text = "";
            foreach (var (candidate, options) in new[] { (withSystem, Options), (withoutSystem, Options), (withSystem, withTools) })
            {
                try { text = template.Apply(candidate, options, out spent); messages = candidate; break; }
                catch (TemplateException e) when (e.Kind is TemplateErrorKind.Raised or TemplateErrorKind.Type) { output.WriteLine($"{name}: {e.Message}"); }
            }
            if (messages == null) continue;
            rendered++;
            long characters = messages.Sum(m => (long)m!["content"]!.GetValue<string>().Length);
            Assert.True(text.Length > characters / 2, name);
            output.WriteLine($"{name}: {spent!.Steps:N0} steps ({spent.Steps / (double)messages.Count:F0} per message), {spent.Handled:N0} handled ({spent.Handled / (double)characters:F2} per character)");
            worstSteps = Math.Max(worstSteps, spent.Steps / (double)RenderBudget.MaxSteps);
            worstHandled = Math.Max(worstHandled, spent.Handled / (double)RenderBudget.MaxHandled);
        }
        Assert.True(rendered >= 40, $"only {rendered} of {sources.Count} real templates rendered");
        output.WriteLine($"worst: {worstSteps:P2} of the steps, {worstHandled:P2} of the handling budget");
        Assert.True(worstSteps < 0.05, $"a real template used {worstSteps:P1} of the step budget on 2,001 messages");
        Assert.True(worstHandled < 0.1, $"a real template used {worstHandled:P1} of the handling budget on 4 million characters");
    }
}
