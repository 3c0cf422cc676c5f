using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Hone.ToolCalls;
using Hone.Tokenization.Templates;
using Xunit;

namespace Hone.Tests.ToolCalls;

/// <summary>Tool calls rendered by the real templates (shared data) and parsed back, whole and streamed.</summary>
public class ToolCallFormatTests
{
    const string Hermes = "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", Qwen = "Qwen-Qwen2.5-7B-Instruct.jinja",
        Llama31 = "meta-llama-Llama-3.1-8B-Instruct.jinja", Llama32 = "meta-llama-Llama-3.2-3B-Instruct.jinja",
        Mistral = "mistralai-Mistral-Nemo-Instruct-2407.jinja";

    static string TemplatePath(string file) => SharedData.Require(Path.Combine("chat-templates", "llama.cpp", file));

    /// <summary>The text after which each template's assistant turn ends (the end-of-turn token the model generates).</summary>
    static string EndOfTurn(string file) => file switch
    {
        Hermes or Qwen => "<|im_end|>",
        Llama31 or Llama32 => "<|eot_id|>",
        _ => "</s>",
    };

    static readonly JsonArray Tools = JsonNode.Parse("""
        [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                         "days": {"type": "integer", "description": "Days"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "search", "description": "Search the web.",
          "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "Query"},
                         "filters": {"type": "object", "description": "Filters"}}, "required": ["query"]}}}]
        """)!.AsArray();

