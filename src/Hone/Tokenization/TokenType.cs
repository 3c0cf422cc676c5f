namespace Hone.Tokenization;

/// <summary>What a vocabulary entry is. Numbered as GGUF <c>tokenizer.ggml.token_type</c> numbers them (llama.cpp).</summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    /// <summary>A special token (BOS, EOS, chat markers): matched in text only when special tokens are parsed, skipped when decoding with skipSpecialTokens.</summary>
    Control = 3,
    /// <summary>An added token that is not special: always matched in text, always decoded.</summary>
    UserDefined = 4,
    Unused = 5,
    /// <summary>A byte-fallback token such as <c>&lt;0x0A&gt;</c>.</summary>
    Byte = 6,
}

/// <summary>A token matched in the text before the model runs (Hugging Face "added token"; GGUF control, unknown and
/// user-defined tokens).</summary>
/// <param name="Special">skipped by <c>Decode(skipSpecialTokens: true)</c> and matched only when special tokens are parsed</param>
/// <param name="SingleWord">matches only when not inside a word</param>
/// <param name="LeftStrip">the whitespace before a match belongs to the token</param>
/// <param name="RightStrip">the whitespace after a match belongs to the token</param>
/// <param name="Normalized">matched against the normalized text (with its normalized content) rather than the raw text</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord = false, bool LeftStrip = false,
    bool RightStrip = false, bool Normalized = false);
