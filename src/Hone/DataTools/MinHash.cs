using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Hone.Tensors;

namespace Hone.DataTools;

/// <summary>What a near-duplicate shingle is made of.</summary>
public enum ShingleKind
{
    /// <summary>n consecutive words, normalized as for decontamination (lowercased, punctuation deleted).</summary>
    Word,
    /// <summary>n consecutive characters of the lowercased text with whitespace runs collapsed to one space.</summary>
    Character,
}

/// <summary>Seeded 64-bit hashing shared by the data tools (stable across runs and machines).</summary>
public static class DataHash
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mix(ulong x)
    {
        // MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
        x ^= x >> 33; x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53UL;
        return x ^ (x >> 33);
    }

    public static ulong Hash(ReadOnlySpan<char> text, ulong seed) => Hash(MemoryMarshal.AsBytes(text), seed);

    public static ulong Hash(ReadOnlySpan<byte> data, ulong seed)
    {
        ulong h = Mix(seed ^ ((ulong)data.Length * 0x9E3779B97F4A7C15UL));
        while (data.Length >= 8)
        {
            h = BitOperations.RotateLeft(h ^ Mix(BinaryPrimitives.ReadUInt64LittleEndian(data)), 27) * 0x9E3779B97F4A7C15UL + 0x632BE59BD9B4E019UL;
            data = data[8..];
        }
        if (data.Length > 0)
        {
            ulong tail = 0;
            for (int i = 0; i < data.Length; i++) tail |= (ulong)data[i] << (8 * i);
            h = BitOperations.RotateLeft(h ^ Mix(tail ^ 0xA0761D6478BD642FUL), 27) * 0x9E3779B97F4A7C15UL;
        }
        return Mix(h);
    }

    /// <summary>A cheaper hash for short strings (words): a multiply-rotate pass over 8-byte blocks, then one full mix.</summary>
    public static ulong HashWord(ReadOnlySpan<char> word, ulong seed)
    {
        var data = MemoryMarshal.AsBytes(word);
        ulong h = seed ^ ((ulong)data.Length * 0x9E3779B97F4A7C15UL);
        while (data.Length >= 8)
        {
            h = BitOperations.RotateLeft((h ^ BinaryPrimitives.ReadUInt64LittleEndian(data)) * 0xC2B2AE3D27D4EB4FUL, 31);
            data = data[8..];
        }
        if (data.Length > 0)
        {
            ulong tail = 0;
            for (int i = 0; i < data.Length; i++) tail |= (ulong)data[i] << (8 * i);
            h = BitOperations.RotateLeft((h ^ tail) * 0x165667B19E3779F9UL, 31);
        }
        return Mix(h);
    }

    /// <summary>A uniform number in [0, 1) from a 64-bit hash.</summary>
    public static double Unit(ulong hash) => (hash >> 11) * (1.0 / (1UL << 53));
}

/// <summary>
/// MinHash signatures: each text becomes the set of its shingles; each shingle is hashed once to 32 bits (seeded),
/// and permutation i maps it to fmix32(x ⊕ sᵢ) — a bijection of 32-bit values with full avalanche, so with seeded
/// random sᵢ the K minima behave as K independent min-wise hashes. The probability that two texts agree in one
/// position is their Jaccard similarity J, so the share of agreeing positions estimates J with standard error
/// √(J(1−J)/K). Computed K lanes at a time with SIMD.
/// </summary>
public sealed class MinHasher
{
    readonly uint[] _seeds; // padded to a whole number of vectors
    readonly ulong _shingleSeed;

    public int NumPerm { get; }
    public int Ngram { get; }
    public ShingleKind Kind { get; }

    public MinHasher(int numPerm, int ngram, ShingleKind kind, ulong seed)
    {
        if (numPerm < 1) throw new ArgumentException($"--num-perm must be positive, got {numPerm}");
        if (ngram < 1) throw new ArgumentException($"--ngram must be positive, got {ngram}");
        NumPerm = numPerm; Ngram = ngram; Kind = kind;
        int lanes = Math.Max(Vector<uint>.Count, Vector512<uint>.Count); // whole vectors of either width
        _seeds = new uint[(numPerm + lanes - 1) / lanes * lanes];
        var rng = new Xoshiro256(seed);
        for (int i = 0; i < _seeds.Length; i++) _seeds[i] = (uint)(rng.NextUInt64() >> 32);
        _shingleSeed = rng.NextUInt64();
    }

