using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.DataTools;

/// <summary>How an evaluation set was read, and what it contributed.</summary>
/// <param name="Segments">pieces of text n-grams were taken from (strings, CSV rows, paragraphs)</param>
/// <param name="ShortSegments">segments with fewer than n words: they have no n-gram and cannot be matched</param>
public sealed record EvalSetInfo(string Path, string Format, long Segments, long ShortSegments, long Ngrams);

/// <summary>
/// The n-grams of evaluation sets, as 64-bit hashes of normalized word sequences (<see cref="Words"/>), each with the
/// set and line it first came from. Formats, by extension (a .gz is decompressed first):
/// .jsonl/.json — every string value of every record, each a segment; .csv — each row a segment, cells joined by
/// spaces (the MMLU layout, six cells ending in an answer letter A–D, leaves the letter out); anything else — plain
/// text, paragraphs separated by blank lines. Memory: about 40 bytes an evaluation n-gram.
/// </summary>
public sealed class EvalNgrams
{
    readonly Dictionary<ulong, (int Set, long Line)> _ngrams = new();
    readonly ulong _seed;
    readonly List<EvalSetInfo> _sets = [];

    public int N { get; }
    public IReadOnlyList<EvalSetInfo> Sets => _sets;
    public int Count => _ngrams.Count;

    public EvalNgrams(int n, ulong seed = 0x5EED_DEC0_47A1_1A7EUL)
    {
        if (n < 1) throw new ArgumentException($"--ngram must be positive, got {n}");
        N = n;
        _seed = seed;
    }

    /// <param name="segment">called with each segment and its line (for callers that also match whole texts)</param>
    public void Add(string path, Action<string, long>? segment = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such evaluation file", path);
        string name = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
        string ext = System.IO.Path.GetExtension(name).ToLowerInvariant();
        using var reader = TextFile.Open(path);
        int set = _sets.Count;
        long segments = 0, shortSegments = 0, before = _ngrams.Count;
        var scratch = new NgramScratch();
        void Segment(string text, long line)
        {
            segments++;
            segment?.Invoke(text, line);
            int added = 0;
            foreach (var (hash, _) in Ngrams(text, scratch))
            {
                _ngrams.TryAdd(hash, (set, line));
                added++;
            }
            if (added == 0) shortSegments++;
        }
        string format;
        switch (ext)
        {
            case ".jsonl" or ".json":
                format = "json";
                if (ext == ".json" && reader.Peek() == '[')
                {
                    JsonArray root;
                    try { root = JsonNode.Parse(reader.ReadToEnd(), documentOptions: JsonLines.DocumentOptions) as JsonArray ?? throw new DataFormatException(path, 1, "expected a JSON array"); }
                    catch (JsonException e) { throw new DataFormatException(path, (e.LineNumber ?? 0) + 1, $"not valid JSON: {JsonLines.Message(e)}"); }
                    for (int i = 0; i < root.Count; i++) foreach (var s in Strings(root[i])) Segment(s, i + 1);
                    break;
                }
                long number = 0;
                for (string? l; (l = reader.ReadLine()) != null;)
                {
                    number++;
                    if (string.IsNullOrWhiteSpace(l)) continue;
                    JsonNode? node;
                    try { node = JsonNode.Parse(l, documentOptions: JsonLines.DocumentOptions); }
                    catch (JsonException e) { throw new DataFormatException(path, number, $"not valid JSON: {JsonLines.Message(e)}"); }
                    foreach (var s in Strings(node)) Segment(s, number);
                }
                break;
            case ".csv":
                format = "csv";
                foreach (var (line, cells) in Csv.Rows(reader, path))
                {
                    bool mmlu = cells.Count == 6 && cells[5].Trim() is "A" or "B" or "C" or "D";
                    Segment(string.Join(' ', mmlu ? cells.Take(5) : cells), line);
                }
                break;
            default:
                format = "text";
                var paragraph = new StringBuilder();
                long start = 1, current = 0;
                for (string? l; (l = reader.ReadLine()) != null;)
                {
                    current++;
                    if (l.Trim().Length == 0)
                    {
                        if (paragraph.Length > 0) Segment(paragraph.ToString(), start);
                        paragraph.Clear();
                        start = current + 1;
                        continue;
                    }
                    paragraph.Append(l).Append('\n');
                }
                if (paragraph.Length > 0) Segment(paragraph.ToString(), start);
                break;
        }
        if (segments == 0) throw new DataFormatException(path, 0, "the evaluation set holds no text");
        _sets.Add(new EvalSetInfo(path, format, segments, shortSegments, _ngrams.Count - before));
    }

