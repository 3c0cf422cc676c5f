using System.Text;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Streaming decode: fed one id at a time it never emits part of a character, keeps SentencePiece spaces
/// between words (dropping only the very first, as a whole decode does), and adds up to the whole decode.</summary>
public class StreamingDecoderTests
{
    static List<string> Stream(Tokenizer t, int[] ids, bool skipSpecial = false)
    {
        var decoder = t.CreateStreamingDecoder(skipSpecial);
        var chunks = ids.Select(decoder.Add).ToList();
        chunks.Add(decoder.Flush());
        return chunks;
    }

    static void AssertWholeCharacters(IEnumerable<string> chunks)
    {
        foreach (var chunk in chunks)
        {
            Assert.DoesNotContain('\uFFFD', chunk);
            for (int i = 0; i < chunk.Length; i++)
            {
                if (char.IsHighSurrogate(chunk[i])) { Assert.True(i + 1 < chunk.Length && char.IsLowSurrogate(chunk[i + 1]), "split surrogate pair"); i++; }
                else Assert.False(char.IsLowSurrogate(chunk[i]), "lone low surrogate");
            }
        }
    }

    [Fact]
    public void Byte_fallback_tokens_are_held_until_their_character_is_complete()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.SentencePiece("▁ a"));
        // "谛" is E8 B0 9B: three byte tokens (ids 3 + byte); "🦙" is F0 9F A6 99.
        int[] ids = [1, t.Id("▁a"), 3 + 0xE8, 3 + 0xB0, 3 + 0x9B, t.Id("▁a"), 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99, t.Id("a")];
        Assert.Equal("<s> a谛 a🦙a", t.Decode(ids));
        var chunks = Stream(t, ids);
        Assert.Equal(["<s>", " a", "", "", "谛", " a", "", "", "", "🦙", "a", ""], chunks);
        Assert.Equal(["a", "", "", "谛", " a", "", "", "", "🦙", "a", ""], Stream(t, ids[1..]));  // first word loses its space
        Assert.Equal(["", "a", "", "", "谛", " a", "", "", "", "🦙", "a", ""], Stream(t, ids, skipSpecial: true));
    }

    [Fact]
    public void Byte_level_tokens_that_split_a_character_are_held()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.ByteLevel());
        var ids = t.Encode("é🦙!"); // one id per byte here: C3 A9 F0 9F A6 99 21
        Assert.Equal(7, ids.Length);
        Assert.Equal(["", "é", "", "", "", "🦙", "!", ""], Stream(t, ids));
    }

    [Fact]
    public void An_unfinished_character_is_flushed_as_a_replacement_character()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.SentencePiece("▁ a"));
        var decoder = t.CreateStreamingDecoder();
        Assert.Equal("a", decoder.Add(t.Id("▁a")));
        Assert.Equal("", decoder.Add(3 + 0xE8));
        Assert.Equal("", decoder.Add(3 + 0xB0));
        Assert.Equal("\uFFFD\uFFFD", decoder.Flush()); // as Decode gives it: one U+FFFD per byte of the broken run
        Assert.Equal("a\uFFFD\uFFFD", t.Decode([t.Id("▁a"), 3 + 0xE8, 3 + 0xB0]));
        Assert.Equal("a", decoder.Add(t.Id("▁a"))); // after Flush a new sequence starts
    }

    [Fact]
    public void Invalid_bytes_are_emitted_as_replacement_characters_once_known_to_be_invalid()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.SentencePiece("▁ a"));
        int[] ids = [t.Id("▁a"), 3 + 0xFF, t.Id("a")];
        Assert.Equal("a\uFFFDa", t.Decode(ids));
        Assert.Equal("a\uFFFDa", string.Concat(Stream(t, ids)));
    }

    [SkippableTheory]
    [InlineData("llama2-hf")]
    [InlineData("llama-spm.gguf")]
    [InlineData("gpt2-hf")]
    [InlineData("llama3")]
    public void Streaming_every_multilingual_input_adds_up_to_the_whole_decode(string source)
    {
        var t = SwiftTransformersVectorTests.Load(source);
        var inputs = TokenizerVectors.Json(TokenizerVectors.Swift + "multilingual/inputs.json").AsArray().Select(n => (string)n!["text"]!).ToList();
        inputs.AddRange(TokenizerVectors.LlamaCppCases("ggml-vocab-llama-spm.gguf").Select(c => c.Text));
        int split = 0;
        foreach (var text in inputs)
        {
            var ids = t.Encode(text);
            foreach (bool skip in new[] { false, true })
            {
                var chunks = Stream(t, ids, skip);
                AssertWholeCharacters(chunks);
                Assert.Equal(t.Decode(ids, skip), string.Concat(chunks));
                split += chunks.Count(c => c.Length == 0);
            }
        }
        Assert.True(split > 0, "no input had a character split across tokens");
    }
}
