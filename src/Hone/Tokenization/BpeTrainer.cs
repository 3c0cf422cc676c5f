using System.Diagnostics;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Hone.Formats;

namespace Hone.Tokenization;

/// <summary>What <see cref="BpeTrainer"/> learns and writes.</summary>
/// <param name="VocabSize">all ids: special tokens, the 256 byte tokens and the merged tokens</param>
/// <param name="SpecialTokens">added special tokens, given ids 0.. in this order; they are cut out of the training
/// texts (never merged into other tokens) and matched whole when encoding</param>
/// <param name="BosToken">added first by the post-processor (add_bos_token)</param>
/// <param name="EosToken">tokenizer_config.json eos_token</param>
/// <param name="ChatTemplate">tokenizer_config.json chat_template, or null for none</param>
/// <param name="MinPairCount">pairs seen fewer times than this are never merged (training stops early instead)</param>
/// <param name="Numbers">how numbers are cut before merging (<see cref="NumberSplit"/>)</param>
/// <summary>How <see cref="BpeTrainer"/>'s pre-tokenizer cuts numbers before merging.</summary>
public enum NumberSplit
{
    /// <summary>GPT-2's split: a run of digits is one piece, merged by frequency like any word.</summary>
    Runs,
    /// <summary>Every digit its own piece before the GPT-2 split (SmolLM's and StarCoder's pre-tokenizer): numbers become
    /// one token per digit, so a model copies or compares them digit by digit instead of through hundreds of merged digit
    /// groups that a random number cuts differently each time.</summary>
    Digits,
    /// <summary>Llama 3's pre-tokenizer instead of GPT-2's: numbers cut into groups of up to three digits from the left
    /// (and words keep one leading punctuation mark); with the groups learned as tokens, an id or a zip code is a few
    /// tokens from a large alphabet rather than a run of single digits, where a digit recurs within a number.</summary>
    Groups,
}

public sealed record BpeTrainerOptions(
    int VocabSize = 2048,
    IReadOnlyList<string>? SpecialTokens = null,
    string BosToken = ChatFormat.Bos,
    string EosToken = ChatFormat.End,
    string? PadToken = ChatFormat.Pad,
    string? ChatTemplate = ChatFormat.Template,
    int MinPairCount = 2,
    NumberSplit Numbers = NumberSplit.Runs)
{
    public IReadOnlyList<string> Specials => SpecialTokens ?? ChatFormat.SpecialTokens;
}

/// <param name="Tokens">id → token text (byte-level alphabet for learned tokens)</param>
/// <param name="Merges">in rank order, as token texts</param>
/// <param name="TrainingBytes">UTF-8 bytes of the training text, special tokens excluded</param>
/// <param name="PreTokens">pieces the GPT-2 split produced</param>
public sealed record BpeVocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<(string Left, string Right)> Merges,
    int SpecialTokenCount, long TrainingBytes, long PreTokens, int DistinctPreTokens, TimeSpan Elapsed);

public sealed record CompressionReport(int Texts, long Bytes, long Tokens, int RoundTripFailures)
{
    public double BytesPerToken => Tokens == 0 ? 0 : (double)Bytes / Tokens;
}

