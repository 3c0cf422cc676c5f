using System.Text.Json.Nodes;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;
using Hone.Tokenization.Templates;

namespace Hone.Tests.Infrastructure;

/// <summary>A tiny random Llama whose chat template renders tools Hermes-style (<c>&lt;tool_call&gt;</c> JSON
/// <c>&lt;/tool_call&gt;</c>, results in <c>&lt;tool_response&gt;</c>), with a byte-level BPE tokenizer learned from
/// conversations about orders that use two tools. Context 512 tokens (tools in the prompt take room).</summary>
public static class TinyToolModel
{
    public const int Context = 512;

    /// <summary>Hone's chat markers, the tools listed as JSON in a system turn, calls as Qwen2.5/Hermes write them.</summary>
    public const string Template = """
        {{- bos_token }}
        {%- if tools %}<|system|>You may call these tools:
        {%- for tool in tools %}
        {{ tool | tojson }}
        {%- endfor %}<|end|>
        {%- endif %}
        {%- for message in messages %}
        {%- if message.role == 'assistant' and message.tool_calls is defined %}<|assistant|>{{ message.content or '' }}
        {%- for tool_call in message.tool_calls %}
        {%- if not loop.first or message.content %}{{ '\n' }}{% endif %}<tool_call>
        {"name": "{{ tool_call.function.name }}", "arguments": {{ tool_call.function.arguments | tojson }}}
        </tool_call>
        {%- endfor %}<|end|>
        {%- elif message.role == 'tool' %}<|user|><tool_response>
        {{ message.content }}
        </tool_response><|end|>
        {%- else %}<|{{ message.role }}|>{{ message.content }}<|end|>
        {%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}<|assistant|>{% endif %}
        """;

    public static JsonObject StatusTool() => (JsonObject)JsonNode.Parse("""
        {"type": "function", "function": {"name": "get_order_status", "description": "Look up where an order is.",
         "parameters": {"type": "object", "properties": {"order": {"type": "integer", "minimum": 1, "maximum": 999}}, "required": ["order"]}}}
        """)!;

    public static JsonObject CancelTool() => (JsonObject)JsonNode.Parse("""
        {"type": "function", "function": {"name": "cancel_order", "description": "Cancel an order.",
         "parameters": {"type": "object", "properties": {"order": {"type": "integer", "minimum": 1, "maximum": 999},
                        "reason": {"enum": ["late", "wrong item", "changed mind"]}}, "required": ["order", "reason"]}}}
        """)!;

    public static JsonArray Tools() => new(StatusTool(), CancelTool());

    /// <summary>(question, order, status) of the conversations the tokenizer (and the fine-tuning test) learn from.</summary>
    public static readonly (int Order, string Status)[] Orders = [(7, "shipped on Monday"), (42, "delayed by the storm"), (19, "delivered to the porch")];

    /// <summary>A whole tool conversation: the question, the call, the tool's answer, the final answer.</summary>
    public static JsonObject Conversation(int order, string status, string callId = "call_1") => new()
    {
        ["tools"] = new JsonArray(StatusTool()),
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = $"Where is order {order}?" },
            new JsonObject
            {
                ["role"] = "assistant", ["content"] = null,
                ["tool_calls"] = new JsonArray(new JsonObject
                {
                    ["id"] = callId, ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = "get_order_status", ["arguments"] = $"{{\"order\": {order}}}" },
                }),
            },
            new JsonObject { ["role"] = "tool", ["tool_call_id"] = callId, ["content"] = $"order {order}: {status}" },
            new JsonObject { ["role"] = "assistant", ["content"] = $"Order {order} is {status}." }),
    };

    static readonly Lazy<string> Built = new(() => Build(TestFolders.DeletedAtExit(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"hone-tiny-tools-{Environment.ProcessId}")), hidden: 32, seed: 5));

    /// <summary>The random model (built once per test run).</summary>
    public static string Path => Built.Value;

    /// <summary>Writes a Hugging Face directory: the tokenizer learned from rendered tool conversations, random weights.</summary>
    public static string Build(string dir, int hidden, int seed)
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        var template = ChatTemplate.Parse(Template, "tiny-tools");
        var texts = new List<string>();
        var options = new ChatTemplateOptions { BosToken = "", EosToken = ChatFormat.End };
        for (int i = 0; i < 30; i++)
        {
            var (order, status) = Orders[i % Orders.Length];
            var c = Conversation(order + i / Orders.Length * 100, status);
            var messages = Hone.ToolCalls.ToolCallFormat.All[0].PrepareMessages(c["messages"]!.AsArray());
            texts.Add(template.Apply(messages, options with { Tools = new JsonArray(StatusTool(), CancelTool()) }));
        }
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 600, ChatTemplate: Template), dir);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir);
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = tokenizer.VocabSize, HiddenSize = hidden, IntermediateSize = hidden * 2, Layers = 2, Heads = 2, KvHeads = 1,
            HeadDim = hidden / 2, RotaryDims = hidden / 2, MaxPositions = Context, TiedEmbeddings = false,
        };
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, seed, std: 0.05f, embeddingStd: 0.1f);
        Hone.Transforms.ModelConverter.Write(w, null, dir, TensorType.F32, new List<string>());
        return dir;
    }
}
