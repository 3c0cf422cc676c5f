using System.Text.Json.Nodes;
using Hone.Tokenization;
using Hone.Tokenization.Templates;

namespace Hone.Batching;

/// <summary>Messages → prompt ids through a chat template, as <c>apply_chat_template(..., add_generation_prompt=True)</c>
/// followed by tokenization with special tokens parsed, and BOS put first when the tokenizer adds one and the
/// template did not.</summary>
public static class ChatPrompt
{
    /// <summary>The chat-client option (Microsoft.Extensions.AI's AdditionalProperties) whose <c>false</c> keeps the tools'
    /// declarations out of the prompt while the calls are still constrained and parsed — for a small model fine-tuned on
    /// its tools, whose context has no room for them (default true: the template shows them, as every served model needs).
    /// Read by Hone's chat client; set by the agent benchmark's agent.</summary>
    public const string ToolsInPromptKey = "hone_tools_in_prompt";

    public static int[] Encode(Tokenizer tokenizer, ChatTemplate template, JsonArray messages, JsonArray? tools = null)
    {
        var options = new ChatTemplateOptions { BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken, AddGenerationPrompt = true, Tools = tools };
        string prompt = template.Apply(messages, options);
        var ids = tokenizer.Encode(prompt, addSpecialTokens: false, parseSpecialTokens: true);
        if (tokenizer.AddsBos && tokenizer.BosId is int bos && (ids.Length == 0 || ids[0] != bos)) ids = [bos, .. ids];
        return ids;
    }
}
