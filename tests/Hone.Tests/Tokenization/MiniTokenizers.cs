using System.Text.Json.Nodes;
using Hone.Tokenization;

namespace Hone.Tests.Tokenization;

/// <summary>Small tokenizer.json files written for one test, so the parts can be tested without shared data.</summary>
static class MiniTokenizers
{
    /// <summary>A SentencePiece-style BPE (Llama 2 layout): &lt;unk&gt;=0, &lt;s&gt;=1, &lt;/s&gt;=2, &lt;0x00&gt;..&lt;0xFF&gt;=3..258,
    /// then "▁" and the letters a-z, then merged tokens.</summary>
    public static JsonObject SentencePiece(params string[] merges)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        vocab["\u2581"] = vocab.Count;
        for (char c = 'a'; c <= 'z'; c++) vocab[c.ToString()] = vocab.Count;
        foreach (var m in merges)
        {
            string merged = m.Replace(" ", "");
            if (!vocab.ContainsKey(merged)) vocab[merged] = vocab.Count;
        }
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(0, "<unk>", true), Added(1, "<s>", true), Added(2, "</s>", true)),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "\u2581" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["special_tokens"] = new JsonObject { ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(1), ["tokens"] = new JsonArray("<s>") } },
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "\u2581" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["fuse_unk"] = true, ["byte_fallback"] = true,
                ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
    }

    /// <summary>A byte-level BPE (GPT-2 layout): the 256 alphabet characters as ids 0..255 in byte order, then merged
    /// tokens, GPT-2 split and decoder.</summary>
    public static JsonObject ByteLevel(params string[] merges)
    {
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[ByteLevelChar(b)] = b;
        foreach (var m in merges)
        {
            string merged = m.Replace(" ", "");
            if (!vocab.ContainsKey(merged)) vocab[merged] = vocab.Count;
        }
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel,
            ["post_processor"] = null,
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
    }

    /// <summary>The GPT-2 alphabet character of a byte (the test's own copy of the table, built the documented way).</summary>
    public static string ByteLevelChar(int b)
    {
        int next = 256;
        for (int x = 0; x < 256; x++)
        {
            bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            int c = printable ? x : next++;
            if (x == b) return ((char)c).ToString();
        }
        throw new ArgumentOutOfRangeException(nameof(b));
    }

    public static JsonObject Added(int id, string content, bool special, bool lstrip = false, bool rstrip = false,
        bool singleWord = false, bool normalized = false) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = singleWord, ["lstrip"] = lstrip, ["rstrip"] = rstrip,
        ["normalized"] = normalized, ["special"] = special,
    };

    /// <summary>Adds a token to the vocabulary (when not there) and to added_tokens.</summary>
    public static JsonObject WithAdded(this JsonObject json, string content, bool special, bool lstrip = false, bool rstrip = false,
        bool singleWord = false, bool normalized = false)
    {
        var vocab = json["model"]!["vocab"]!.AsObject();
        int id = vocab.ContainsKey(content) ? (int)vocab[content]! : vocab.Count + json["added_tokens"]!.AsArray().Count(t => !vocab.ContainsKey((string)t!["content"]!));
        json["added_tokens"]!.AsArray().Add(Added(id, content, special, lstrip, rstrip, singleWord, normalized));
        return json;
    }

    public static string Write(string text, string name = "tokenizer.json")
    {
        string dir = Path.Combine(Path.GetTempPath(), "hone-tok-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    public static Tokenizer Load(JsonObject json, JsonObject? config = null)
    {
        string path = Write(json.ToJsonString());
        string? configPath = null;
        if (config != null)
        {
            configPath = Path.Combine(Path.GetDirectoryName(path)!, "tokenizer_config.json");
            File.WriteAllText(configPath, config.ToJsonString());
        }
        try { return Tokenizer.FromHuggingFace(path, configPath); }
        finally { Directory.Delete(Path.GetDirectoryName(path)!, recursive: true); }
    }

    public static int Id(this Tokenizer t, string piece) => t.TokenToId(piece) ?? throw new ArgumentException($"no token '{piece}'");
}
