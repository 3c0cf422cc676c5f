using Hone.Formats;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Tokenizers written as GGUF metadata and read back with llama.cpp's semantics encode every vector the same.</summary>
public class GgufConversionTests
{
    static Tokenizer RoundTrip(Tokenizer source, out GgufFile reopened)
    {
        var writer = new GgufWriter();
        writer.Set("general.architecture", GgufValue.Of("llama"));
        source.WriteGgufMetadata(writer);
        string path = Path.Combine(Path.GetTempPath(), $"hone-tok-{Guid.NewGuid():N}.gguf");
        writer.Write(path);
        reopened = GgufFile.Open(path);
        File.Delete(path); // the mapping stays valid on Linux; the test owns no leftovers
        return Tokenizer.FromGguf(reopened);
    }

    [SkippableFact]
    public void Llama2_tokenizer_json_as_gguf_uses_scores_that_reproduce_the_merge_order()
    {
        var hf = TokenizerVectors.Llama2Hf();
        var converted = RoundTrip(hf, out var gguf);
        using (gguf)
        {
            Assert.Equal("llama", gguf.GetString("tokenizer.ggml.model"));
            Assert.Equal(hf.VocabSize, converted.VocabSize);
            Assert.Equal((hf.BosId, hf.EosId, hf.UnknownId, hf.AddsBos), (converted.BosId, converted.EosId, converted.UnknownId, converted.AddsBos));
            Assert.Equal(TokenType.Byte, converted.GetTokenType(hf.TokenToId("<0x0A>")!.Value));
            Assert.Equal(TokenType.Control, converted.GetTokenType(1));
            Assert.Equal(TokenType.Unknown, converted.GetTokenType(0));
            AssertSameOnAllVectors(hf, converted, llama: true);
        }
    }

    [SkippableFact]
    public void Gpt2_tokenizer_json_as_gguf()
    {
        var hf = TokenizerVectors.Gpt2Hf();
        var converted = RoundTrip(hf, out var gguf);
        using (gguf)
        {
            Assert.Equal("gpt2", gguf.GetString("tokenizer.ggml.model"));
            Assert.Equal("gpt-2", gguf.GetString("tokenizer.ggml.pre"));
            Assert.Equal(50000, gguf.Get("tokenizer.ggml.merges")!.AsArray(gguf.Path, "merges").Items.Count);
            AssertSameOnAllVectors(hf, converted, llama: false);
        }
    }

    [SkippableFact]
    public void Llama3_files_as_gguf_keep_bos_and_ignore_merges()
    {
        var source = TokenizerVectors.Llama3();
        var converted = RoundTrip(source, out var gguf);
        using (gguf)
        {
            Assert.Equal("llama-bpe", gguf.GetString("tokenizer.ggml.pre"));
            Assert.True(converted.AddsBos);
            Assert.Equal(128000, converted.BosId);
            Assert.Contains(128009, converted.EndOfTurnIds);
            foreach (var c in TokenizerVectors.LlamaCppCases("ggml-vocab-llama-bpe.gguf"))
                TokenizerVectors.AssertIds(c.Ids, converted.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: false), $"#{c.Index}");
            TokenizerVectors.AssertIds(source.Encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"),
                converted.Encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"), "chat markup");
        }
    }

    [SkippableFact]
    public void A_gguf_vocabulary_written_back_is_unchanged()
    {
        using var original = GgufFile.Open(Infrastructure.SharedData.Require(TokenizerVectors.LlamaCpp + "ggml-vocab-llama-spm.gguf"));
        var tokenizer = Tokenizer.FromGguf(original);
        var converted = RoundTrip(tokenizer, out var gguf);
        using (gguf)
        {
            foreach (var key in new[] { "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type" })
                Assert.Equal(original.Get(key)!.AsArray(original.Path, key).Items, gguf.Get(key)!.AsArray(gguf.Path, key).Items);
            AssertSameOnAllVectors(tokenizer, converted, llama: true);
        }
    }

    static void AssertSameOnAllVectors(Tokenizer expected, Tokenizer actual, bool llama)
    {
        var texts = TokenizerVectors.LlamaCppCases(llama ? "ggml-vocab-llama-spm.gguf" : "ggml-vocab-gpt-2.gguf").Select(c => c.Text).ToList();
        texts.AddRange(TokenizerVectors.Json(TokenizerVectors.Swift + "multilingual/inputs.json").AsArray().Select(n => (string)n!["text"]!));
        texts.Add((string)TokenizerVectors.Json(TokenizerVectors.Swift + "llama_encoded.json")["text"]!);
        foreach (var text in texts)
        {
            var ids = expected.Encode(text);
            TokenizerVectors.AssertIds(ids, actual.Encode(text), System.Text.Json.JsonSerializer.Serialize(text));
            Assert.Equal(expected.Decode(ids), actual.Decode(ids));
        }
    }
}
