namespace Hone.Tensors;

/// <summary>xoshiro256** seeded through splitmix64: small, fast, and the same sequence everywhere.</summary>
public sealed class Xoshiro256
{
    ulong _s0, _s1, _s2, _s3;

    public Xoshiro256(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    static ulong SplitMix(ref ulong x)
    {
        ulong state = x;
        x += 0x9E3779B97F4A7C15;
        return SplitMix64(state);
    }

    /// <summary>One splitmix64 output for the state <paramref name="z"/> (the golden-ratio step added, then the
    /// finalizer): a well-mixed seed derived from another, for seeds of items, trials and messages.</summary>
    public static ulong SplitMix64(ulong z)
    {
        z += 0x9E3779B97F4A7C15;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t; _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    public int NextInt(int maxExclusive) => (int)(NextDouble() * maxExclusive);

    /// <summary>The generator's state, for checkpoints that must resume bit-identically.</summary>
    public ulong[] State { get => [_s0, _s1, _s2, _s3]; set { _s0 = value[0]; _s1 = value[1]; _s2 = value[2]; _s3 = value[3]; } }
}
