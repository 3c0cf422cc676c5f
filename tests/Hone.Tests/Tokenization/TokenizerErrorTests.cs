using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>What we do not implement is refused with a message naming it, never approximated.</summary>
public class TokenizerErrorTests
{
    static ModelFormatException Refused(JsonObject json) => Assert.Throws<ModelFormatException>(() => MiniTokenizers.Load(json));

    [Fact]
    public void Unknown_model_type_is_named()
    {
        var json = MiniTokenizers.SentencePiece();
        json["model"]!["type"] = "Unigram";
        var e = Refused(json);
        Assert.Equal("model.type", e.Item);
        Assert.Contains("'Unigram'", e.Message);
    }

    [Fact]
    public void Unknown_pre_tokenizer_is_named_with_its_path()
    {
        var json = MiniTokenizers.ByteLevel();
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Whitespace" }),
        };
        var e = Refused(json);
        Assert.Equal("pre_tokenizer.pretokenizers[0]", e.Item);
        Assert.Contains("'Whitespace'", e.Message);
    }

    [Fact]
    public void Unknown_split_regex_is_refused_with_the_regex()
    {
        var json = MiniTokenizers.ByteLevel();
        const string regex = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+";
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = "Isolated", ["invert"] = false },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false }),
        };
        var e = Refused(json);
        Assert.Equal("pre_tokenizer.pretokenizers[0].pattern.Regex", e.Item);
        Assert.Contains(regex, e.Message);
    }

    [Fact]
    public void Split_behaviors_other_than_isolated_are_refused()
    {
        var json = MiniTokenizers.ByteLevel();
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = SplitPatternsRegex.Gpt2 }, ["behavior"] = "MergedWithPrevious", ["invert"] = false,
        };
        Assert.Equal("pre_tokenizer.behavior", Refused(json).Item);
    }

    [Theory]
    [InlineData("NFKC")]
    [InlineData("Lowercase")]
    [InlineData("BertNormalizer")]
    public void Unknown_normalizers_are_named(string type)
    {
        var json = MiniTokenizers.SentencePiece();
        json["normalizer"] = new JsonObject { ["type"] = type };
        var e = Refused(json);
        Assert.Equal("normalizer", e.Item);
        Assert.Contains($"'{type}'", e.Message);
    }

    [Fact]
    public void Regex_replace_is_refused()
    {
        var json = MiniTokenizers.SentencePiece();
        json["normalizer"]!["normalizers"]![1]!["pattern"] = new JsonObject { ["Regex"] = " {2,}" };
        Assert.Equal("normalizer.normalizers[1].pattern", Refused(json).Item);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("CTC")]
    public void Unknown_decoders_are_named(string type)
    {
        var json = MiniTokenizers.SentencePiece();
        json["decoder"]!["decoders"]!.AsArray().Add(new JsonObject { ["type"] = type });
        var e = Refused(json);
        Assert.Equal("decoder.decoders[4]", e.Item);
        Assert.Contains($"'{type}'", e.Message);
    }

    [Fact]
    public void Unknown_post_processor_is_named()
    {
        var json = MiniTokenizers.SentencePiece();
        json["post_processor"] = new JsonObject { ["type"] = "RobertaProcessing" };
        Assert.Contains("'RobertaProcessing'", Refused(json).Message);
    }

    [Fact]
    public void Truncation_and_dropout_are_refused()
    {
        var json = MiniTokenizers.SentencePiece();
        json["truncation"] = new JsonObject { ["max_length"] = 512 };
        Assert.Equal("truncation", Refused(json).Item);
        json = MiniTokenizers.SentencePiece();
        json["model"]!["dropout"] = 0.1;
        Assert.Equal("model.dropout", Refused(json).Item);
    }

    [Fact]
    public void Garbled_json_names_the_line()
    {
        string text = MiniTokenizers.SentencePiece("a b").ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        int cut = text.IndexOf("\"merges\"", StringComparison.Ordinal);
        string path = MiniTokenizers.Write(text[..cut] + "\"merges\": [\"a b\",, ]}}");
        try
        {
            var e = Assert.Throws<ModelFormatException>(() => Tokenizer.FromHuggingFace(path));
            int line = text[..cut].Count(c => c == '\n') + 1;
            Assert.Contains($"line {line}", e.Message);
            Assert.Equal(path, e.File);
        }
        finally { Directory.Delete(Path.GetDirectoryName(path)!, recursive: true); }
    }

    [Fact]
    public void Wrongly_typed_fields_are_named_by_path()
    {
        var json = MiniTokenizers.SentencePiece();
        json["model"]!["vocab"]!["a"] = "seven";
        var e = Refused(json);
        Assert.Equal("model.vocab[\"a\"]", e.Item);
        Assert.Contains("expected an integer", e.Message);

        json = MiniTokenizers.SentencePiece();
        json["added_tokens"]![1]!["special"] = "yes";
        Assert.Equal("added_tokens[1].special", Refused(json).Item);
    }

    [Fact]
    public void Merges_must_name_vocabulary_tokens()
    {
        var json = MiniTokenizers.SentencePiece("a b", "b c");
        json["model"]!["merges"]!.AsArray().Add("q zz");
        var e = Refused(json);
        Assert.Equal("model.merges[2]", e.Item);
        Assert.Contains("'zz'", e.Message);
    }

    [Fact]
    public void Vocabulary_ids_must_not_have_gaps()
    {
        var json = MiniTokenizers.SentencePiece();
        json["model"]!["vocab"]!["zzz"] = 1000;
        Assert.Contains("id 286 is not assigned", Refused(json).Message);
    }

    // ---- GGUF ----

    static ModelFormatException RefusedGguf(Action<GgufWriter> setup)
    {
        var w = new GgufWriter();
        w.Set("general.architecture", GgufValue.Of("llama"));
        setup(w);
        string path = Path.Combine(Path.GetTempPath(), $"hone-tok-{Guid.NewGuid():N}.gguf");
        w.Write(path);
        try
        {
            using var gguf = GgufFile.Open(path);
            return Assert.Throws<ModelFormatException>(() => Tokenizer.FromGguf(gguf));
        }
        finally { File.Delete(path); }
    }

    static void ByteLevelVocabulary(GgufWriter w, string? pre)
    {
        w.Set("tokenizer.ggml.model", GgufValue.Of("gpt2"));
        if (pre != null) w.Set("tokenizer.ggml.pre", GgufValue.Of(pre));
        w.Set("tokenizer.ggml.tokens", GgufValue.Strings(Enumerable.Range(0, 256).Select(MiniTokenizers.ByteLevelChar).ToArray()));
        w.Set("tokenizer.ggml.merges", GgufValue.Strings([]));
    }

    [Theory]
    [InlineData("bert")]
    [InlineData("t5")]
    [InlineData("rwkv")]
    public void Gguf_unknown_tokenizer_model_is_named(string model)
    {
        var e = RefusedGguf(w =>
        {
            w.Set("tokenizer.ggml.model", GgufValue.Of(model));
            w.Set("tokenizer.ggml.tokens", GgufValue.Strings(["a"]));
        });
        Assert.Equal("tokenizer.ggml.model", e.Item);
        Assert.Contains($"'{model}'", e.Message);
    }

    [Theory]
    [InlineData("deepseek-llm")]
    [InlineData("default")]
    [InlineData("gpt-4o")]
    public void Gguf_unknown_pre_tokenizer_is_named(string pre)
    {
        var e = RefusedGguf(w => ByteLevelVocabulary(w, pre));
        Assert.Equal("tokenizer.ggml.pre", e.Item);
        Assert.Contains($"'{pre}'", e.Message);
    }

    [Fact]
    public void Gguf_missing_or_mistyped_pre_tokenizer_is_refused()
    {
        var missing = RefusedGguf(w => ByteLevelVocabulary(w, null));
        Assert.Equal("tokenizer.ggml.pre", missing.Item);
        Assert.Contains("missing", missing.Message);
        var mistyped = RefusedGguf(w =>
        {
            ByteLevelVocabulary(w, null);
            w.Set("tokenizer.ggml.pre", GgufValue.Of(1));
        });
        Assert.Equal("tokenizer.ggml.pre", mistyped.Item);
        Assert.Contains("expected a string", mistyped.Message);
    }

    [Fact]
    public void Gguf_add_bos_without_bos_id_is_refused()
    {
        var e = RefusedGguf(w =>
        {
            ByteLevelVocabulary(w, "llama-bpe"); // adds BOS by default
        });
        Assert.Equal("tokenizer.ggml.add_bos_token", e.Item);
    }
}

/// <summary>The GPT-2 split regex as tokenizer.json spells it.</summary>
static class SplitPatternsRegex
{
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
}
