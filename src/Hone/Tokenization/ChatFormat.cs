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
    /// </summary>
    public const string Template =
        "{{ bos_token if bos_token is defined else '' }}" +
        "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
}