/// <summary>
/// Trains a byte-level BPE tokenizer the way GPT-2's was made: texts are cut by the GPT-2 split regex, each piece
/// becomes its UTF-8 bytes in GPT-2's byte alphabet, and the most frequent adjacent pair is merged until the vocabulary
/// is full. Ties go to the pair of lower ids (left, then right), so training is deterministic. Pair counts are kept
/// up to date incrementally (only the words that contain the merged pair are revisited) and the next pair comes from
/// a priority queue, so a 2–4K vocabulary over a few MB takes seconds.
/// The result is written as a Hugging Face tokenizer.json (ByteLevel pre-tokenizer without a prefix space, so decoding
/// gives back the exact text; TemplateProcessing that adds BOS; ByteLevel decoder) with tokenizer_config.json.
/// </summary>
public static class BpeTrainer
{
    /// <summary>Learns a vocabulary of <paramref name="vocabSize"/> ids with the given special tokens and writes tokenizer.json and
    /// tokenizer_config.json to <paramref name="outputDirectory"/>.
    /// BOS is <see cref="ChatFormat.Bos"/> if listed (else the first), EOS <see cref="ChatFormat.End"/> if listed (else the
    /// last); the chat template is written when the <see cref="ChatFormat"/> role tokens are all there.</summary>
    public static BpeVocabulary Train(IEnumerable<string> texts, int vocabSize, IReadOnlyList<string> specialTokens, string outputDirectory)
    {
        ArgumentNullException.ThrowIfNull(specialTokens);
        if (specialTokens.Count == 0) throw new ArgumentException("give at least one special token (BOS)");
        bool chat = new[] { ChatFormat.End, ChatFormat.System, ChatFormat.User, ChatFormat.Assistant }.All(specialTokens.Contains);
        var options = new BpeTrainerOptions(vocabSize, specialTokens,
            BosToken: specialTokens.Contains(ChatFormat.Bos) ? ChatFormat.Bos : specialTokens[0],
            EosToken: specialTokens.Contains(ChatFormat.End) ? ChatFormat.End : specialTokens[^1],
            PadToken: specialTokens.Contains(ChatFormat.Pad) ? ChatFormat.Pad : null,
            ChatTemplate: chat ? ChatFormat.Template : null);
        return Train(texts, options, outputDirectory);
    }

    public static BpeVocabulary Train(IEnumerable<string> texts, BpeTrainerOptions options, string outputDirectory)
    {
        var vocabulary = Learn(texts, options);
        Write(vocabulary, options, outputDirectory);
        return vocabulary;
    }

    // ---- learning -----------------------------------------------------------------------------------------------

    /// <summary>Learns the vocabulary and merges without writing anything.</summary>
    public static BpeVocabulary Learn(IEnumerable<string> texts, BpeTrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var specials = options.Specials;
        if (specials.Distinct(StringComparer.Ordinal).Count() != specials.Count) throw new ArgumentException("special tokens must be distinct");
        if (specials.Any(string.IsNullOrEmpty)) throw new ArgumentException("special tokens must not be empty");
        foreach (var required in new[] { options.BosToken, options.EosToken, options.PadToken })
            if (required != null && !specials.Contains(required)) throw new ArgumentException($"'{required}' is not one of the special tokens");
        int baseSize = specials.Count + 256;
        if (options.VocabSize < baseSize)
            throw new ArgumentException($"a vocabulary of {options.VocabSize} cannot hold {specials.Count} special tokens and the 256 byte tokens");
        if (options.MinPairCount < 1) throw new ArgumentException("MinPairCount must be at least 1");
        if (!Enum.IsDefined(options.Numbers)) throw new ArgumentException($"unknown number split {(int)options.Numbers}");

        var clock = Stopwatch.StartNew();
        var (wordCounts, bytes, pieces) = CountPieces(texts, specials, options.Numbers);

        var tokens = new List<string>(options.VocabSize);
        tokens.AddRange(specials);
        for (int b = 0; b < 256; b++) tokens.Add(ByteLevelAlphabet.CharOfByte[b].ToString());
        // Learned tokens only: special tokens live apart as added tokens (a learned token may even spell one).
        var idOfToken = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = specials.Count; i < tokens.Count; i++) idOfToken.Add(tokens[i], i);

        // Distinct pieces in a fixed order (ordinal), each as byte-token ids, so training never depends on hash order.
        var distinct = wordCounts.Keys.Order(StringComparer.Ordinal).ToArray();
        var words = new int[distinct.Length][];
        var wordLengths = new int[distinct.Length];
        var counts = new long[distinct.Length];
        var buffer = new byte[64];
        for (int w = 0; w < distinct.Length; w++)
        {
            int n = Encoding.UTF8.GetByteCount(distinct[w]);
            if (n > buffer.Length) buffer = new byte[n * 2];
            Encoding.UTF8.GetBytes(distinct[w], buffer);
            var symbols = new int[n];
            for (int i = 0; i < n; i++) symbols[i] = specials.Count + buffer[i];
            words[w] = symbols;
            wordLengths[w] = n;
            counts[w] = wordCounts[distinct[w]];
        }

