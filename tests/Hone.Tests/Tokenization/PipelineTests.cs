using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Pipelines the shared files do not cover: Metaspace (newer Llama / Mistral tokenizer.json) and a Qwen2-style
/// byte-level tokenizer (NFC normalizer, Qwen2 split).</summary>
public class PipelineTests
{
    static JsonObject MetaspaceTokenizer(string scheme, bool split, params string[] merges)
    {
        var json = MiniTokenizers.SentencePiece(merges);
        json["normalizer"] = null;
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = scheme, ["split"] = split };
        json["decoder"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = scheme, ["split"] = split };
        return json;
    }

    [Fact]
    public void Metaspace_first_prefixes_only_text_at_the_start_of_the_input()
    {
        var t = MiniTokenizers.Load(MetaspaceTokenizer("first", false, "▁ h", "▁h i", "h i"));
        Assert.Equal([1, t.Id("▁hi")], t.Encode("hi"));
        Assert.Equal([1, 1, t.Id("hi")], t.Encode("<s>hi"));        // after a token: no "▁"
        Assert.Equal([1, t.Id("▁hi"), t.Id("▁hi")], t.Encode("hi hi")); // split false, merges cross nothing here
        Assert.Equal("hi hi", t.Decode(t.Encode("hi hi"), skipSpecialTokens: true));
    }

    [Fact]
    public void Metaspace_always_with_split_starts_a_piece_at_every_replacement()
    {
        // "▁ ▁" would merge spaces if pieces were not split.
        var t = MiniTokenizers.Load(MetaspaceTokenizer("always", true, "▁ ▁", "▁ h", "▁h i"));
        int space = t.Id("▁"), hi = t.Id("▁hi");
        Assert.Equal([1, hi, space, space, hi], t.Encode("hi   hi"));
        Assert.Equal([1, 1, hi], t.Encode("<s>hi")); // always: a prefix after the token too
        Assert.Equal("hi   hi", t.Decode(t.Encode("hi   hi"), skipSpecialTokens: true));
    }

    [Fact]
    public void Metaspace_never_adds_no_prefix_and_the_decoder_keeps_every_space()
    {
        var t = MiniTokenizers.Load(MetaspaceTokenizer("never", false, "▁ h", "▁h i", "h i"));
        Assert.Equal([1, t.Id("hi"), t.Id("▁hi")], t.Encode("hi hi"));
        Assert.Equal(" hi", t.Decode([t.Id("▁hi")]));
    }

    static JsonObject QwenLike(params string[] merges)
    {
        var json = MiniTokenizers.ByteLevel(merges);
        json["normalizer"] = new JsonObject { ["type"] = "NFC" };
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject
                {
                    ["type"] = "Split", ["behavior"] = "Isolated", ["invert"] = false,
                    ["pattern"] = new JsonObject { ["Regex"] = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" },
                },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false }),
        };
        return json;
    }

    [Fact]
    public void Qwen2_style_tokenizer_normalizes_to_nfc_and_splits_every_digit()
    {
        string Space = MiniTokenizers.ByteLevelChar(' ');
        var t = MiniTokenizers.Load(QwenLike($"{Space} 1", "1 2", "Ã ©"));
        // "e + combining acute" becomes "é" (C3 A9, merged "Ã©"); " 1" and "12" are never in one piece.
        Assert.Equal([t.Id("Ã©"), ' ', '1', '2'], t.Encode("e\u0301 12"));
        Assert.Equal("é 12", t.Decode(t.Encode("e\u0301 12")));
        // llama.cpp applies no normalizer: the GGUF keeps the split and drops NFC, as llama.cpp's converter does.
        var writer = new GgufWriter();
        t.WriteGgufMetadata(writer);
        string path = Path.Combine(Path.GetTempPath(), $"hone-tok-{Guid.NewGuid():N}.gguf");
        writer.Write(path);
        try
        {
            using var gguf = GgufFile.Open(path);
            Assert.Equal("qwen2", gguf.GetString("tokenizer.ggml.pre"));
            var fromGguf = Tokenizer.FromGguf(gguf);
            Assert.Equal(t.Encode("\u00E9 12"), fromGguf.Encode("\u00E9 12"));
            Assert.NotEqual(t.Encode("e\u0301"), fromGguf.Encode("e\u0301")); // the one difference
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Normalizers_llama_cpp_cannot_express_are_refused_when_writing_gguf()
    {
        var json = QwenLike();
        json["normalizer"] = new JsonObject { ["type"] = "Prepend", ["prepend"] = "x" };
        Assert.Throws<NotSupportedException>(() => MiniTokenizers.Load(json).WriteGgufMetadata(new GgufWriter()));
    }

    [Fact]
    public void Digits_and_smollm_kind_split_numbers_into_digits_before_the_gpt2_split()
    {
        var json = MiniTokenizers.ByteLevel("1 2", $"{MiniTokenizers.ByteLevelChar(' ')} 1");
        var byteLevel = json["pre_tokenizer"]!.DeepClone();
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }, byteLevel),
        };
        var t = MiniTokenizers.Load(json);
        Assert.Equal([' ', '1', '2'], t.Encode(" 12"));
        var writer = new GgufWriter();
        t.WriteGgufMetadata(writer);
        string path = Path.Combine(Path.GetTempPath(), $"hone-tok-{Guid.NewGuid():N}.gguf");
        writer.Write(path);
        try
        {
            using var gguf = GgufFile.Open(path);
            Assert.Equal("smollm", gguf.GetString("tokenizer.ggml.pre"));
            Assert.Equal([' ', '1', '2'], Tokenizer.FromGguf(gguf).Encode(" 12"));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void A_lone_surrogate_encodes_as_the_replacement_character_it_becomes_in_utf8()
    {
        foreach (var t in new[] { MiniTokenizers.Load(MiniTokenizers.SentencePiece()), MiniTokenizers.Load(MiniTokenizers.ByteLevel()) })
        {
            Assert.Equal(t.Encode("a\uFFFDb"), t.Encode("a\uD83Db"));
            Assert.Equal(t.Encode("a\uFFFD"), t.Encode("a\uDC99"));
        }
    }
}
