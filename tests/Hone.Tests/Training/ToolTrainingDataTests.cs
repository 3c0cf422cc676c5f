using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Hone.Tests.Tokenization;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Hone.ToolCalls;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Training;

/// <summary>SFT records with tools (OpenAI messages, LLaMA-Factory's ShareGPT function calls) through a real template:
/// the targets are the assistant's calls and text, never the tool list or the tool results.</summary>
public class ToolTrainingDataTests
{
    const string QwenTemplate = "chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja";
    const string ToolResult = "Oslo: sunny, 21 degrees";

    const string OpenAiRecord = """
        {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
         "messages": [{"role": "user", "content": "Weather in Oslo?"},
                      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "Oslo: sunny, 21 degrees"},
                      {"role": "assistant", "content": "It is sunny in Oslo."}]}
        """;

    const string ShareGptRecord = """
        {"conversations": [{"from": "human", "value": "Weather in Oslo?"},
                           {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"},
                           {"from": "observation", "value": "Oslo: sunny, 21 degrees"},
                           {"from": "gpt", "value": "It is sunny in Oslo."}],
         "tools": "[{\"name\": \"get_weather\", \"description\": \"Weather in a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}]"}
        """;

    /// <summary>What Qwen2.5's template renders for the two assistant turns, end-of-turn included.</summary>
    const string ExpectedTargets =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n" + "It is sunny in Oslo.<|im_end|>\n";

    [SkippableTheory]
    [InlineData(OpenAiRecord)]
    [InlineData(ShareGptRecord)]
    public void Targets_are_exactly_the_assistant_calls_and_text(string json)
    {
        var template = ChatTemplate.Parse(File.ReadAllText(SharedData.Require(QwenTemplate)), "qwen");
        var tokenizer = SwiftTransformersVectorTests.Load("gpt2-hf");
        var record = ChatConversation.ToConversation(JsonNode.Parse(json)!, "data.jsonl", 3);
        Assert.True(record.UsesTools);
        var example = TrainingDataLoader.Conversation(tokenizer, template, record, trainOnPrompt: false, () => ToolCallFormat.Detect(template), "qwen");

        var targets = example.Ids.Where((_, i) => example.IsTarget[i]).ToArray();
        var prompt = example.Ids.Where((_, i) => !example.IsTarget[i]).ToArray();
        Assert.Equal(ExpectedTargets, tokenizer.Decode(targets));
        string promptText = tokenizer.Decode(prompt);
        Assert.Contains(ToolResult, promptText);              // the tool result is read, not learned
        Assert.Contains("Weather in a city.", promptText);    // the tool list is shown
        Assert.Contains("<tools>", promptText);
        // The target tokens form two runs, one per assistant turn.
        int runs = example.IsTarget.Select((t, i) => t && (i == 0 || !example.IsTarget[i - 1])).Count(b => b);
        Assert.Equal(2, runs);
    }

    [Fact]
    public void Sharegpt_function_calls_become_openai_messages()
    {
        var record = ChatConversation.ToConversation(JsonNode.Parse("""
            {"conversations": [{"from": "human", "value": "Two cities?"},
                               {"from": "function_call", "value": [{"name": "w", "arguments": {"c": "A"}}, {"name": "w", "arguments": "{\"c\": \"B\"}"}]},
                               {"from": "observation", "value": "a"}, {"from": "observation", "value": "b"},
                               {"from": "gpt", "value": "Done."}],
             "tools": [{"name": "w", "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}]}
            """)!, "f", 1);
        var calls = record.Messages[1]!["tool_calls"]!.AsArray();
        Assert.Equal(["call00001", "call00002"], calls.Select(c => c!["id"]!.GetValue<string>()));
        Assert.Equal(["call00001", "call00002"], record.Messages.Where(m => m!["role"]!.GetValue<string>() == "tool").Select(m => m!["tool_call_id"]!.GetValue<string>()));
        Assert.Equal("function", record.Tools![0]!["type"]!.GetValue<string>());
        Assert.Equal("w", record.Tools[0]!["function"]!["name"]!.GetValue<string>());
        Assert.Null(ChatConversation.ToConversation(JsonNode.Parse("""{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": ""}""")!, "f", 1).Tools);
    }

