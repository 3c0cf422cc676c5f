using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Hone.Tokenization.Templates;
using Xunit;

namespace Hone.Tests.Templates;

/// <summary>
/// Byte-identical agreement with Jinja2 as Hugging Face configures it. The expected outputs were produced by
/// tools/reference/render_chat_templates.py; the real templates themselves stay in shared/data (the test skips without it).
/// </summary>
public class ChatTemplateFixtureTests
{
    static readonly string FixtureFolder = Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates");
    static readonly Lazy<JsonObject> RealFixture = new(() => Load("real-templates.json"));
    static readonly Lazy<JsonObject> SnippetFixture = new(() => Load("jinja-snippets.json"));

    static JsonObject Load(string file) => JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureFolder, file)))!.AsObject();

    static DateTime FixtureNow(JsonObject fixture) => DateTime.Parse(fixture["now"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);

    public static TheoryData<string> TemplateKeys()
    {
        var keys = new TheoryData<string>();
        foreach (var key in Load("real-templates.json")["cases"]!.AsArray().Select(c => c!["template"]!.GetValue<string>()).Distinct()) keys.Add(key);
        return keys;
    }

    public static TheoryData<string> SnippetIds()
    {
        var ids = new TheoryData<string>();
        foreach (var c in Load("jinja-snippets.json")["cases"]!.AsArray()) ids.Add(c!["id"]!.GetValue<string>());
        return ids;
    }

    static string ReadTemplate(string key)
    {
        var hash = key.IndexOf('#');
        if (hash < 0) return File.ReadAllText(SharedData.Require(Path.Combine("chat-templates", key)));
        var index = JsonNode.Parse(File.ReadAllText(SharedData.Require(Path.Combine("chat-templates", key[..hash]))))!.AsArray();
        return index[int.Parse(key[(hash + 1)..])]!["template"]!.GetValue<string>();
    }

    [SkippableTheory]
    [MemberData(nameof(TemplateKeys))]
    public void Real_template_renders_every_conversation_like_hugging_face(string key)
    {
        var source = ReadTemplate(key);
        var fixture = RealFixture.Value;
        var cases = fixture["cases"]!.AsArray().Where(c => c!["template"]!.GetValue<string>() == key).ToList();
        Assert.Equal(cases[0]!["template_sha256"]!.GetValue<string>(), Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(source))));
        var template = ChatTemplate.Parse(source, key);
        var now = FixtureNow(fixture);
        var failures = new List<string>();
        foreach (var expected in cases)
        {
            var conversation = fixture["conversations"]![expected!["conversation"]!.GetValue<string>()]!;
            var extra = conversation["extra"]?.AsObject().ToDictionary(p => p.Key, p => (object?)p.Value?.DeepClone());
            var options = new ChatTemplateOptions
            {
                AddGenerationPrompt = expected["add_generation_prompt"]!.GetValue<bool>(),
                BosToken = fixture["bos_token"]!.GetValue<string>(),
                EosToken = fixture["eos_token"]!.GetValue<string>(),
                Tools = conversation["tools"]?.DeepClone().AsArray(),
                Extra = extra,
                Clock = () => now,
            };
            var label = $"{expected["conversation"]} add_generation_prompt={expected["add_generation_prompt"]}";
            var failure = Check(expected, () => template.Apply(conversation["messages"]!.DeepClone().AsArray(), options));
            if (failure != null) failures.Add($"{label}: {failure}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} cases differ from Jinja:\n" + string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(SnippetIds))]
    public void Snippet_renders_like_jinja(string id)
    {
        var fixture = SnippetFixture.Value;
        var expected = fixture["cases"]!.AsArray().Single(c => c!["id"]!.GetValue<string>() == id)!;
        var variables = fixture["variables"]!.AsObject().ToDictionary(p => p.Key, p => (object?)p.Value?.DeepClone());
        var now = FixtureNow(fixture);
        var failure = Check(expected, () => ChatTemplate.Parse(expected["template"]!.GetValue<string>(), id).Render(variables, () => now));
        Assert.True(failure == null, failure);
    }

    /// <summary>Null when the render matches the fixture (same text, or the same Python exception class and message).</summary>
    static string? Check(JsonNode expected, Func<string> render)
    {
        string? output = null;
        TemplateException? error = null;
        try { output = render(); }
        catch (TemplateException e) { error = e; }
        if (expected["output"] is { } text)
        {
            if (error != null) return $"expected output {Show(text.GetValue<string>())}, got {error.PythonExceptionName}: {error.Message}";
            return output == text.GetValue<string>() ? null : $"expected {Show(text.GetValue<string>())}\n     got {Show(output!)}";
        }
        var type = expected["error_type"]!.GetValue<string>();
        var message = expected["error"]!.GetValue<string>();
        if (error == null) return $"expected {type}: {message}, got output {Show(output!)}";
        return error.PythonExceptionName == type && error.Reason == message ? null : $"expected {type}: {message}, got {error.PythonExceptionName}: {error.Message}";
    }

    static string Show(string text) => System.Text.Json.JsonSerializer.Serialize(text.Length > 600 ? text[..600] + "..." : text);
}
