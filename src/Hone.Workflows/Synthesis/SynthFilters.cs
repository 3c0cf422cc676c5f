using Hone.DataTools;

namespace Hone.Synthesis;

/// <summary>What an example duplicates: exact (equal after normalization) or near (MinHash Jaccard estimate at or
/// over the threshold); Of names the seed ("seed ID") or the kept example ("example N").</summary>
public sealed record DuplicateMatch(DuplicateKind Kind, bool OfSeed, string Of, double Jaccard);

/// <summary>
/// Deduplication in memory, with <c>hone data dedup</c>'s parts: exact duplicates by the content hash of the text
/// normalized as decontamination sees words (lowercased, punctuation deleted, whitespace runs to one space); near
/// duplicates by MinHash signatures (<see cref="MinHasher"/>) whose LSH bands (<see cref="LshBands.Choose"/>) propose
/// candidates that are verified against the threshold. As there, a text is compared with what was kept only. A text
/// with no shingle (shorter than the shingle) is compared exactly only.
/// </summary>
public sealed class DuplicateIndex
{
    readonly Dictionary<UInt128, (bool Seed, string Who)> _exact = [];
    readonly MinHasher? _hasher;
    readonly MinHasher.Scratch _scratch = new();
    readonly LshBands _bands;
    readonly double _threshold;
    readonly List<(uint[] Signature, bool Seed, string Who)> _kept = [];
    readonly Dictionary<ulong, List<int>> _bandIndex = [];

    /// <param name="threshold">near-duplicate Jaccard threshold; 1 or more: exact duplicates only</param>
    public DuplicateIndex(double threshold, int ngram, ShingleKind shingle, ulong seed, int numPerm = 128)
    {
        _threshold = threshold;
        if (threshold < 1)
        {
            _hasher = new MinHasher(numPerm, ngram, shingle, seed);
            _bands = LshBands.Choose(threshold, numPerm);
        }
    }

    public static string Normalize(string text) => string.Join(' ', Words.Of(text));

    public DuplicateMatch? Find(string text)
    {
        if (_exact.TryGetValue(TextProfile.ContentHash(Normalize(text)), out var e)) return new DuplicateMatch(DuplicateKind.Exact, e.Seed, e.Who, 1);
        if (_hasher == null) return null;
        var signature = new uint[_hasher.NumPerm];
        if (_hasher.Signature(text, signature, _scratch) == 0) return null;
        DuplicateMatch? best = null;
        var seen = new HashSet<int>();
        for (int b = 0; b < _bands.Bands; b++)
        {
            if (!_bandIndex.TryGetValue(_bands.Key(signature, b), out var ids)) continue;
            foreach (int id in ids)
            {
                if (!seen.Add(id)) continue;
                double j = MinHasher.Estimate(signature, _kept[id].Signature);
                if (j >= _threshold && (best == null || j > best.Jaccard)) best = new DuplicateMatch(DuplicateKind.Near, _kept[id].Seed, _kept[id].Who, j);
            }
        }
        return best;
    }

    public void Add(string text, bool seed, string who)
    {
        _exact.TryAdd(TextProfile.ContentHash(Normalize(text)), (seed, who));
        if (_hasher == null) return;
        var signature = new uint[_hasher.NumPerm];
        if (_hasher.Signature(text, signature, _scratch) == 0) return;
        int id = _kept.Count;
        _kept.Add((signature, seed, who));
        for (int b = 0; b < _bands.Bands; b++)
        {
            ulong key = _bands.Key(signature, b);
            if (!_bandIndex.TryGetValue(key, out var ids)) _bandIndex[key] = ids = [];
            ids.Add(id);
        }
    }
}

/// <summary>Decontamination against evaluation sets, <c>hone data decontaminate</c>'s rule (<see cref="EvalNgrams"/>):
/// an example sharing any word n-gram with an evaluation file is dropped. A text shorter than n words has no n-gram, so
/// evaluation texts shorter than n words are also kept whole (normalized as <see cref="Words"/> sees them) and an
/// instruction equal to one of them is dropped too: short evaluation questions are caught without lowering n.</summary>
public sealed class ContaminationCheck
{
    readonly EvalNgrams _ngrams;
    readonly EvalNgrams.NgramScratch _scratch = new();
    readonly Dictionary<string, string> _shortTexts = new(StringComparer.Ordinal);

    public ContaminationCheck(IReadOnlyList<string> files, int n)
    {
        if (n < 1) throw new ArgumentException($"--decontaminate-ngram must be at least 1, found {n}");
        _ngrams = new EvalNgrams(n);
        foreach (var f in files)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"--decontaminate {f}: evaluation file not found", f);
            _ngrams.Add(f, (text, line) =>
            {
                var words = Words.Of(text);
                if (words.Count > 0 && words.Count < n) _shortTexts.TryAdd(string.Join(' ', words), $"{f}:{line}");
            });
        }
    }

    public IReadOnlyList<EvalSetInfo> Sets => _ngrams.Sets;

    /// <summary>Null when clean; else the evaluation file, its line and the first shared n-gram (or the whole short text
    /// the instruction equals).</summary>
    public string? Match(string instruction, string answer)
    {
        if (_shortTexts.TryGetValue(DuplicateIndex.Normalize(instruction), out var at)) return $"{at} (the whole text)";
        string text = instruction + "\n" + answer;
        var m = _ngrams.Match(text, _scratch);
        if (m.Matches == 0) return null;
        return $"{Sets[m.Set].Path}:{m.EvalLine} \"{_ngrams.NgramText(_scratch, m.FirstWord)}\"";
    }
}
