using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Synthetic;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Synthetic;

public class BpeTrainerTests(ITestOutputHelper output)
{
    static readonly string[] EdgeTexts =
    [
        "  leading spaces", "trailing spaces   ", "tabs\tand\nnew lines\n\nand a blank line", "emoji 😀 and ünïcödé – “quotes” ſ",
        "£12.00, €5.50 and $3", "<|user|> written as text <|end|>", "don't 'quote' it's O'Brien's", "1234567890 #48213 1Z8F4A20931",
        "\r\n windows line \r\n", "x", " ", "日本語のテキスト", "a\u00A0non-breaking space",
    ];

    static IReadOnlyList<string> Texts(long generalBytes, int conversations) =>
        GeneralCorpus.Generate(5, generalBytes)
            .Concat(EcommerceDataset.Generate(5, conversations).Train.SelectMany(c => c.Messages.Select(m => m.Content)))
            .Concat(EdgeTexts).ToList();

    [Fact]
    public void Merges_match_a_naive_trainer_that_recounts_every_pair_after_each_merge()
    {
        var texts = Texts(150_000, 100);
        var options = new BpeTrainerOptions(VocabSize: 262 + 400);
        var learned = BpeTrainer.Learn(texts, options);
        var reference = NaiveMerges(texts, options.Specials, 400);
        Assert.Equal(reference.Count, learned.Merges.Count);
        for (int i = 0; i < reference.Count; i++) Assert.Equal(reference[i], learned.Merges[i]);
        Assert.Equal(options.VocabSize, learned.Tokens.Count);
    }

