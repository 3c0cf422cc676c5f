using Hone.Tensors;
using System.Numerics;
namespace Hone.Inference;

/// <summary>Sampling settings. Temperature 0 means greedy (argmax). A disabled stage: TopK ≤ 0, TopP ≥ 1, MinP ≤ 0,
/// RepetitionPenalty = 1, PresencePenalty = FrequencyPenalty = 0.</summary>
/// <param name="PenaltyWindow">how many of the most recent tokens the penalties look at (0 = none, -1 = all)</param>
public sealed record SamplerOptions(
    float Temperature = 0.8f, int TopK = 40, float TopP = 0.95f, float MinP = 0.05f,
    float RepetitionPenalty = 1f, float PresencePenalty = 0f, float FrequencyPenalty = 0f, int PenaltyWindow = 64, ulong Seed = 0)
{
    public static SamplerOptions Greedy { get; } = new(Temperature: 0);

    public void Validate()
    {
        if (Temperature < 0 || !float.IsFinite(Temperature)) throw new ArgumentException($"temperature must be ≥ 0 and finite, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top-k must be ≥ 0 (0 = off), got {TopK}");
        if (PenaltyWindow < -1) throw new ArgumentException($"repeat-last-n must be ≥ -1 (-1 = all), got {PenaltyWindow}");
        if (!float.IsFinite(PresencePenalty)) throw new ArgumentException($"presence penalty must be finite, got {PresencePenalty}");
        if (!float.IsFinite(FrequencyPenalty)) throw new ArgumentException($"frequency penalty must be finite, got {FrequencyPenalty}");
        if (TopP is <= 0 or > 1 || float.IsNaN(TopP)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (MinP is < 0 or >= 1 || float.IsNaN(MinP)) throw new ArgumentException($"min-p must be in [0, 1), got {MinP}");
        if (RepetitionPenalty <= 0 || !float.IsFinite(RepetitionPenalty)) throw new ArgumentException($"repetition penalty must be > 0 and finite, got {RepetitionPenalty}");
    }
}

/// <summary>
/// The sampler chain, in llama.cpp's order: penalties (repetition, presence, frequency over the recent window) →
/// top-k → top-p → min-p → temperature → draw. Deterministic for a seed: its random numbers come from our own
/// xoshiro256** generator, not from the runtime, so a seed means the same thing on every machine and version.
/// </summary>
public sealed class Sampler
{
    readonly SamplerOptions _options;
    readonly Xoshiro256 _random;
    readonly List<int> _history = new();
    readonly Dictionary<int, int> _counts = new();
    (int Id, float Logit)[] _candidates = [];

    public Sampler(SamplerOptions options) : this(options, null) { }

    /// <param name="candidates">a buffer of at least V entries to reuse (a batched engine keeps one per slot, so a
    /// request does not allocate one of the vocabulary's size); null allocates on first use</param>
    public Sampler(SamplerOptions options, (int Id, float Logit)[]? candidates)
    {
        options.Validate();
        _options = options;
        _random = new Xoshiro256(options.Seed);
        _candidates = candidates ?? [];
    }

    /// <summary>Record a token that is now part of the context (prompt or generated) for the penalties.</summary>
    public void Accept(int token) => _history.Add(token);

    public void Reset() => _history.Clear();

    /// <summary>Choose the next token from one row of logits [V]. Does not modify <paramref name="logits"/>. Throws
    /// <see cref="Model.NonFiniteException"/> when a logit is NaN or infinite (argmax over NaN would quietly pick token 0):
    /// the copy into the candidates checks them, no extra pass.</summary>
    public int Sample(ReadOnlySpan<float> logits) => Sample(logits, default);

    /// <summary>Choose the next token among the allowed ones: bit i of <paramref name="allowed"/> set when id i may be
    /// chosen (a grammar's mask); every stage of the chain then works on those tokens only. An empty span allows all.</summary>
    /// <exception cref="InvalidOperationException">the mask allows no token of these logits</exception>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<ulong> allowed)
    {
        int v = logits.Length;
        if (allowed.IsEmpty && _options.Temperature == 0 && !PenaltiesApply && v > 0)
        {
            // Plain greedy: the first id of the largest logit, read from the logits in place (a batched step samples
            // every sequence on one thread, so a pass over the vocabulary per sequence adds up).
            int best = GreedyArgMax(logits, out bool allFinite);
            if (!allFinite) throw new Model.NonFiniteException("the logits are not finite (NaN or infinity)", null, []);
            return best;
        }
        if (_candidates.Length < v) _candidates = new (int, float)[v];
        var c = _candidates.AsSpan(0, v);
        bool finite = true;
        if (allowed.IsEmpty)
        {
            for (int i = 0; i < v; i++)
            {
                float logit = logits[i];
                finite &= float.IsFinite(logit);
                c[i] = (i, logit);
            }
        }
        else
        {
            int n = 0;
            for (int w = 0; w < allowed.Length && w * 64 < v; w++)
                for (ulong bits = allowed[w]; bits != 0; bits &= bits - 1)
                {
                    int i = w * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits);
                    if (i >= v) break;
                    float logit = logits[i];
                    finite &= float.IsFinite(logit);
                    c[n++] = (i, logit);
                }
            if (n == 0) throw new InvalidOperationException("the grammar allows no token here (the vocabulary cannot write what it needs next)");
            c = c[..n];
        }
        if (!finite) throw new Model.NonFiniteException("the logits are not finite (NaN or infinity)", null, []);
        return Choose(c);
    }

    int Choose(Span<(int Id, float Logit)> c)
    {
        var o = _options;
        ApplyPenalties(c);
        if (o.Temperature == 0) return ArgMax(c);

        int n = c.Length;
        if (o.TopK > 0 && o.TopK < n) { PartialSortDescending(c, o.TopK); n = o.TopK; c = c[..n]; }
        else c.Sort((a, b) => b.Logit.CompareTo(a.Logit));

        // Probabilities at temperature 1 decide the top-p and min-p cut (as llama.cpp does before temperature).
        float max = c[0].Logit;
        double sum = 0;
        var p = new double[n];
        for (int i = 0; i < n; i++) { p[i] = Math.Exp(c[i].Logit - max); sum += p[i]; }
        int keep = n;
        if (o.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < n; i++) { cumulative += p[i] / sum; if (cumulative >= o.TopP) { keep = i + 1; break; } }
        }
        if (o.MinP > 0)
        {
            double threshold = o.MinP * p[0];
            int k = 1;
            while (k < keep && p[k] >= threshold) k++;
            keep = k;
        }
        double total = 0;
        var q = new double[keep];
        for (int i = 0; i < keep; i++) { q[i] = Math.Exp((c[i].Logit - max) / o.Temperature); total += q[i]; }
        double r = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++) { r -= q[i]; if (r < 0) return c[i].Id; }
        return c[keep - 1].Id;
    }

    /// <summary>Whether the penalties would change any logit now.</summary>
    bool PenaltiesApply
    {
        get
        {
            var o = _options;
            return !(o.RepetitionPenalty == 1 && o.PresencePenalty == 0 && o.FrequencyPenalty == 0) && o.PenaltyWindow != 0 && _history.Count != 0;
        }
    }

    void ApplyPenalties(Span<(int Id, float Logit)> c)
    {
        var o = _options;
        if (!PenaltiesApply) return;
        int from = o.PenaltyWindow < 0 ? 0 : Math.Max(0, _history.Count - o.PenaltyWindow);
        _counts.Clear();
        for (int i = from; i < _history.Count; i++) _counts[_history[i]] = _counts.GetValueOrDefault(_history[i]) + 1;
        // Candidates are in id order; with a mask some ids are missing, so find each by binary search.
        foreach (var (id, count) in _counts)
        {
            int at = c.Length > id && c[id].Id == id ? id : BinarySearch(c, id);
            if (at < 0) continue;
            float l = c[at].Logit;
            // CTRL-style repetition penalty: shrink positive logits, grow negative ones.
            l = l > 0 ? l / o.RepetitionPenalty : l * o.RepetitionPenalty;
            l -= count * o.FrequencyPenalty + o.PresencePenalty;
            c[at] = (id, l);
        }
    }

    static int BinarySearch(Span<(int Id, float Logit)> c, int id)
    {
        int lo = 0, hi = c.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (c[mid].Id == id) return mid;
            if (c[mid].Id < id) lo = mid + 1; else hi = mid - 1;
        }
        return -1;
    }

    /// <summary>The first index of the largest value (as <see cref="ArgMax"/> picks it: values compare by ==, so −0 and
    /// +0 tie), and whether every value is finite; the maximum and the finiteness in one vector pass, the index in a
    /// second that stops at it.</summary>
    internal static int GreedyArgMax(ReadOnlySpan<float> x, out bool allFinite)
    {
        int n = x.Length, w = Vector<float>.Count, i = 0;
        float m = float.NegativeInfinity;
        bool finite = true;
        if (n >= w)
        {
            var max = new Vector<float>(x);
            var bad = Vector<int>.Zero;
            for (; i + w <= n; i += w)
            {
                var v = new Vector<float>(x[i..]);
                bad |= ~Vector.Equals(v - v, Vector<float>.Zero); // x − x is 0 exactly when x is finite
                max = Vector.Max(max, v);
            }
            for (int lane = 0; lane < w; lane++) m = Math.Max(m, max[lane]);
            finite = bad == Vector<int>.Zero;
        }
        for (; i < n; i++)
        {
            finite &= float.IsFinite(x[i]);
            m = Math.Max(m, x[i]);
        }
        allFinite = finite;
        if (!finite) return 0;
        var target = new Vector<float>(m);
        for (i = 0; i + w <= n; i += w)
            if (Vector.EqualsAny(new Vector<float>(x[i..]), target)) break;
        for (; i < n; i++) if (x[i] == m) return i;
        return 0;
    }

    static int ArgMax(Span<(int Id, float Logit)> c)
    {
        int best = 0;
        for (int i = 1; i < c.Length; i++) if (c[i].Logit > c[best].Logit) best = i;
        return c[best].Id;
    }

    /// <summary>Move the k largest logits to the front, sorted descending (ties by lower id first).</summary>
    static void PartialSortDescending(Span<(int Id, float Logit)> c, int k)
    {
        // A min-heap of the best k seen so far: O(V log k).
        var heap = new PriorityQueue<(int Id, float Logit), (float, int)>(k + 1);
        foreach (var x in c)
        {
            heap.Enqueue(x, (x.Logit, -x.Id));
            if (heap.Count > k) heap.Dequeue();
        }
        for (int i = k - 1; i >= 0; i--) c[i] = heap.Dequeue();
    }
}