    /// <summary>OpenAI-shaped calls: arguments as JSON strings, ids as OpenAI makes them (not what Mistral accepts).</summary>
    static JsonArray OpenAiCalls(int count) => new(new[]
    {
        new JsonObject { ["id"] = "call_a1B2c3D4e5F6g7H8i9J0k1L2", ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = """{"city": "São Paulo", "days": 3}""" } },
        new JsonObject { ["id"] = "call_Z9y8X7w6V5u4T3s2R1q0P9o8", ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = "search", ["arguments"] = """{"query": "tides \"Brest\"\n", "filters": {"fresh": true, "n": [1, 2.5]}}""" } },
    }.Take(count).Select(n => (JsonNode?)n).ToArray());

    /// <summary>No system message: Mistral's template puts it into the last user message only, so a conversation with
    /// one renders differently once an answer follows (the prompt would not be a prefix of the whole).</summary>
    static JsonArray Conversation(int calls, string? content) => new(
        new JsonObject { ["role"] = "user", ["content"] = "Weather and tides?" },
        new JsonObject { ["role"] = "assistant", ["content"] = content, ["tool_calls"] = OpenAiCalls(calls) });

    /// <summary>The assistant turn's text as the model generates it: the full rendering after the generation prompt, up to the end-of-turn.</summary>
    static (string Segment, ToolCallFormat Format) RenderAssistantTurn(string file, JsonArray conversation)
    {
        var template = ChatTemplate.Parse(File.ReadAllText(TemplatePath(file)), file);
        var format = ToolCallFormat.Detect(template);
        Assert.NotNull(format);
        var messages = format!.PrepareMessages(conversation);
        var options = new ChatTemplateOptions { Tools = (JsonArray)Tools.DeepClone(), BosToken = "<s>", EosToken = "</s>", Clock = () => new DateTime(2024, 9, 5) };
        string prompt = template.Apply(new JsonArray(messages.Take(messages.Count - 1).Select(m => m!.DeepClone()).ToArray()), options with { AddGenerationPrompt = true });
        string full = template.Apply(messages, options);
        Assert.StartsWith(prompt, full);
        string turn = full[prompt.Length..];
        int end = turn.LastIndexOf(EndOfTurn(file), StringComparison.Ordinal);
        Assert.True(end >= 0, $"no {EndOfTurn(file)} in {turn}");
        return (turn[..end], format);
    }

    [SkippableTheory]
    [InlineData(Hermes, "hermes")]
    [InlineData(Qwen, "hermes")]
    [InlineData(Llama31, "llama3-json")]
    [InlineData(Llama32, "llama3-json")]
    [InlineData(Mistral, "mistral")]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", null)]
    [InlineData("google-gemma-2-2b-it.jinja", null)]
    [InlineData("microsoft-Phi-3.5-mini-instruct.jinja", null)]
    public void Detects_the_format_from_what_the_template_renders(string file, string? expected)
    {
        Assert.Equal(expected, ToolCallFormat.Detect(File.ReadAllText(TemplatePath(file)))?.Name);
    }

    [SkippableTheory]
    [InlineData(Hermes, 1)]
    [InlineData(Hermes, 2)]
    [InlineData(Qwen, 1)]
    [InlineData(Qwen, 2)]
    [InlineData(Llama31, 1)]
    [InlineData(Llama32, 1)]
    [InlineData(Mistral, 1)]
    [InlineData(Mistral, 2)]
    public void Calls_rendered_by_the_template_parse_back(string file, int count)
    {
        var (segment, format) = RenderAssistantTurn(file, Conversation(count, null));
        var parsed = format.Parse(segment, new Random(1));
        Assert.Null(parsed.Content);
        var expected = OpenAiCalls(count);
        Assert.Equal(count, parsed.Calls.Count);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(expected[i]!["function"]!["name"]!.GetValue<string>(), parsed.Calls[i].Name);
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected[i]!["function"]!["arguments"]!.GetValue<string>()), JsonNode.Parse(parsed.Calls[i].Arguments)),
                $"{parsed.Calls[i].Arguments} differs from {expected[i]!["function"]!["arguments"]}");
            if (format.Name == "mistral")
            {
                // The template carries ids: the parsed id is the one the template rendered (OpenAI's id mapped to 9 characters).
                var rendered = format.PrepareMessages(Conversation(count, null))[1]!["tool_calls"]![i]!["id"]!.GetValue<string>();
                Assert.Equal(rendered, parsed.Calls[i].Id);
                Assert.True(ToolCallIds.IsNineAlphanumerics(rendered));
            }
            else Assert.Matches("^call_[A-Za-z0-9]{24}$", parsed.Calls[i].Id);
        }
        Assert.Equal(segment, format.WriteCalls(parsed.Calls)); // the format writes what the template writes
        AssertStreamingMatches(format, segment);
    }

    [SkippableFact]
    public void Qwen_content_before_calls_is_content()
    {
        var (segment, format) = RenderAssistantTurn(Qwen, Conversation(2, "Checking both."));
        var parsed = format.Parse(segment);
        Assert.Equal("Checking both.", parsed.Content);
        Assert.Equal(["get_weather", "search"], parsed.Calls.Select(c => c.Name));
        AssertStreamingMatches(format, segment);
    }

    [SkippableFact]
    public void Tool_results_render_through_every_template_with_their_ids()
    {
        foreach (var file in new[] { Hermes, Qwen, Llama31, Llama32, Mistral })
        {
            var template = ChatTemplate.Parse(File.ReadAllText(TemplatePath(file)), file);
            var format = ToolCallFormat.Detect(template)!;
            int count = format.SupportsParallelCalls ? 2 : 1;
            var conversation = Conversation(count, null);
            foreach (var call in OpenAiCalls(count))
                conversation.Add((JsonNode)new JsonObject { ["role"] = "tool", ["tool_call_id"] = call!["id"]!.GetValue<string>(), ["content"] = "result of " + call["function"]!["name"] });
            var messages = format.PrepareMessages(conversation);
            string text = template.Apply(messages, new ChatTemplateOptions { Tools = (JsonArray)Tools.DeepClone(), BosToken = "<s>", EosToken = "</s>", AddGenerationPrompt = true });
            if (count == 2) Assert.Contains("result of search", text);
            Assert.Contains("result of get_weather", text);
            if (format.Name == "mistral")
                Assert.Contains($"\"call_id\": \"{messages[1]!["tool_calls"]![0]!["id"]}\"", text);
        }
    }

    public static TheoryData<string, string> Texts() => new()
    {
        { "hermes", "" },
        { "hermes", "   " },
        { "hermes", "Just text, no call." },
        { "hermes", "Text ending in a partial opener <tool_ca" },
        { "hermes", "Before\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"</tool_call> inside\"}}\n</tool_call>\nAfter" },
        { "hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"arguments\": {\"x\": [1, {\"y\": null}]}, \"name\": \"g\"}\n</tool_call>\n" },
        { "hermes", "Bad \n<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call> then text" },
        { "hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>" },
        { "hermes", "<tool_call>{\"name\":\"f\",\"arguments\":\"{\\\"q\\\": 2}\"}</tool_call>" },
        { "hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}" },
        { "hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_" },
        { "hermes", "a<tool_call>b<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>c  \n " },
        { "mistral", "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": \"x\"}, \"id\": \"abcdefghi\"}, {\"name\": \"g\", \"arguments\": {}, \"id\": \"bad\"}]" },
        { "mistral", "Let me look.[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]" },
        { "mistral", "[TOOL_CALLS] not a list" },
        { "mistral", "[TOOL_CALLS][]" },
        { "mistral", "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": [1, 2" },
        { "llama3-json", "{\"name\": \"f\", \"parameters\": {\"a\": {\"b\": [true, false]}}}" },
        { "llama3-json", "  {\"name\": \"f\", \"parameters\": {}}  \n" },
        { "llama3-json", "{\"name\": \"f\", \"parameters\": {}} and more" },
        { "llama3-json", "{\"name\": \"f\"}" },
        { "llama3-json", "{\"a\": 1}" },
        { "llama3-json", "Hello {\"name\": \"f\", \"parameters\": {}}" },
        { "llama3-json", "{\"name\": \"f\", \"parameters\": {\"a\": " },
        { "llama3-json", "" },
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void Streaming_at_every_split_equals_parsing_the_whole(string formatName, string text)
    {
        AssertStreamingMatches(ToolCallFormat.All.Single(f => f.Name == formatName), text);
    }

    [Fact]
    public void Parses_what_the_text_holds()
    {
        var hermes = ToolCallFormat.All.Single(f => f.Name == "hermes");
        var turn = hermes.Parse("Before\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"</tool_call> inside\"}}\n</tool_call>\nAfter");
        Assert.Equal("BeforeAfter", turn.Content);
        Assert.Equal("""{"a": "</tool_call> inside"}""", Assert.Single(turn.Calls).Arguments);

        var bad = hermes.Parse("Bad \n<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call> then text");
        Assert.Empty(bad.Calls);
        Assert.Equal("Bad \n<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call> then text", bad.Content);

        var stringArguments = hermes.Parse("<tool_call>{\"name\":\"f\",\"arguments\":\"{\\\"q\\\": 2}\"}</tool_call>");
        Assert.Equal("""{"q": 2}""", Assert.Single(stringArguments.Calls).Arguments);
        Assert.Null(stringArguments.Content);

        Assert.Equal("Just text", hermes.Parse("Just text").Content);
        Assert.Equal("", hermes.Parse("").Content);

        var mistral = ToolCallFormat.All.Single(f => f.Name == "mistral");
        var calls = mistral.Parse("[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": \"x\"}, \"id\": \"abcdefghi\"}, {\"name\": \"g\", \"arguments\": {}, \"id\": \"bad\"}]").Calls;
        Assert.Equal("abcdefghi", calls[0].Id);
        Assert.True(ToolCallIds.IsNineAlphanumerics(calls[1].Id));
        Assert.NotEqual("bad", calls[1].Id);
        Assert.Equal("[TOOL_CALLS][]", mistral.Parse("[TOOL_CALLS][]").Content);

        var llama = ToolCallFormat.All.Single(f => f.Name == "llama3-json");
        Assert.Equal("f", Assert.Single(llama.Parse("  {\"name\": \"f\", \"parameters\": {}}  \n").Calls).Name);
        Assert.Equal("{\"name\": \"f\"}", llama.Parse("{\"name\": \"f\"}").Content);
        Assert.Empty(llama.Parse("{\"name\": \"f\", \"parameters\": {}} and more").Calls);
    }

    [Fact]
    public void Streaming_holds_back_only_what_could_start_a_call()
    {
        var hermes = ToolCallFormat.All.Single(f => f.Name == "hermes");
        var parser = hermes.CreateStreamParser(new Random(3));
        Assert.Equal("Hello", string.Concat(parser.Feed("Hello <tool").Select(d => d.Content)));
        Assert.Empty(parser.Feed("_call>\n{\"name\": \"f\", \"arguments\": {\"a\"")); // inside the call: nothing yet
        var call = parser.Feed(": 1}}\n</tool_call>");
        Assert.Equal(new ToolCallDelta(0, call[0].Call!.Id, "f", ""), call[0].Call);
        Assert.Equal(new ToolCallDelta(0, null, null, "{\"a\": 1}"), call[1].Call);
        Assert.Empty(parser.Finish());
    }

    static void AssertStreamingMatches(ToolCallFormat format, string text)
    {
        var whole = format.Parse(text, new Random(7));
        for (int split = 0; split <= text.Length; split++)
            AssertSame(whole, Stream(format, [text[..split], text[split..]]), $"split at {split}");
        AssertSame(whole, Stream(format, text.Select(c => c.ToString()).ToList()), "one character at a time");
        var random = new Random(11);
        for (int trial = 0; trial < 20; trial++)
        {
            var pieces = new List<string>();
            for (int at = 0; at < text.Length;)
            {
                int length = Math.Min(random.Next(1, 8), text.Length - at);
                pieces.Add(text.Substring(at, length));
                at += length;
            }
            AssertSame(whole, Stream(format, pieces), $"random pieces {trial}");
        }
    }

    static ParsedTurn Stream(ToolCallFormat format, IReadOnlyList<string> pieces)
    {
        var parser = format.CreateStreamParser(new Random(7));
        var deltas = pieces.SelectMany(parser.Feed).ToList();
        deltas.AddRange(parser.Finish());
        return ToolCallFormat.Collect(deltas);
    }

    static void AssertSame(ParsedTurn expected, ParsedTurn actual, string label)
    {
        Assert.True(expected.Content == actual.Content, $"{label}: content {actual.Content ?? "null"} instead of {expected.Content ?? "null"}");
        Assert.True(expected.Calls.SequenceEqual(actual.Calls), $"{label}: calls {string.Join(", ", actual.Calls)} instead of {string.Join(", ", expected.Calls)}");
    }
}
