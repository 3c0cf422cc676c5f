using System.Runtime.CompilerServices;

namespace Hone.Tensors;

/// <summary>Which elements of a head vector RoPE rotates together.</summary>
public enum RopeLayout
{
    /// <summary>Hugging Face rotate_half / GGUF "neox": element i pairs with i + nRot/2.</summary>
    Halves,
    /// <summary>Meta original / llama.cpp "normal" (GGUF llama q/k are permuted for it): element 2i pairs with 2i+1.</summary>
    AdjacentPairs,
}

/// <summary>Llama 3 style frequency scaling (rope_scaling.rope_type = "llama3").</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFrequencyFactor, double HighFrequencyFactor, int OriginalContextLength);

/// <summary>
/// Rotary position embedding with precomputed cos/sin tables (double-precision angles, stored fp32):
/// table[pos, i] for the nRot/2 frequencies θ_i = base^(−2i/nRot), optionally rescaled (linear, Llama 3, or
/// per-frequency divisors from a GGUF rope_freqs tensor).
/// </summary>
public sealed unsafe class Rope : IDisposable
{
    readonly NativeBuffer _cos, _sin; // [MaxPositions, RotaryDims/2]

    public int HeadDim { get; }
    public int RotaryDims { get; }
    public int MaxPositions { get; }
    public RopeLayout Layout { get; }
    public double[] InverseFrequencies { get; }

    public Rope(int headDim, int rotaryDims, int maxPositions, double theta, RopeLayout layout,
        double linearFactor = 1.0, Llama3RopeScaling? llama3 = null, float[]? frequencyDivisors = null)
    {
        if (rotaryDims <= 0 || rotaryDims > headDim || rotaryDims % 2 != 0)
            throw new ArgumentException($"rotary dimensions {rotaryDims} must be even and at most the head dimension {headDim}");
        HeadDim = headDim; RotaryDims = rotaryDims; MaxPositions = maxPositions; Layout = layout;
        int half = rotaryDims / 2;
        InverseFrequencies = InverseFrequencyTable(rotaryDims, theta, linearFactor, llama3, frequencyDivisors);
        _cos = new NativeBuffer((long)maxPositions * half * 4);
        _sin = new NativeBuffer((long)maxPositions * half * 4);
        float* c = _cos.AsFloats, s = _sin.AsFloats;
        for (int p = 0; p < maxPositions; p++)
            for (int i = 0; i < half; i++)
            {
                double angle = p * InverseFrequencies[i];
                c[(long)p * half + i] = (float)Math.Cos(angle);
                s[(long)p * half + i] = (float)Math.Sin(angle);
            }
    }

    public static double[] InverseFrequencyTable(int rotaryDims, double theta, double linearFactor,
        Llama3RopeScaling? llama3, float[]? frequencyDivisors)
    {
        int half = rotaryDims / 2;
        if (frequencyDivisors != null && frequencyDivisors.Length != half)
            throw new ArgumentException($"rope frequency table has {frequencyDivisors.Length} entries, expected {half}");
        var inv = new double[half];
        for (int i = 0; i < half; i++)
        {
            double f = 1.0 / Math.Pow(theta, 2.0 * i / rotaryDims) / linearFactor;
            if (llama3 != null)
            {
                double lowWavelength = llama3.OriginalContextLength / llama3.LowFrequencyFactor;
                double highWavelength = llama3.OriginalContextLength / llama3.HighFrequencyFactor;
                double wavelength = 2 * Math.PI / f;
                if (wavelength > lowWavelength) f /= llama3.Factor;
                else if (wavelength >= highWavelength)
                {
                    double smooth = (llama3.OriginalContextLength / wavelength - llama3.LowFrequencyFactor) /
                                    (llama3.HighFrequencyFactor - llama3.LowFrequencyFactor);
                    f = (1 - smooth) * f / llama3.Factor + smooth * f;
                }
            }
            if (frequencyDivisors != null) f /= frequencyDivisors[i];
            inv[i] = f;
        }
        return inv;
    }

    /// <summary>Rotate heads in place: x[T, heads, HeadDim] (row stride rowStride floats) at positions start..start+T.</summary>
    public void Apply(float* x, int tokens, int heads, long rowStride, int startPosition, bool inverse = false)
    {
        if (startPosition < 0 || startPosition + tokens > MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(startPosition), $"positions {startPosition}..{startPosition + tokens - 1} are beyond the context of {MaxPositions}");
        Rotate(Tables, x, tokens, heads, rowStride, startPosition, inverse);
    }

    /// <summary>The tables and geometry, as a plain struct that kernels on other threads can carry.</summary>
    public readonly struct TableView(float* cos, float* sin, int headDim, int rotaryDims, RopeLayout layout)
    {
        public readonly float* Cos = cos, Sin = sin;
        public readonly int HeadDim = headDim, RotaryDims = rotaryDims;
        public readonly RopeLayout Layout = layout;
    }

    public TableView Tables => new(_cos.AsFloats, _sin.AsFloats, HeadDim, RotaryDims, Layout);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Rotate(TableView t, float* x, int tokens, int heads, long rowStride, int startPosition, bool inverse)
    {
        int half = t.RotaryDims / 2;
        for (int token = 0; token < tokens; token++)
        {
            int pos = startPosition + token;
            float* c = t.Cos + (long)pos * half, s = t.Sin + (long)pos * half;
            for (int h = 0; h < heads; h++)
            {
                float* v = x + token * rowStride + h * t.HeadDim;
                if (t.Layout == RopeLayout.Halves)
                    for (int i = 0; i < half; i++)
                    {
                        float a = v[i], b = v[i + half], sn = inverse ? -s[i] : s[i];
                        v[i] = a * c[i] - b * sn;
                        v[i + half] = b * c[i] + a * sn;
                    }
                else
                    for (int i = 0; i < half; i++)
                    {
                        float a = v[2 * i], b = v[2 * i + 1], sn = inverse ? -s[i] : s[i];
                        v[2 * i] = a * c[i] - b * sn;
                        v[2 * i + 1] = b * c[i] + a * sn;
                    }
            }
        }
    }

    public void Dispose() { _cos.Dispose(); _sin.Dispose(); }
}