    static IEnumerable<string> Strings(JsonNode? node)
    {
        switch (node)
        {
            case JsonValue v when v.TryGetValue(out string? s): yield return s; break;
            case JsonObject o: foreach (var (_, child) in o) foreach (var s in Strings(child)) yield return s; break;
            case JsonArray a: foreach (var child in a) foreach (var s in Strings(child)) yield return s; break;
        }
    }

    /// <summary>Per-thread working memory for n-gram hashing.</summary>
    public sealed class NgramScratch
    {
        internal char[] Chars = new char[256];
        internal readonly List<(int Start, int Length)> Words = [];
        internal ulong[] Hashes = new ulong[64];
    }

    /// <summary>The hashes of a text's word n-grams with the index of each one's first word (in <see cref="Words"/>
    /// order). Rolling: H = Σ hash(wordᵢ)·Bⁿ⁻¹⁻ⁱ mod 2⁶⁴ over the window, then mixed.</summary>
    public IEnumerable<(ulong Hash, int FirstWord)> Ngrams(string text, NgramScratch scratch)
    {
        int count = Words.Split(text, ref scratch.Chars, scratch.Words);
        if (count < N) yield break;
        if (scratch.Hashes.Length < count) scratch.Hashes = new ulong[Math.Max(count, scratch.Hashes.Length * 2)];
        for (int w = 0; w < count; w++) scratch.Hashes[w] = DataHash.HashWord(scratch.Chars.AsSpan(scratch.Words[w].Start, scratch.Words[w].Length), _seed);
        const ulong b = 0x100000001B3UL;
        ulong top = 1;
        for (int i = 1; i < N; i++) top *= b;
        ulong h = 0;
        for (int w = 0; w < N; w++) h = h * b + scratch.Hashes[w];
        yield return (DataHash.Mix(h), 0);
        for (int w = N; w < count; w++)
        {
            h = (h - scratch.Hashes[w - N] * top) * b + scratch.Hashes[w];
            yield return (DataHash.Mix(h), w - N + 1);
        }
    }

    /// <summary>The first n-gram of <paramref name="text"/> found in the evaluation sets, the number found, and a bit
    /// mask of the sets matched (sets past the 64th share the last bit).</summary>
    public (int FirstWord, int Set, long EvalLine, int Matches, ulong SetMask) Match(string text, NgramScratch scratch)
    {
        int first = -1, set = -1, matches = 0;
        long evalLine = 0;
        ulong mask = 0;
        foreach (var (hash, word) in Ngrams(text, scratch))
        {
            if (!_ngrams.TryGetValue(hash, out var where)) continue;
            matches++;
            mask |= 1UL << Math.Min(where.Set, 63);
            if (first < 0) { first = word; set = where.Set; evalLine = where.Line; }
        }
        return (first, set, evalLine, matches, mask);
    }

    /// <summary>The normalized n-gram starting at word <paramref name="first"/> of the text last matched with <paramref name="scratch"/>.</summary>
    public string NgramText(NgramScratch scratch, int first) =>
        string.Join(' ', Enumerable.Range(first, N).Select(w => new string(scratch.Chars, scratch.Words[w].Start, scratch.Words[w].Length)));
}
