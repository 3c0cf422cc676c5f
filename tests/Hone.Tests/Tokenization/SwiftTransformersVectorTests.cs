using System.Text.Json.Nodes;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>The swift-transformers vectors (generated with Hugging Face transformers) for the vocabularies we have:
/// Llama 2 (coreml-projects/Llama-2-7b-chat-coreml, TinyLlama), GPT-2 (distilgpt2, openai-community/gpt2) and
/// Llama 3.2. Each vocabulary is checked through every loader we have it in.</summary>
public class SwiftTransformersVectorTests
{
    public static TheoryData<string> Llama2Sources => ["llama2-hf", "llama-spm.gguf", "llama-2-tiny-random.gguf"];
    public static TheoryData<string> Gpt2Sources => ["gpt2-hf", "gpt2-files", "gpt-2.gguf"];

    internal static Tokenizer Load(string source) => source switch
    {
        "llama2-hf" => TokenizerVectors.Llama2Hf(),
        "llama-spm.gguf" => TokenizerVectors.Gguf(TokenizerVectors.LlamaCpp + "ggml-vocab-llama-spm.gguf"),
        "llama-2-tiny-random.gguf" => TokenizerVectors.Gguf("models/llama-2-tiny-random/llama-2-tiny-random.gguf"),
        "gpt2-hf" => TokenizerVectors.Gpt2Hf(),
        "gpt2-files" => TokenizerVectors.Gpt2Files(),
        "gpt-2.gguf" => TokenizerVectors.Gguf(TokenizerVectors.LlamaCpp + "ggml-vocab-gpt-2.gguf"),
        "llama3" => TokenizerVectors.Llama3(),
        _ => throw new ArgumentException(source),
    };

    [SkippableTheory]
    [MemberData(nameof(Llama2Sources))]
    public void Llama2_paragraph(string source) => CheckParagraph(Load(source), "llama_encoded.json", bosText: "<s>");

    [SkippableTheory]
    [MemberData(nameof(Gpt2Sources))]
    public void Gpt2_paragraph(string source) => CheckParagraph(Load(source), "gpt2_encoded_tokens.json", bosText: null);

    [SkippableFact]
    public void Llama3_2_paragraph() => CheckParagraph(TokenizerVectors.Llama3(), "llama_3.2_encoded.json", bosText: "<|begin_of_text|>");

    static void CheckParagraph(Tokenizer tokenizer, string file, string? bosText)
    {
        var v = TokenizerVectors.Json(TokenizerVectors.Swift + file);
        string text = (string)v["text"]!;
        var expected = TokenizerVectors.Ints(v["token_ids"]);
        var ids = tokenizer.Encode(text);
        TokenizerVectors.AssertIds(expected, ids, file);
        var pieces = v["bpe_tokens"]!.AsArray().Select(n => (string)n!).ToArray();
        var withoutBos = bosText == null ? ids : ids[1..];
        Assert.Equal(pieces, withoutBos.Select(tokenizer.TokenText).ToArray());
        Assert.Equal((string)v["decoded_text"]!, tokenizer.Decode(ids));
        Assert.Equal(text, tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    // ---- tokenizer_tests.json: short strings; "decoded_with_special" went through transformers' clean-up where the
    // model's config asks for it (distilgpt2 and Llama 3.2: clean_up_tokenization_spaces true; Llama 2: false) ----

    [SkippableTheory]
    [MemberData(nameof(Gpt2Sources))]
    public void Distilgpt2_short_strings(string source) => CheckShortStrings(Load(source), "distilgpt2", cleanUp: true);

    [SkippableTheory]
    [MemberData(nameof(Llama2Sources))]
    public void Llama2_short_strings(string source) => CheckShortStrings(Load(source), "coreml-projects/Llama-2-7b-chat-coreml", cleanUp: false);

    [SkippableFact]
    public void Llama3_2_short_strings() => CheckShortStrings(TokenizerVectors.Llama3(), "pcuenq/Llama-3.2-1B-Instruct-tokenizer", cleanUp: true);

    static void CheckShortStrings(Tokenizer tokenizer, string model, bool cleanUp)
    {
        var cases = TokenizerVectors.Json(TokenizerVectors.Swift + "tokenizer_tests.json")[model]!.AsArray();
        Assert.Equal(18, cases.Count);
        foreach (var c in cases)
        {
            string input = (string)c!["input"]!;
            var ids = tokenizer.Encode(input);
            TokenizerVectors.AssertIds(TokenizerVectors.Ints(c["encoded"]!["input_ids"]), ids, $"{model} {input}");
            Assert.Equal((string)c["decoded_with_special"]!, tokenizer.Decode(ids, cleanUpTokenizationSpaces: cleanUp));
            Assert.Equal((string)c["decoded_without_special"]!, tokenizer.Decode(ids, skipSpecialTokens: true, cleanUpTokenizationSpaces: cleanUp));
            Assert.Equal(input, tokenizer.Decode(ids, skipSpecialTokens: true)); // lossless without the clean-up
        }
    }

    // ---- multilingual: 83 inputs (scripts, emoji, code, whitespace) for GPT-2 and TinyLlama (Llama 2 vocabulary) ----

    [SkippableTheory]
    [MemberData(nameof(Gpt2Sources))]
    public void Gpt2_multilingual(string source) => CheckMultilingual(Load(source), "gpt2_multilingual.json");

    [SkippableTheory]
    [MemberData(nameof(Llama2Sources))]
    public void TinyLlama_multilingual(string source) => CheckMultilingual(Load(source), "tinyllama_multilingual.json");

    static void CheckMultilingual(Tokenizer tokenizer, string file)
    {
        var inputs = TokenizerVectors.Json(TokenizerVectors.Swift + "multilingual/inputs.json").AsArray();
        var entries = TokenizerVectors.Json(TokenizerVectors.Swift + "multilingual/" + file)["entries"]!.AsArray();
        Assert.Equal(83, inputs.Count);
        Assert.Equal(inputs.Count, entries.Count);
        for (int i = 0; i < inputs.Count; i++)
        {
            var e = entries[i]!;
            Assert.Equal((string)inputs[i]!["id"]!, (string)e["id"]!);
            string text = (string)inputs[i]!["text"]!;
            var ids = tokenizer.Encode(text);
            TokenizerVectors.AssertIds(TokenizerVectors.Ints(e["input_ids"]), ids, $"{file} {e["id"]}");
            Assert.Equal(e["tokens"]!.AsArray().Select(n => (string)n!).ToArray(), ids.Select(tokenizer.TokenText).ToArray());
            Assert.Equal((string)e["decoded_with_special"]!, tokenizer.Decode(ids));
            Assert.Equal((string)e["decoded_skip_special"]!, tokenizer.Decode(ids, skipSpecialTokens: true));
            Assert.Equal(text, tokenizer.Decode(ids, skipSpecialTokens: true));
        }
    }
}