    /// <summary>Per-thread working memory.</summary>
    public sealed class Scratch
    {
        internal char[] Chars = new char[256];
        internal readonly List<(int Start, int Length)> Words = [];
        internal ulong[] WordHashes = new ulong[64];
        internal uint[] Minima = [];
    }

    /// <summary>Fill <paramref name="signature"/> (NumPerm values) and return the number of shingles; with none
    /// (an empty text) the signature is all 0xFFFFFFFF and must not be compared.</summary>
    public int Signature(string text, Span<uint> signature, Scratch scratch)
    {
        if (scratch.Minima.Length != _seeds.Length) scratch.Minima = new uint[_seeds.Length];
        var minima = scratch.Minima.AsSpan();
        minima.Fill(uint.MaxValue);
        int shingles = 0;
        if (Kind == ShingleKind.Word)
        {
            int count = Words.Split(text, ref scratch.Chars, scratch.Words);
            if (scratch.WordHashes.Length < count) scratch.WordHashes = new ulong[Math.Max(count, scratch.WordHashes.Length * 2)];
            var hashes = scratch.WordHashes.AsSpan(0, count);
            for (int w = 0; w < count; w++) hashes[w] = DataHash.HashWord(scratch.Chars.AsSpan(scratch.Words[w].Start, scratch.Words[w].Length), _shingleSeed);
            // A text shorter than n words is one shingle of all its words. Shingle hashes roll: Σ hash(wordᵢ)·Bⁿ⁻¹⁻ⁱ, then mixed.
            int n = Math.Min(Ngram, count);
            ulong top = 1, h = 0;
            for (int i = 1; i < n; i++) top *= RollingBase;
            for (int w = 0; w < count; w++)
            {
                if (w >= n) h -= hashes[w - n] * top;
                h = h * RollingBase + hashes[w];
                if (w < n - 1) continue;
                ulong mixed = DataHash.Mix(h);
                Add((uint)(mixed ^ (mixed >> 32)), minima);
                shingles++;
            }
        }
        else
        {
            int length = Normalize(text, ref scratch.Chars);
            var chars = scratch.Chars.AsSpan(0, length);
            int n = Math.Min(Ngram, length);
            for (int start = 0; n > 0 && start + n <= length; start++, shingles++)
            {
                ulong h = DataHash.Hash(chars.Slice(start, n), _shingleSeed);
                Add((uint)(h ^ (h >> 32)), minima);
            }
        }
        minima[..NumPerm].CopyTo(signature);
        return shingles;
    }

    const ulong RollingBase = 0x100000001B3UL;

    void Add(uint shingle, Span<uint> minima)
    {
        if (Vector512.IsHardwareAccelerated) { Add512(shingle, minima); return; }
        var mins = MemoryMarshal.Cast<uint, Vector<uint>>(minima);
        var seeds = MemoryMarshal.Cast<uint, Vector<uint>>(_seeds.AsSpan());
        var x = new Vector<uint>(shingle);
        var m1 = new Vector<uint>(0x85ebca6bu);
        var m2 = new Vector<uint>(0xc2b2ae35u);
        for (int v = 0; v < mins.Length; v++)
        {
            // MurmurHash3's fmix32 of (x ⊕ seed), lane by lane.
            var h = x ^ seeds[v];
            h ^= Vector.ShiftRightLogical(h, 16);
            h *= m1;
            h ^= Vector.ShiftRightLogical(h, 13);
            h *= m2;
            h ^= Vector.ShiftRightLogical(h, 16);
            mins[v] = Vector.Min(mins[v], h);
        }
    }

    void Add512(uint shingle, Span<uint> minima)
    {
        var mins = MemoryMarshal.Cast<uint, Vector512<uint>>(minima);
        var seeds = MemoryMarshal.Cast<uint, Vector512<uint>>(_seeds.AsSpan());
        var x = Vector512.Create(shingle);
        var m1 = Vector512.Create(0x85ebca6bu);
        var m2 = Vector512.Create(0xc2b2ae35u);
        for (int v = 0; v < mins.Length; v++)
        {
            var h = x ^ seeds[v];
            h ^= Vector512.ShiftRightLogical(h, 16);
            h *= m1;
            h ^= Vector512.ShiftRightLogical(h, 13);
            h *= m2;
            h ^= Vector512.ShiftRightLogical(h, 16);
            mins[v] = Vector512.Min(mins[v], h);
        }
    }

