using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>
/// Llama 3's tokenizer.json is not among the shared files (too large to fetch), so this builds one in the layout
/// meta-llama publishes (Split with the Llama 3 regex then ByteLevel without regex, ignore_merges, a Sequence of ByteLevel
/// and TemplateProcessing post-processors, merges as pairs) from the real Llama 3.2 vocabulary and merges, with a
/// tokenizer_config.json carrying the real Llama 3.2 chat template and a generation_config.json, and checks it against
/// the vectors.
/// </summary>
public class Llama3TokenizerJsonTests
{
    static string BuildFolder()
    {
        var encoder = TokenizerVectors.Json("tokenizers/llama3.2-bpe/encoder.json").AsObject();
        var merges = new JsonArray();
        foreach (var line in File.ReadLines(SharedData.Require("tokenizers/llama3.2-bpe/vocab.bpe")))
        {
            if (line.Length == 0) continue;
            var parts = line.Split(' ');
            merges.Add(new JsonArray(parts[0], parts[1]));
        }
        var added = new JsonArray();
        foreach (var (content, id) in TokenizerVectors.Llama3SpecialTokens())
            added.Add(MiniTokenizers.Added(id, content, special: true));
        var begin = new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } };
        var json = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added, ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split", ["behavior"] = "Isolated", ["invert"] = false,
                        ["pattern"] = new JsonObject { ["Regex"] = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" },
                    },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["processors"] = new JsonArray(
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                    new JsonObject
                    {
                        ["type"] = "TemplateProcessing",
                        ["single"] = new JsonArray(begin, new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                        ["pair"] = new JsonArray(),
                        ["special_tokens"] = new JsonObject
                        {
                            ["<|begin_of_text|>"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["ids"] = new JsonArray(128000), ["tokens"] = new JsonArray("<|begin_of_text|>") },
                        },
                    }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = true, ["vocab"] = encoder.DeepClone(), ["merges"] = merges,
            },
        };
        string dir = Path.GetDirectoryName(MiniTokenizers.Write(json.ToJsonString()))!;
        var config = new JsonObject
        {
            ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = "<|eot_id|>", ["clean_up_tokenization_spaces"] = true,
            ["chat_template"] = File.ReadAllText(SharedData.Require("chat-templates/llama.cpp/meta-llama-Llama-3.2-3B-Instruct.jinja")),
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}""");
        return dir;
    }

    [SkippableFact]
    public void Llama3_tokenizer_json_matches_the_vectors_and_carries_the_config()
    {
        string dir = BuildFolder();
        try
        {
            var t = Tokenizer.FromHuggingFaceDirectory(dir);
            Assert.Equal(128256, t.VocabSize);
            Assert.Equal(128000, t.BosId);
            Assert.Equal("<|eot_id|>", t.EosToken);
            Assert.True(t.AddsBos);
            Assert.Equal(true, t.CleanUpTokenizationSpaces);
            Assert.Equal([128001, 128008, 128009], t.EndOfTurnIds);
            Assert.StartsWith("{{- bos_token }}", t.ChatTemplate);

            foreach (var c in TokenizerVectors.LlamaCppCases("ggml-vocab-llama-bpe.gguf"))
                TokenizerVectors.AssertIds(c.Ids, t.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: false), $"#{c.Index}");
            var v = TokenizerVectors.Json(TokenizerVectors.Swift + "llama_3.2_encoded.json");
            TokenizerVectors.AssertIds(TokenizerVectors.Ints(v["token_ids"]), t.Encode((string)v["text"]!), "llama_3.2_encoded");
            foreach (var c in TokenizerVectors.Json(TokenizerVectors.Swift + "tokenizer_tests.json")["pcuenq/Llama-3.2-1B-Instruct-tokenizer"]!.AsArray())
            {
                var ids = t.Encode((string)c!["input"]!);
                TokenizerVectors.AssertIds(TokenizerVectors.Ints(c["encoded"]!["input_ids"]), ids, (string)c["input"]!);
                Assert.Equal((string)c["decoded_with_special"]!, t.Decode(ids, cleanUpTokenizationSpaces: t.CleanUpTokenizationSpaces ?? false));
            }
            // Chat markup: special tokens are parsed, and are plain text when not.
            var chat = t.Encode("<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
            Assert.Equal([128000, 128006, 882, 128007, 271, 13347, 0, 128009], chat);
            Assert.DoesNotContain(128009, t.Encode("<|eot_id|>", parseSpecialTokens: false));

            var writer = new GgufWriter();
            t.WriteGgufMetadata(writer);
            string path = Path.Combine(dir, "vocab.gguf");
            writer.Write(path);
            using var gguf = GgufFile.Open(path);
            Assert.Equal(t.ChatTemplate, gguf.GetString("tokenizer.chat_template"));
            Assert.Equal("llama-bpe", gguf.GetString("tokenizer.ggml.pre"));
            Assert.Equal(128009, (int)gguf.GetInteger("tokenizer.ggml.eos_token_id")!);
            Assert.Equal(chat, Tokenizer.FromGguf(gguf).Encode("<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