    [Theory]
    [InlineData("""{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{not json"}]}""", "data.jsonl:4: conversations[1].value: a function_call value must be JSON")]
    [InlineData("""{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{\"arguments\": {}}"}]}""", "data.jsonl:4: conversations[1].value.name: a call needs a \"name\" string")]
    [InlineData("""{"conversations": [{"from": "human", "value": "q"}, {"from": "observation", "value": "r"}]}""", "data.jsonl:4: conversations[1]: an observation answers a function_call")]
    [InlineData("""{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": "[oops"}""", "data.jsonl:4: tools: a JSON string of tools must be JSON")]
    [InlineData("""{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": {"id": 1}}]}""", "data.jsonl:4: messages[1].tool_calls: only an assistant message has tool_calls, as a list")]
    [InlineData("""{"messages": [{"role": "user", "content": "q"}, {"role": "tool"}]}""", "data.jsonl:4: messages[1].content: the tool message needs a \"content\" string")]
    public void Bad_records_name_file_line_and_field(string json, string message)
    {
        var error = Assert.Throws<DataFormatException>(() => ChatConversation.ToConversation(JsonNode.Parse(json)!, "data.jsonl", 4));
        Assert.StartsWith(message, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    [SkippableFact]
    public void The_loader_trains_tool_records_through_the_template_and_names_bad_ones()
    {
        var model = SharedData.Require(Model);
        var template = SharedData.Require(QwenTemplate);
        using var dir = new TempDirectory();
        var data = dir.File("tools.jsonl");
        File.WriteAllLines(data, [JsonNode.Parse(OpenAiRecord)!.ToJsonString(), JsonNode.Parse(ShareGptRecord)!.ToJsonString()]);
        using var checkpoint = Checkpoint.Open(model);
        var options = new TrainOptions { Model = model, Data = data, Template = template, Stage = TrainingStage.Sft, SeqLen = 1024, Packing = false, Seed = 1, ValSplit = 0 };
        var loaded = TrainingDataLoader.Load(checkpoint, options);
        Assert.Contains("data: 2 conversations", loaded.Description);

        var badName = JsonNode.Parse(OpenAiRecord)!;
        badName["tools"]![0]!["function"]!["name"] = "get weather";
        File.WriteAllLines(data, [JsonNode.Parse(OpenAiRecord)!.ToJsonString(), badName.ToJsonString()]);
        var error = Assert.Throws<DataFormatException>(() => TrainingDataLoader.Load(checkpoint, options));
        Assert.StartsWith($"{data}:2: tools[0].function.name: 'get weather' is not a function name", error.Message);

        // The model's own template (stories260K has none: the plain one) cannot render tool calls: said, not guessed at.
        File.WriteAllLines(data, [JsonNode.Parse(OpenAiRecord)!.ToJsonString()]);
        var refused = Assert.Throws<DataFormatException>(() => TrainingDataLoader.Load(checkpoint, options with { Template = null }));
        Assert.Contains($"{data}:1: the record uses tools, but the chat template", refused.Message);
    }

    [SkippableFact]
    public void Hone_train_runs_on_records_with_tools()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var data = dir.File("tools.jsonl");
        File.WriteAllLines(data, [JsonNode.Parse(OpenAiRecord)!.ToJsonString(), JsonNode.Parse(ShareGptRecord)!.ToJsonString()]);
        var r = HoneCli.Run("train", model, "--data", data, "--template", SharedData.Require(QwenTemplate), "--out", Path.Combine(dir.Path, "run"),
            "--method", "lora", "--max-steps", "2", "--seq-len", "256", "--packing", "true", "--batch-size", "2", "--save-every", "0", "--eval-every", "0", "--val-split", "0", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("done: 2/2 steps", r.Stdout);
    }
}
