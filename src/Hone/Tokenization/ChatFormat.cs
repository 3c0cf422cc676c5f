namespace Hone.Tokenization;

/// <summary>
/// The special tokens and chat template of the tokenizers Hone trains (<see cref="BpeTrainer"/>). One token,
/// <c>&lt;|end|&gt;</c>, closes documents (EOS) and turns alike, so a base model pretrained on documents already knows
/// the token that fine-tuned answers stop with.
/// </summary>
public static class ChatFormat
{
    public const string Bos = "<|bos|>";
    public const string End = "<|end|>";
    public const string System = "<|system|>";
    public const string User = "<|user|>";
    public const string Assistant = "<|assistant|>";
    public const string Pad = "<|pad|>";

    /// <summary>In id order: the trained tokenizer gives them ids 0.. before the byte alphabet.</summary>
    public static readonly IReadOnlyList<string> SpecialTokens = [Bos, End, System, User, Assistant, Pad];

    /// <summary>
    /// <c>{bos}&lt;|role|&gt;content&lt;|end|&gt;</c>… then <c>&lt;|assistant|&gt;</c> as the generation prompt. Every rendering of
    /// messages[..i] with the generation prompt is a prefix of messages[..i+1] (the SFT loader locates assistant
    /// turns that way), and an answer is exactly its content followed by <c>&lt;|end|&gt;</c>.
    /// <para>With tools, as Hermes and Qwen2.5 render them: the system turn (the first message's, if it is one) ends with
    /// the tools' function declarations as JSON lines in <c>&lt;tools&gt;</c>; an assistant turn's calls follow its text as
    /// <c>&lt;tool_call&gt;\n{"name": …, "arguments": {…}}\n&lt;/tool_call&gt;</c>, one per call (arguments given as OpenAI's JSON
    /// text are written as they are, as Qwen2.5's template does, and never encoded a second time; an object through tojson);
    /// a tool's result is a user turn holding <c>&lt;tool_response&gt;\n…\n&lt;/tool_response&gt;</c>. Conversations without tools render as
    /// <see cref="PlainTemplate"/> does.</para>
    /// </summary>
    public const string Template =
        "{{ bos_token if bos_token is defined else '' }}" +
        "{% if tools %}{{ '<|system|>' }}" +
        "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}" +
        "{{ 'You can call these tools:\\n<tools>\\n' }}{% for tool in tools %}{{ (tool['function'] if tool['function'] is defined else tool) | tojson }}{{ '\\n' }}{% endfor %}" +
        "{{ '</tools>\\nTo call one, write <tool_call>\\n{\"name\": <name>, \"arguments\": <arguments>}\\n</tool_call>' + '<|end|>' }}{% endif %}" +
        "{% for message in messages %}" +
        "{% if tools and loop.first and message['role'] == 'system' %}" +
        "{% elif message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] %}" +
        "{{ '<|assistant|>' + (message['content'] or '') }}" +
        "{% for call in message['tool_calls'] %}{% if not loop.first or message['content'] %}{{ '\\n' }}{% endif %}" +
        "{{ '<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' }}" +
        "{% if call['function']['arguments'] is string %}{{ call['function']['arguments'] }}{% else %}{{ call['function']['arguments'] | tojson }}{% endif %}" +
        "{{ '}\\n</tool_call>' }}{% endfor %}" +
        "{{ '<|end|>' }}" +
        "{% elif message['role'] == 'tool' %}{{ '<|user|><tool_response>\\n' + message['content'] + '\\n</tool_response><|end|>' }}" +
        "{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}" +
        "{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

    /// <summary>The template without tools: every message as <c>&lt;|role|&gt;content&lt;|end|&gt;</c>.</summary>
    public const string PlainTemplate =
        "{{ bos_token if bos_token is defined else '' }}" +
        "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
}