    /// <summary>Lowercase, whitespace runs to one space, trimmed (the character-shingle view of a text).</summary>
    static int Normalize(string text, ref char[] buffer)
    {
        if (buffer.Length < text.Length) buffer = new char[Math.Max(text.Length, buffer.Length * 2)];
        int n = 0;
        bool space = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c)) { space = n > 0; continue; }
            if (space) { buffer[n++] = ' '; space = false; }
            buffer[n++] = char.ToLowerInvariant(c);
        }
        return n;
    }

    /// <summary>The share of equal positions of two signatures: the MinHash estimate of their Jaccard similarity.</summary>
    public static double Estimate(ReadOnlySpan<uint> a, ReadOnlySpan<uint> b)
    {
        int equal = 0;
        for (int i = 0; i < a.Length; i++) if (a[i] == b[i]) equal++;
        return (double)equal / a.Length;
    }
}

/// <summary>
/// Locality-sensitive hashing over MinHash signatures: the signature is cut into b bands of r rows; two texts become
/// candidates when all r rows of some band agree, which happens with probability P(J) = 1 − (1 − Jʳ)ᵇ — an S-curve
/// rising steepest near (1/b)^(1/r). Candidates are then verified against the threshold with the full signatures.
/// </summary>
public readonly record struct LshBands(int Bands, int Rows)
{
    /// <summary>Weights of the two error areas when choosing b and r. Candidates are verified, so a false positive
    /// only costs a comparison while a false negative is a missed duplicate: misses weigh four times as much.</summary>
    public const double FalsePositiveWeight = 0.2, FalseNegativeWeight = 0.8;

    /// <summary>P(J): the chance that texts with Jaccard similarity J share at least one band.</summary>
    public double CandidateProbability(double jaccard) => 1 - Math.Pow(1 - Math.Pow(jaccard, Rows), Bands);

    /// <summary>The (b, r) with b·r ≤ numPerm that minimize w₊·∫₀ᵗ P(J) dJ + w₋·∫ₜ¹ (1 − P(J)) dJ (as datasketch does,
    /// with the weights above). For t = 0.8 and 128 permutations: 12 bands of 10 rows, P(0.7) = 0.29,
    /// P(0.8) = 0.74, P(0.9) = 0.994.</summary>
    public static LshBands Choose(double threshold, int numPerm)
    {
        if (threshold is <= 0 or >= 1) throw new ArgumentException($"--threshold must be between 0 and 1, got {threshold}");
        var best = new LshBands(1, numPerm);
        double bestError = double.MaxValue;
        for (int b = 1; b <= numPerm; b++)
            for (int r = 1; r * b <= numPerm; r++)
            {
                var candidate = new LshBands(b, r);
                double error = FalsePositiveWeight * Integrate(candidate.CandidateProbability, 0, threshold)
                             + FalseNegativeWeight * Integrate(j => 1 - candidate.CandidateProbability(j), threshold, 1);
                if (error < bestError - 1e-12) { bestError = error; best = candidate; }
            }
        return best;
    }

    /// <summary>Bands for a given count: r = numPerm / b rows each (left-over permutations are only used in verification).</summary>
    public static LshBands ForBands(int bands, int numPerm)
    {
        if (bands < 1 || bands > numPerm) throw new ArgumentException($"--bands must be between 1 and --num-perm ({numPerm}), got {bands}");
        return new LshBands(bands, numPerm / bands);
    }

    static double Integrate(Func<double, double> f, double a, double b)
    {
        const int steps = 200; // midpoint rule; P is smooth
        double h = (b - a) / steps, sum = 0;
        for (int i = 0; i < steps; i++) sum += f(a + (i + 0.5) * h);
        return sum * h;
    }

    /// <summary>The key of band <paramref name="band"/> of a signature (its rows hashed with the band number).</summary>
    public ulong Key(ReadOnlySpan<uint> signature, int band)
    {
        ulong h = DataHash.Mix((ulong)band + 0x51A3F0E1C2B4D697UL);
        var rows = signature.Slice(band * Rows, Rows);
        for (int i = 0; i < rows.Length; i += 2)
        {
            ulong pair = rows[i] | (i + 1 < rows.Length ? (ulong)rows[i + 1] << 32 : 0);
            h = DataHash.Mix(h ^ pair) + 0x9E3779B97F4A7C15UL;
        }
        return h;
    }
}