        var pairs = new Dictionary<long, PairStats>();
        for (int w = 0; w < words.Length; w++)
            for (int i = 0; i + 1 < wordLengths[w]; i++)
            {
                long key = Key(words[w][i], words[w][i + 1]);
                if (!pairs.TryGetValue(key, out var stats)) pairs[key] = stats = new PairStats();
                stats.Count += counts[w];
                if (stats.Words.Count == 0 || stats.Words[^1] != w) stats.Words.Add(w);
            }
        // Max count first; among equal counts the lower (left, right) ids. Entries go stale when counts change: a popped
        // entry whose count is out of date is pushed back with the current count (counts that grow are pushed when they grow).
        var queue = new PriorityQueue<long, (long NegativeCount, int Left, int Right)>();
        foreach (var (key, stats) in pairs) queue.Enqueue(key, (-stats.Count, Left(key), Right(key)));

        var merges = new List<(string, string)>();
        var visited = new int[words.Length];
        int stamp = 0;
        var delta = new Dictionary<long, long>();
        var scratch = new int[64];
        while (tokens.Count < options.VocabSize && queue.TryDequeue(out long best, out var priority))
        {
            var bestStats = pairs[best];
            if (bestStats.Count != -priority.NegativeCount)
            {
                if (bestStats.Count > 0) queue.Enqueue(best, (-bestStats.Count, priority.Left, priority.Right));
                continue;
            }
            if (bestStats.Count < options.MinPairCount) break;
            int a = Left(best), b = Right(best);
            string merged = tokens[a] + tokens[b];
            if (!idOfToken.TryGetValue(merged, out int m))
            {
                m = tokens.Count;
                tokens.Add(merged);
                idOfToken.Add(merged, m);
            }
            merges.Add((tokens[a], tokens[b]));

            stamp++;
            var affected = bestStats.Words;
            bestStats.Words = [];
            foreach (int w in affected)
            {
                if (visited[w] == stamp) continue;
                visited[w] = stamp;
                var symbols = words[w];
                int length = wordLengths[w];
                if (scratch.Length < length) scratch = new int[length * 2];
                int newLength = 0;
                bool changed = false;
                for (int i = 0; i < length;)
                {
                    if (i + 1 < length && symbols[i] == a && symbols[i + 1] == b) { scratch[newLength++] = m; i += 2; changed = true; }
                    else scratch[newLength++] = symbols[i++];
                }
                if (!changed) continue; // a stale entry: the pair left this word in an earlier merge
                long c = counts[w];
                delta.Clear();
                for (int i = 0; i + 1 < length; i++) Add(delta, Key(symbols[i], symbols[i + 1]), -c);
                for (int i = 0; i + 1 < newLength; i++) Add(delta, Key(scratch[i], scratch[i + 1]), c);
                Array.Copy(scratch, symbols, newLength);
                wordLengths[w] = newLength;
                foreach (var (key, change) in delta)
                {
                    if (change == 0) continue;
                    if (!pairs.TryGetValue(key, out var stats)) pairs[key] = stats = new PairStats();
                    stats.Count += change;
                    if (change > 0)
                    {
                        stats.Words.Add(w);
                        queue.Enqueue(key, (-stats.Count, Left(key), Right(key)));
                    }
                }
            }
        }
        return new BpeVocabulary(tokens, merges, specials.Count, bytes, pieces, distinct.Length, clock.Elapsed);
    }

    sealed class PairStats
    {
        public long Count;
        public List<int> Words = [];
    }

    static long Key(int left, int right) => ((long)left << 32) | (uint)right;
    static int Left(long key) => (int)(key >> 32);
    static int Right(long key) => (int)(uint)key;
    static void Add(Dictionary<long, long> d, long key, long value) =>
        System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(d, key, out _) += value;

    /// <summary>Pre-tokenizer pieces and their counts; text between special tokens only (specials are matched whole at
    /// encoding time, so they never take part in merges).</summary>
    static (Dictionary<string, long> Counts, long Bytes, long Pieces) CountPieces(IEnumerable<string> texts, IReadOnlyList<string> specials, NumberSplit numbers)
    {
        var pattern = numbers == NumberSplit.Groups ? SplitPattern.Llama3 : SplitPattern.Gpt2;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var lookup = counts.GetAlternateLookup<ReadOnlySpan<char>>();
        long bytes = 0, pieces = 0;
        void CountSegment(ReadOnlySpan<char> text)
        {
            bytes += Encoding.UTF8.GetByteCount(text);
            if (numbers != NumberSplit.Digits) { CountSplit(text); return; }
            // As the Digits(individual_digits) pre-tokenizer cuts: each numeric code point alone, the runs between them
            // through the GPT-2 split.
            for (int pos = 0; pos < text.Length;)
            {
                int end = pos;
                while (end < text.Length)
                {
                    int cp = CharClass.CodePointAt(text, end, out int length);
                    if (CharClass.IsNumeric(cp)) break;
                    end += length;
                }
                if (end > pos) { CountSplit(text[pos..end]); pos = end; continue; }
                CharClass.CodePointAt(text, pos, out int digitLength);
                CountSplit(text.Slice(pos, digitLength));
                pos += digitLength;
            }
        }
        void CountSplit(ReadOnlySpan<char> text)
        {
            for (int pos = 0; pos < text.Length;)
            {
                int length = SplitPatterns.MatchLength(pattern, text, pos, foldLongS: true);
                var piece = text.Slice(pos, length);
                if (lookup.TryGetValue(piece, out long n)) lookup[piece] = n + 1;
                else lookup[piece] = 1;
                pieces++;
                pos += length;
            }
        }
        foreach (var text in texts)
        {
            if (text == null) throw new ArgumentException("a training text is null");
            int start = 0;
            while (start < text.Length)
            {
                // Leftmost special token, longest first at the same position (as the added-token matcher finds them).
                int at = -1, matchLength = 0;
                foreach (var special in specials)
                {
                    int i = text.IndexOf(special, start, StringComparison.Ordinal);
                    if (i >= 0 && (at < 0 || i < at || (i == at && special.Length > matchLength))) (at, matchLength) = (i, special.Length);
                }
                if (at < 0) { CountSegment(text.AsSpan(start)); break; }
                CountSegment(text.AsSpan(start, at - start));
                start = at + matchLength;
            }
        }
        return (counts, bytes, pieces);
    }

    /// <summary>Encodes texts (without BOS, special-token markers as plain text) and decodes them back: bytes per
    /// token, and how many texts did not come back exactly (a byte-level tokenizer should have none).</summary>
    public static CompressionReport Measure(Tokenizer tokenizer, IEnumerable<string> texts)
    {
        long bytes = 0, tokens = 0;
        int count = 0, failures = 0;
        foreach (var text in texts)
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
            count++;
            bytes += Encoding.UTF8.GetByteCount(text);
            tokens += ids.Length;
            if (tokenizer.Decode(ids) != text) failures++;
        }
        return new CompressionReport(count, bytes, tokens, failures);
    }

    // ---- writing ------------------------------------------------------------------------------------------------

    /// <summary>Writes tokenizer.json and tokenizer_config.json for a learned vocabulary.</summary>
    public static void Write(BpeVocabulary vocabulary, BpeTrainerOptions options, string outputDirectory)
    {
        Directory.CreateDirectory(outputDirectory);
        AtomicFile.Write(Path.Combine(outputDirectory, "tokenizer.json"), s => WriteTokenizerJson(s, vocabulary, options));
        AtomicFile.Write(Path.Combine(outputDirectory, "tokenizer_config.json"), s => WriteConfigJson(s, vocabulary, options));
    }

    // Readable byte-level tokens (Ġ rather than \u0120); the files are data, never embedded in HTML.
    static readonly JsonWriterOptions WriterOptions = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static void WriteTokenizerJson(Stream stream, BpeVocabulary v, BpeTrainerOptions options)
    {
        using var w = new Utf8JsonWriter(stream, WriterOptions);
        int bosId = IndexOf(v, options.BosToken);
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        for (int id = 0; id < v.SpecialTokenCount; id++)
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", v.Tokens[id]);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");
        w.WriteStartObject("pre_tokenizer");
        if (options.Numbers == NumberSplit.Digits)
        {
            w.WriteString("type", "Sequence");
            w.WriteStartArray("pretokenizers");
            w.WriteStartObject();
            w.WriteString("type", "Digits");
            w.WriteBoolean("individual_digits", true);
            w.WriteEndObject();
            w.WriteStartObject();
            WriteByteLevel(w);
            w.WriteEndObject();
            w.WriteEndArray();
        }
        else if (options.Numbers == NumberSplit.Groups)
        {
            // Llama 3's: the split by its regex, then byte-level without a second split.
            w.WriteString("type", "Sequence");
            w.WriteStartArray("pretokenizers");
            w.WriteStartObject();
            w.WriteString("type", "Split");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", SplitPatterns.Known.First(k => k.Pattern == SplitPattern.Llama3).Regex);
            w.WriteEndObject();
            w.WriteString("behavior", "Isolated");
            w.WriteBoolean("invert", false);
            w.WriteEndObject();
            w.WriteStartObject();
            WriteByteLevel(w, useRegex: false);
            w.WriteEndObject();
            w.WriteEndArray();
        }
        else WriteByteLevel(w);
        w.WriteEndObject();

        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        void Item(string kind, string id, int typeId)
        {
            w.WriteStartObject();
            w.WriteStartObject(kind);
            w.WriteString("id", id);
            w.WriteNumber("type_id", typeId);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteStartArray("single");
        Item("SpecialToken", options.BosToken, 0);
        Item("Sequence", "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        Item("SpecialToken", options.BosToken, 0);
        Item("Sequence", "A", 0);
        Item("SpecialToken", options.BosToken, 1);
        Item("Sequence", "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(options.BosToken);
        w.WriteString("id", options.BosToken);
        w.WriteStartArray("ids");
        w.WriteNumberValue(bosId);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(options.BosToken);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteStartObject("decoder");
        WriteByteLevel(w);
        w.WriteEndObject();

        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        // Llama 3's files look a whole pre-token up first; with its split, so do these (and llama.cpp's "llama-bpe").
        w.WriteBoolean("ignore_merges", options.Numbers == NumberSplit.Groups);
        w.WriteStartObject("vocab");
        // The byte and learned tokens; special tokens are added tokens only (as in Llama 3's tokenizer.json).
        for (int id = v.SpecialTokenCount; id < v.Tokens.Count; id++) w.WriteNumber(v.Tokens[id], id);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        // "left right" strings: byte-level tokens never contain a space (it is Ġ), and every tokenizers version reads these.
        foreach (var (left, right) in v.Merges) w.WriteStringValue($"{left} {right}");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    static void WriteByteLevel(Utf8JsonWriter w, bool useRegex = true)
    {
        w.WriteString("type", "ByteLevel");
        // No prefix space: the first word of a text is encoded as written, and decoding returns the text exactly.
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", useRegex);
    }

    static int IndexOf(BpeVocabulary v, string special)
    {
        for (int i = 0; i < v.SpecialTokenCount; i++)
            if (v.Tokens[i] == special) return i;
        throw new ArgumentException($"'{special}' is not one of the special tokens");
    }

    static void WriteConfigJson(Stream stream, BpeVocabulary v, BpeTrainerOptions options)
    {
        using var w = new Utf8JsonWriter(stream, WriterOptions);
        w.WriteStartObject();
        w.WriteBoolean("add_bos_token", true);
        w.WriteBoolean("add_eos_token", false);
        w.WriteString("bos_token", options.BosToken);
        w.WriteString("eos_token", options.EosToken);
        if (options.PadToken != null) w.WriteString("pad_token", options.PadToken);
        else w.WriteNull("pad_token");
        w.WriteNull("unk_token");
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        if (options.ChatTemplate != null) w.WriteString("chat_template", options.ChatTemplate);
        w.WriteStartObject("added_tokens_decoder");
        for (int id = 0; id < v.SpecialTokenCount; id++)
        {
            w.WriteStartObject(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("content", v.Tokens[id]);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
