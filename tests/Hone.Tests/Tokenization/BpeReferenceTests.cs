using System.Text;
using Hone.Formats;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Long words (which take the heap-based merge path) against plain string implementations of the two
/// algorithms: Hugging Face BPE (lowest merge rank, leftmost first) and llama.cpp SentencePiece (highest score of the
/// concatenation, leftmost first).</summary>
public class BpeReferenceTests
{
    static List<string> ReferenceMerges(List<string> symbols, Dictionary<(string, string), int> ranks)
    {
        while (true)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (ranks.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank) { bestRank = r; best = i; }
            if (best < 0) return symbols;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
    }

    static List<string> ReferenceScores(List<string> symbols, Func<string, float?> score)
    {
        while (true)
        {
            int best = -1;
            float bestScore = float.NegativeInfinity;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (score(symbols[i] + symbols[i + 1]) is float s && (best < 0 || s > bestScore)) { bestScore = s; best = i; }
            if (best < 0) return symbols;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
    }

    static IEnumerable<string> RandomWords(int seed, string alphabet, int count)
    {
        var rng = new Random(seed);
        var characters = alphabet.EnumerateRunes().Select(r => r.ToString()).ToArray(); // whole characters, never half a pair
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int length = rng.Next(50, 400);
            for (int j = 0; j < length; j++) sb.Append(characters[rng.Next(characters.Length)]);
            yield return sb.ToString();
        }
    }

    [SkippableFact]
    public void Gpt2_long_words_match_the_reference()
    {
        var tokenizer = TokenizerVectors.Gpt2Hf();
        var json = TokenizerVectors.Json("tokenizers/gpt2-hf/tokenizer.json");
        var ranks = new Dictionary<(string, string), int>();
        int rank = 0;
        foreach (var m in json["model"]!["merges"]!.AsArray())
        {
            var parts = ((string)m!).Split(' ');
            ranks.TryAdd((parts[0], parts[1]), rank++);
        }
        foreach (var word in RandomWords(1, "etaoinshrdlucmfwypvbgkqjxz", 200))
        {
            var symbols = Encoding.UTF8.GetBytes(" " + word).Select(b => MiniTokenizers.ByteLevelChar(b)).ToList();
            var expected = ReferenceMerges(symbols, ranks).Select(s => tokenizer.TokenToId(s)!.Value).ToArray();
            TokenizerVectors.AssertIds(expected, tokenizer.Encode(" " + word, addSpecialTokens: false), word);
        }
    }

    [SkippableFact]
    public void Llama2_tokenizer_json_long_words_match_the_reference()
    {
        var tokenizer = TokenizerVectors.Llama2Hf();
        var json = TokenizerVectors.Json("tokenizers/llama2-hf/tokenizer.json");
        var ranks = new Dictionary<(string, string), int>();
        int rank = 0;
        foreach (var m in json["model"]!["merges"]!.AsArray())
        {
            var parts = ((string)m!).Split(' ');
            ranks.TryAdd((parts[0], parts[1]), rank++);
        }
        foreach (var word in RandomWords(2, "etaoinshrdlucmfwypvbgkqjxzéàü", 200))
        {
            var symbols = ("\u2581" + word).Select(c => c.ToString()).ToList();
            var expected = ReferenceMerges(symbols, ranks).Select(s => tokenizer.TokenToId(s)!.Value).ToArray();
            TokenizerVectors.AssertIds(expected, tokenizer.Encode(word, addSpecialTokens: false), word);
        }
    }

    [SkippableFact]
    public void Llama_spm_gguf_long_words_match_the_reference_with_byte_fallback()
    {
        using var gguf = GgufFile.Open(SharedData.Require(TokenizerVectors.LlamaCpp + "ggml-vocab-llama-spm.gguf"));
        var tokenizer = Tokenizer.FromGguf(gguf);
        var pieces = gguf.Get("tokenizer.ggml.tokens")!.AsArray(gguf.Path, "t").Items.Cast<string>().ToArray();
        var scores = gguf.Get("tokenizer.ggml.scores")!.AsArray(gguf.Path, "s").Items.Cast<float>().ToArray();
        var scoreOf = new Dictionary<string, float>();
        for (int i = 0; i < pieces.Length; i++) scoreOf[pieces[i]] = scores[i];
        // Includes characters missing from the vocabulary (byte fallback) and spaces (no segmentation shortcut in the reference).
        foreach (var word in RandomWords(3, "etaoinshrdlucmfwy  pvbgkqjxz谛🦙ё", 200))
        {
            var symbols = ReferenceScores(("\u2581" + word.Replace(' ', '\u2581')).EnumerateRunes().Select(r => r.ToString()).ToList(),
                s => scoreOf.TryGetValue(s, out float v) ? v : null);
            var expected = new List<int>();
            foreach (var s in symbols)
            {
                if (tokenizer.TokenToId(s) is int id) expected.Add(id);
                else expected.AddRange(Encoding.UTF8.GetBytes(s).Select(b => tokenizer.TokenToId($"<0x{b:X2}>")!.Value));
            }
            TokenizerVectors.AssertIds(expected.ToArray(), tokenizer.Encode(word, addSpecialTokens: false), word);
        }
    }
}