    /// <summary>Textbook BPE: count every adjacent pair over all pieces, merge the most frequent (ties: lower ids,
    /// left then right), repeat.</summary>
    static List<(string, string)> NaiveMerges(IReadOnlyList<string> texts, IReadOnlyList<string> specials, int merges)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++) ids[ByteLevelAlphabet.CharOfByte[b].ToString()] = specials.Count + b;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var segment in text.Split(specials.ToArray(), StringSplitOptions.None))
                for (int pos = 0; pos < segment.Length;)
                {
                    int length = SplitPatterns.MatchLength(SplitPattern.Gpt2, segment, pos, foldLongS: true);
                    string piece = segment.Substring(pos, length);
                    counts[piece] = counts.GetValueOrDefault(piece) + 1;
                    pos += length;
                }
        var words = counts.Select(p => (Symbols: Encoding.UTF8.GetBytes(p.Key).Select(b => ByteLevelAlphabet.CharOfByte[b].ToString()).ToList(), Count: p.Value)).ToList();
        var result = new List<(string, string)>();
        int nextId = specials.Count + 256;
        while (result.Count < merges)
        {
            var pairs = new Dictionary<(string, string), long>();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++) pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value).ThenBy(p => ids[p.Key.Item1]).ThenBy(p => ids[p.Key.Item2]).First();
            if (best.Value < 2) break;
            var (a, b) = best.Key;
            result.Add((a, b));
            if (!ids.ContainsKey(a + b)) ids[a + b] = nextId++;
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == a && symbols[i + 1] == b) { symbols[i] = a + b; symbols.RemoveAt(i + 1); }
        }
        return result;
    }

    [Fact]
    public void Trained_tokenizer_loads_round_trips_every_text_and_adds_bos()
    {
        var texts = Texts(4_000_000, 3000);
        long bytes = texts.Sum(t => (long)Encoding.UTF8.GetByteCount(t));
        using var dir = new TempDirectory();
        var clock = Stopwatch.StartNew();
        var learned = BpeTrainer.Train(texts, 4096, ChatFormat.SpecialTokens, dir.Path);
        double seconds = clock.Elapsed.TotalSeconds;
        output.WriteLine($"vocabulary 4096 on {bytes:N0} bytes ({learned.DistinctPreTokens:N0} distinct pieces): learned in {learned.Elapsed.TotalSeconds:F2} s, written in {seconds - learned.Elapsed.TotalSeconds:F2} s");

        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir.Path);
        Assert.Equal(4096, tokenizer.VocabSize);
        var report = BpeTrainer.Measure(tokenizer, texts);
        Assert.Equal(0, report.RoundTripFailures);
        Assert.Equal(texts.Count, report.Texts);
        var general = BpeTrainer.Measure(tokenizer, GeneralCorpus.Generate(99, 200_000));
        var domain = BpeTrainer.Measure(tokenizer, EcommerceDataset.Generate(99, 200).HeldOut.Select(c => c.PlainText));
        output.WriteLine($"compression: {report.BytesPerToken:F2} bytes/token on the training texts, {general.BytesPerToken:F2} on unseen general text, {domain.BytesPerToken:F2} on unseen conversations");
        Assert.True(general.BytesPerToken > 3, general.ToString());
        Assert.Equal(0, general.RoundTripFailures + domain.RoundTripFailures);

        Assert.Equal(0, tokenizer.BosId);
        Assert.Equal(1, tokenizer.EosId);
        Assert.Equal(5, tokenizer.PaddingId);
        Assert.True(tokenizer.AddsBos);
        Assert.False(tokenizer.AddsEos);
        Assert.Contains(1, tokenizer.EndOfTurnIds);
        var ids = tokenizer.Encode("Hello there.");
        Assert.Equal(0, ids[0]);
        Assert.Equal("Hello there.", tokenizer.Decode(ids, skipSpecialTokens: true));
        var chat = tokenizer.Encode("<|user|>Hi<|end|><|assistant|>", addSpecialTokens: false);
        Assert.Equal(3, chat[0]);
        Assert.Equal(4, chat[^1]);
        Assert.Equal(1, chat[^2]);
        Assert.True(tokenizer.Encode("<|user|>", addSpecialTokens: false, parseSpecialTokens: false).Length > 1);
    }

    [Fact]
    public void Split_digits_gives_one_token_per_digit_round_trips_and_loads_as_the_smollm_pre_tokenizer()
    {
        var texts = Texts(300_000, 300);
        using var split = new TempDirectory();
        using var plain = new TempDirectory();
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 1024, Numbers: NumberSplit.Digits), split.Path);
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 1024), plain.Path);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(split.Path);
        Assert.Equal(PreTokenizerKind.SmolLM, PreTokenizerKinds.Recognize(tokenizer.PreTokenizer));
        Assert.Equal(0, BpeTrainer.Measure(tokenizer, texts).RoundTripFailures);
        Assert.Equal(0, BpeTrainer.Measure(tokenizer, EdgeTexts.Append("١٢٣ digits of other scripts ²³ and 12½")).RoundTripFailures);
        // Every digit is a token of its own, whatever surrounds it; no learned token holds a digit and anything else.
        foreach (var text in new[] { "order #4821390 for 12.50", "mia_lopez_1234", "W0009" })
        {
            var pieces = tokenizer.Encode(text, addSpecialTokens: false).Select(id => tokenizer.Decode([id])).ToList();
            Assert.Equal(text, string.Concat(pieces));
            Assert.All(pieces.Where(p => p.Any(char.IsAsciiDigit)), p => Assert.Single(p));
        }
        var withDigits = Tokenizer.FromHuggingFaceDirectory(plain.Path).Encode("4821390 2025", addSpecialTokens: false);
        Assert.True(withDigits.Length < 11, "without the split, numbers merge into groups of digits");
    }

    [Fact]
    public void Number_groups_cut_numbers_as_llama3_does_round_trip_and_load_as_the_llama3_pre_tokenizer()
    {
        // Random numbers so that digit groups are frequent enough to be merged.
        var random = new Random(3);
        var texts = Texts(300_000, 300).Concat(Enumerable.Range(0, 3000).Select(_ =>
            $"order #W{random.Next(1_000_000, 9_999_999)} of user mia_lopez_{random.Next(1000, 9999)}, zip {random.Next(10000, 99999)}")).ToList();
        using var dir = new TempDirectory();
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 2048, Numbers: NumberSplit.Groups), dir.Path);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir.Path);
        Assert.Equal(PreTokenizerKind.Llama3, PreTokenizerKinds.Recognize(tokenizer.PreTokenizer));
        Assert.Equal(0, BpeTrainer.Measure(tokenizer, texts).RoundTripFailures);
        Assert.Equal(0, BpeTrainer.Measure(tokenizer, EdgeTexts.Append("١٢٣ digits of other scripts ²³ and 12½")).RoundTripFailures);
        int groupTokens = 0;
        foreach (var text in new[] { "order #4821390 for 12.50", "mia_lopez_1234", "W0009", "zip 98195 and 1234567890" })
        {
            var pieces = tokenizer.Encode(text, addSpecialTokens: false).Select(id => tokenizer.Decode([id])).ToList();
            Assert.Equal(text, string.Concat(pieces));
            // A token with a digit holds digits only, at most three, and never crosses a group boundary (counted from the
            // left of each number).
            int inNumber = 0;
            foreach (var piece in pieces)
            {
                if (!piece.Any(char.IsAsciiDigit)) { inNumber = 0; continue; }
                Assert.True(piece.All(char.IsAsciiDigit) && piece.Length <= 3, $"'{piece}' in '{text}'");
                Assert.True(inNumber % 3 + piece.Length <= 3, $"'{piece}' crosses a group of three in '{text}'");
                inNumber += piece.Length;
                if (piece.Length > 1) groupTokens++;
            }
        }
        Assert.True(groupTokens >= 5, "digit groups are learned as tokens");
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(texts.Take(10), new BpeTrainerOptions(VocabSize: 1024, Numbers: (NumberSplit)3), dir.Path));
    }

    [Fact]
    public void Chat_template_renders_turns_as_growing_prefixes_and_the_sft_loader_finds_the_answers()
    {
        using var dir = new TempDirectory();
        var data = EcommerceDataset.Generate(8, 60);
        BpeTrainer.Train(Texts(300_000, 100), 1024, ChatFormat.SpecialTokens, dir.Path);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir.Path);
        Assert.Equal(ChatFormat.Template, tokenizer.ChatTemplate);
        var template = ChatTemplate.Parse(tokenizer.ChatTemplate!);
        var options = new ChatTemplateOptions { BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken };

        var messages = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "S" }, new JsonObject { ["role"] = "user", ["content"] = "U1" },
            new JsonObject { ["role"] = "assistant", ["content"] = "A1" }, new JsonObject { ["role"] = "user", ["content"] = "U2" },
            new JsonObject { ["role"] = "assistant", ["content"] = "A2" });
        Assert.Equal("<|bos|><|system|>S<|end|><|user|>U1<|end|><|assistant|>A1<|end|><|user|>U2<|end|><|assistant|>A2<|end|>", template.Apply(messages, options));
        Assert.Equal("<|bos|><|system|>S<|end|><|user|>U1<|end|><|assistant|>",
            template.Apply(new JsonArray(messages.Take(2).Select(m => m!.DeepClone()).ToArray()), options with { AddGenerationPrompt = true }));
        Assert.Equal("<|system|>S<|end|>", template.Apply(new JsonArray(messages[0]!.DeepClone()), new ChatTemplateOptions()));

        foreach (var c in data.Train.Where(c => c.Intents.Count == 2).Concat(data.Train.Take(10)))
        {
            var json = new JsonArray(c.Messages.Select(m => (JsonNode?)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray());
            for (int i = 1; i < json.Count; i++)
            {
                string shorter = template.Apply(new JsonArray(json.Take(i).Select(m => m!.DeepClone()).ToArray()), options with { AddGenerationPrompt = true });
                string longer = template.Apply(new JsonArray(json.Take(i + 1).Select(m => m!.DeepClone()).ToArray()), options);
                if (json[i]!["role"]!.GetValue<string>() == "assistant") Assert.StartsWith(shorter, longer);
            }
            var example = ChatConversation.Tokenize(tokenizer, template, json, trainOnPrompt: false);
            var targets = example.Ids.Where((_, k) => example.IsTarget[k]).ToArray();
            string expected = string.Concat(c.Messages.Where(m => m.Role == "assistant").Select(m => m.Content + ChatFormat.End));
            Assert.Equal(expected, tokenizer.Decode(targets));
            Assert.Equal(tokenizer.BosId, example.Ids[0]);
            Assert.Equal(1, example.Ids.Count(id => id == tokenizer.BosId));
        }
    }

    [Fact]
    public void The_chat_template_renders_tools_hermes_style_and_plain_conversations_as_the_plain_template()
    {
        var template = ChatTemplate.Parse(ChatFormat.Template);
        var plain = ChatTemplate.Parse(ChatFormat.PlainTemplate);
        Assert.Equal("hermes", Hone.ToolCalls.ToolCallFormat.Detect(template)?.Name);
        Assert.Null(Hone.ToolCalls.ToolCallFormat.Detect(plain));
        var options = new ChatTemplateOptions { BosToken = ChatFormat.Bos, EosToken = ChatFormat.End };
        var chat = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "S" }, new JsonObject { ["role"] = "user", ["content"] = "U1" },
            new JsonObject { ["role"] = "assistant", ["content"] = "A1" });
        Assert.Equal(plain.Apply(chat, options), template.Apply(chat, options));
        Assert.Equal(plain.Apply(chat, options with { AddGenerationPrompt = true }), template.Apply(chat, options with { AddGenerationPrompt = true }));

        var tool = new JsonObject
        {
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = "get_order_details", ["description"] = "D", ["parameters"] = new JsonObject { ["type"] = "object" } },
        };
        var messages = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "Policy." }, new JsonObject { ["role"] = "user", ["content"] = "Where is #W1?" },
            new JsonObject
            {
                ["role"] = "assistant", ["content"] = "",
                ["tool_calls"] = new JsonArray(new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_order_details", ["arguments"] = new JsonObject { ["order_id"] = "#W1" } } }),
            },
            new JsonObject { ["role"] = "tool", ["content"] = "{\"status\": \"delivered\"}" },
            new JsonObject { ["role"] = "assistant", ["content"] = "It was delivered." });
        var withTools = options with { Tools = new JsonArray(tool) };
        string text = template.Apply(messages, withTools);
        Assert.Equal("<|bos|><|system|>Policy.\n\nYou can call these tools:\n<tools>\n" +
            "{\"name\": \"get_order_details\", \"description\": \"D\", \"parameters\": {\"type\": \"object\"}}\n</tools>\n" +
            "To call one, write <tool_call>\n{\"name\": <name>, \"arguments\": <arguments>}\n</tool_call><|end|>" +
            "<|user|>Where is #W1?<|end|><|assistant|><tool_call>\n{\"name\": \"get_order_details\", \"arguments\": {\"order_id\": \"#W1\"}}\n</tool_call><|end|>" +
            "<|user|><tool_response>\n{\"status\": \"delivered\"}\n</tool_response><|end|><|assistant|>It was delivered.<|end|>", text);
        // Arguments as OpenAI sends them (JSON text) are written as they are, never as a second, quoted encoding.
        var asText = messages.DeepClone().AsArray();
        asText[2]!["tool_calls"]![0]!["function"]!["arguments"] = "{\"order_id\": \"#W1\"}";
        Assert.Equal(text, template.Apply(asText, withTools));
        // Growing prefixes hold with calls too: what the SFT loader needs to find each assistant turn.
        for (int i = 1; i < messages.Count; i++)
            if (messages[i]!["role"]!.GetValue<string>() == "assistant")
                Assert.StartsWith(template.Apply(new JsonArray(messages.Take(i).Select(m => m!.DeepClone()).ToArray()), withTools with { AddGenerationPrompt = true }),
                    template.Apply(new JsonArray(messages.Take(i + 1).Select(m => m!.DeepClone()).ToArray()), withTools));
    }

    [Fact]
    public void Training_is_deterministic_and_small_inputs_and_bad_options_are_handled()
    {
        var texts = Texts(200_000, 50);
        using var a = new TempDirectory();
        using var b = new TempDirectory();
        BpeTrainer.Train(texts, 800, ChatFormat.SpecialTokens, a.Path);
        BpeTrainer.Train(texts.ToList(), 800, ChatFormat.SpecialTokens, b.Path);
        Assert.Equal(File.ReadAllBytes(a.File("tokenizer.json")), File.ReadAllBytes(b.File("tokenizer.json")));
        Assert.Equal(File.ReadAllBytes(a.File("tokenizer_config.json")), File.ReadAllBytes(b.File("tokenizer_config.json")));

        // Too little text for the vocabulary asked: training stops when no pair is seen twice, and the file still loads.
        using var small = new TempDirectory();
        var tiny = BpeTrainer.Train(["abab abab", "cd"], 4096, ["<s>", "</s>"], small.Path);
        Assert.True(tiny.Tokens.Count < 300);
        var t = Tokenizer.FromHuggingFaceDirectory(small.Path);
        Assert.Equal("abab abab cd", t.Decode(t.Encode("abab abab cd"), skipSpecialTokens: true));
        Assert.Null(t.ChatTemplate);
        Assert.Equal("<s>", t.BosToken);
        Assert.Equal("</s>", t.EosToken);

        Assert.Throws<ArgumentException>(() => BpeTrainer.Learn(texts, new BpeTrainerOptions(VocabSize: 200)));
        Assert.Throws<ArgumentException>(() => BpeTrainer.Learn(texts, new BpeTrainerOptions(SpecialTokens: ["<|bos|>", "<|bos|>", "<|end|>"])));
        Assert.Throws<ArgumentException>(() => BpeTrainer.Learn(texts, new BpeTrainerOptions(SpecialTokens: ["<s>"])));
    }

    [Fact]
    public void Cli_writes_all_three_outputs()
    {
        using var dir = new TempDirectory();
        var general = HoneCli.Run("synth", "general", "--out", dir.File("general"), "--size", "300K");
        Assert.True(general.ExitCode == 0, general.ToString());
        Assert.Contains("distinct", general.Stdout);
        var ecommerce = HoneCli.Run("synth", "ecommerce", "--out", dir.File("ecommerce"), "--count", "300", "--fault-rate", "0.2");
        Assert.True(ecommerce.ExitCode == 0, ecommerce.ToString());
        Assert.Matches(@"\d+ rejected \(\d+ falsified on purpose\)", ecommerce.Stdout);
        var tokenizer = HoneCli.Run("synth", "tokenizer", "--out", dir.File("tokenizer"), "--vocab", "1024",
            "--from", dir.File("general/train.jsonl"), "--from", dir.File("ecommerce/train.jsonl"), "--json");
        Assert.True(tokenizer.ExitCode == 0, tokenizer.ToString());
        var report = JsonNode.Parse(tokenizer.Stdout)!;
        Assert.Equal(1024, report["vocab_size"]!.GetValue<int>());
        Assert.Equal(0, report["round_trip_failures"]!.GetValue<int>());
        output.WriteLine(general.Stdout + ecommerce.Stdout + tokenizer.Stdout);
        var grouped = HoneCli.Run("synth", "tokenizer", "--out", dir.File("grouped"), "--vocab", "1024", "--numbers", "groups",
            "--from", dir.File("ecommerce/train.jsonl"), "--json");
        Assert.True(grouped.ExitCode == 0, grouped.ToString());
        Assert.Equal(PreTokenizerKind.Llama3, PreTokenizerKinds.Recognize(Tokenizer.FromHuggingFaceDirectory(dir.File("grouped")).PreTokenizer));
        var unknown = HoneCli.Run("synth", "tokenizer", "--out", dir.File("x"), "--numbers", "pairs");
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Contains("pairs", unknown.Stderr);
        foreach (var file in new[] { "general/train.jsonl", "general/heldout.txt", "ecommerce/train.jsonl", "ecommerce/heldout.jsonl", "ecommerce/eval.jsonl", "ecommerce/heldout.txt", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json" })
            Assert.True(new FileInfo(dir.File(file)).Length > 0, file);
        var bad = HoneCli.Run("synth", "general", "--out", dir.File("x"), "--size", "lots");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("not a size", bad.Stderr);
    }
}
