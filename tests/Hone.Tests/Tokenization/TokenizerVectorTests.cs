using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>
/// Every reference vector in shared/data/tokenizers for which we have the vocabulary, with identical ids, and
/// decode(encode(x)) == x wherever the tokenizer is lossless. Not checkable here: ggml-vocab-qwen2 and
/// qwen2_5_multilingual (no Qwen2 vocabulary), and the swift-transformers vectors of BERT, Falcon, Gemma, Whisper, T5 and
/// DistilBERT (other vocabularies; mostly model types we do not implement).
/// </summary>
public class TokenizerVectorTests
{
    // ---- llama.cpp test-tokenizer-0 vectors (encoded without BOS, special tokens not parsed) ----

    [SkippableFact]
    public void Llama_spm_gguf_matches_every_llama_cpp_vector()
    {
        var tokenizer = TokenizerVectors.Gguf(TokenizerVectors.LlamaCpp + "ggml-vocab-llama-spm.gguf");
        CheckLlamaCpp(tokenizer, "ggml-vocab-llama-spm.gguf", lossless: true);
    }

    [SkippableFact]
    public void Gpt2_gguf_matches_every_llama_cpp_vector()
    {
        var tokenizer = TokenizerVectors.Gguf(TokenizerVectors.LlamaCpp + "ggml-vocab-gpt-2.gguf");
        CheckLlamaCpp(tokenizer, "ggml-vocab-gpt-2.gguf", lossless: true);
    }

    [SkippableFact]
    public void Llama3_files_match_every_llama_bpe_vector()
    {
        CheckLlamaCpp(TokenizerVectors.Llama3(), "ggml-vocab-llama-bpe.gguf", lossless: true);
    }

    [SkippableFact]
    public void Llama2_tokenizer_json_matches_the_llama_spm_vectors()
    {
        // The .out files were produced by Hugging Face's tokenizer of the same vocabulary.
        CheckLlamaCpp(TokenizerVectors.Llama2Hf(), "ggml-vocab-llama-spm.gguf", lossless: true);
    }

    [SkippableFact]
    public void Gpt2_tokenizer_json_and_gpt2_files_match_the_gpt2_vectors()
    {
        CheckLlamaCpp(TokenizerVectors.Gpt2Hf(), "ggml-vocab-gpt-2.gguf", lossless: true);
        CheckLlamaCpp(TokenizerVectors.Gpt2Files(), "ggml-vocab-gpt-2.gguf", lossless: true);
    }

    static void CheckLlamaCpp(Tokenizer tokenizer, string name, bool lossless)
    {
        var cases = TokenizerVectors.LlamaCppCases(name);
        Assert.Equal(46, cases.Count);
        foreach (var c in cases)
        {
            var ids = tokenizer.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: false);
            TokenizerVectors.AssertIds(c.Ids, ids, $"{name} #{c.Index} {System.Text.Json.JsonSerializer.Serialize(c.Text)}");
            if (lossless) Assert.Equal(c.Text, tokenizer.Decode(ids));
        }
    }
}
