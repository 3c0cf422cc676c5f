using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>The 512-token SentencePiece vocabulary inside the stories260K model GGUF (versions 1 and 3).</summary>
public class Stories260KTokenizerTests
{
    [SkippableTheory]
    [InlineData("models/stories260K/tinyllamas-stories-260k-f32.gguf")]
    [InlineData("models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf")]
    public void The_recorded_greedy_output_decodes_to_its_text_and_streams_the_same(string file)
    {
        var tokenizer = TokenizerVectors.Gguf(file);
        var oracle = TokenizerVectors.Json("models/stories260K/stories260K.greedy-from-bos.derived.json");
        var ids = TokenizerVectors.Ints(oracle["generated_token_ids"]);
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal((int)oracle["bos_id"]!, tokenizer.BosId);
        Assert.True(tokenizer.AddsBos);
        Assert.Equal(oracle["generated_tokens"]!.AsArray().Select(n => (string)n!).ToArray(), ids.Select(tokenizer.TokenText).ToArray());
        string text = (string)oracle["decoded_text"]!;
        Assert.Equal(text, tokenizer.Decode(ids));
        var stream = tokenizer.CreateStreamingDecoder();
        Assert.Equal(text, string.Concat(ids.Select(stream.Add)) + stream.Flush());

        // The model's own output is not always the canonical tokenization, but it round-trips through it.
        var encoded = tokenizer.Encode(text);
        Assert.Equal(1, encoded[0]);
        Assert.Equal(text, tokenizer.Decode(encoded, skipSpecialTokens: true));
        Assert.Equal(ids[..4], encoded[1..5]); // "▁Once ▁upon ▁a ▁time"
    }

    [SkippableFact]
    public void Characters_outside_the_small_vocabulary_fall_back_to_bytes()
    {
        var tokenizer = TokenizerVectors.Gguf("models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf");
        const string text = "Zoë saw 🦙 and 中文.";
        var ids = tokenizer.Encode(text, addSpecialTokens: false);
        Assert.Contains(ids, id => tokenizer.GetTokenType(id) == TokenType.Byte);
        Assert.Equal(text, tokenizer.Decode(ids));
    }
}
