using System.Text.Json.Nodes;
using Hone.Tokenization;
using Hone.Tokenization.Templates;

namespace Hone.Batching;

/// <summary>Messages → prompt ids through a chat template, as <c>apply_chat_template(..., add_generation_prompt=True)</c>
/// followed by tokenization with special tokens parsed, and BOS put first when the tokenizer adds one and the
/// template did not.</summary>
public static class ChatPrompt
{
    public static int[] Encode(Tokenizer tokenizer, ChatTemplate template, JsonArray messages, JsonArray? tools = null)
    {
        var options = new ChatTemplateOptions { BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken, AddGenerationPrompt = true, Tools = tools };
        string prompt = template.Apply(messages, options);
        var ids = tokenizer.Encode(prompt, addSpecialTokens: false, parseSpecialTokens: true);
        if (tokenizer.AddsBos && tokenizer.BosId is int bos && (ids.Length == 0 || ids[0] != bos)) ids = [bos, .. ids];
        return ids;
    }
}
