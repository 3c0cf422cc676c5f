using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hone.Tensors;
using Hone.Tensors.Quantization;

namespace Hone.Bench;

/// <summary>
/// `quant`: single-thread speed of the quantized block kernels. DotRows streams weight sets several times larger than
/// L3 (so every byte comes from DRAM, as in decode), reported in GB/s of weight bytes, as a fraction of the nominal
/// single-core memory bandwidth, and in weights/s. The machine is shared: every figure is the fastest pass over several
/// rounds that interleave all configurations, so a busy spell of the other core does not land on one row only.
/// Options: --quick (fewer rounds and passes, smaller sets); --only stream|cache|dequant|quantize (one section).
/// </summary>
internal static unsafe class QuantBenchmark
{
    const double NominalBandwidth = 37e9; // bytes/s, one core (the project's reference figure)
    static readonly TensorType[] Types = [TensorType.Q8_0, TensorType.Q4_0, TensorType.Q4_K, TensorType.Q6_K];

    static int rounds = 4, passes = 3;
    static long streamBytes = 256L << 20;

    /// <summary>One benchmark row: a pass to time, and how to print its best time.</summary>
    sealed record Measurement(string Section, Action Pass, Func<double, string> Format)
    {
        public double Best = double.MaxValue;
    }

    public static void Run(string[] args)
    {
        if (args.Contains("--quick")) { rounds = 2; passes = 2; streamBytes = 128L << 20; }
        int only = Array.IndexOf(args, "--only");
        string section = only >= 0 && only + 1 < args.Length ? args[only + 1] : "all";
        bool Show(string name) => section == "all" || section == name;

        var levels = BlockQuantization.SupportedLevels.Reverse().ToArray(); // best first
        var simdLevels = levels.Where(l => l != SimdLevel.Scalar).ToArray();
        var streams = Types.ToDictionary(t => t, t => RandomBlocks(t, streamBytes, 7 + (int)t));
        var measurements = new List<Measurement>();
        var bandwidth = new Measurement("", () => { }, _ => "");

        if (Show("stream"))
        {
            bandwidth = ReadBandwidth(streams[TensorType.Q8_0]);
            measurements.Add(bandwidth);
            foreach (var type in Types)
                foreach (var level in simdLevels)
                    measurements.Add(DotStream(streams[type], type, level, 4096, 4096));
            foreach (var type in Types)
                foreach (var (k, n) in new[] { (576, 1536), (1536, 576) })
                    if (k % type.Traits().BlockSize == 0) measurements.Add(DotStream(streams[type], type, BlockQuantization.Best, k, n));
        }
        if (Show("cache"))
            foreach (var type in Types)
                foreach (var level in levels)
                    measurements.Add(DotInCache(type, level));
        if (Show("dequant"))
            foreach (var type in Types)
                foreach (var level in levels)
                    measurements.Add(Dequantize(streams[type], type, level));
        if (Show("quantize"))
            foreach (var type in new[] { TensorType.Q8_0, TensorType.Q4_K })
                foreach (var level in levels)
                    measurements.Add(QuantizeActivations(type, level));

        foreach (var m in measurements) m.Pass(); // warm-up: JIT, page faults
        for (int round = 0; round < rounds; round++)
            foreach (var m in measurements)
                for (int p = 0; p < passes; p++)
                {
                    long start = Stopwatch.GetTimestamp();
                    m.Pass();
                    m.Best = Math.Min(m.Best, Stopwatch.GetElapsedTime(start).TotalSeconds);
                }

        Console.WriteLine($"quant benchmark: 1 thread, fastest of {rounds} rounds x {passes} passes; best kernels: {BlockQuantization.Best}");
        if (Show("stream"))
            Console.WriteLine($"single-core read bandwidth: measured {bandwidth.Format(bandwidth.Best)}, nominal {NominalBandwidth / 1e9:F0} GB/s (ratios are to the nominal figure)");
        string? current = null;
        foreach (var m in measurements.Where(m => m != bandwidth))
        {
            if (m.Section != current)
            {
                current = m.Section;
                Console.WriteLine();
                Console.WriteLine(current);
            }
            Console.WriteLine(m.Format(m.Best));
        }
        foreach (var buffer in streams.Values) buffer.Dispose();
    }

    /// <summary>Random blocks (any quant bits, finite fp16 scales): speed does not depend on the values.</summary>
    static NativeBuffer RandomBlocks(TensorType type, long bytes, int seed)
    {
        var t = type.Traits();
        var buffer = new NativeBuffer(bytes / t.BlockBytes * t.BlockBytes);
        var rng = new Random(seed);
        for (long offset = 0; offset < buffer.Length; offset += 1 << 30)
            rng.NextBytes(new Span<byte>(buffer.Pointer + offset, (int)Math.Min(1 << 30, buffer.Length - offset)));
        int[] halves = type switch { TensorType.Q4_K => [0, 2], TensorType.Q6_K => [208], _ => [0] };
        for (long b = 0; b < buffer.Length / t.BlockBytes; b++)
            foreach (int h in halves)
                BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(buffer.Pointer + b * t.BlockBytes + h, 2),
                    BitConverter.HalfToUInt16Bits((Half)(0.01f * (1 + (float)rng.NextDouble()))));
        return buffer;
    }

    static NativeBuffer Activations(TensorType weightType, int k)
    {
        var rng = new Random(42);
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var xq = new NativeBuffer(BlockQuantization.DotType(weightType).Traits().BytesFor(k));
        BlockQuantization.QuantizeForDot(weightType, x, new Span<byte>(xq.Pointer, (int)xq.Length));
        return xq;
    }

    /// <summary>Decode: y = W·x over all the K×N matrices that fit the stream buffer (several times L3), one after another.</summary>
    static Measurement DotStream(NativeBuffer weights, TensorType type, SimdLevel level, int k, int n)
    {
        long rowBytes = type.Traits().BytesFor(k);
        long matrixBytes = rowBytes * n;
        int count = (int)(weights.Length / matrixBytes);
        var xq = Activations(type, k);
        var y = new NativeBuffer(4L * n);
        const string section = "DotRows, weights streamed from DRAM\n" +
            "type  level      K x N      matrices     MB    GB/s  /37GB/s  Gweights/s";
        return new Measurement(section,
            () =>
            {
                for (int m = 0; m < count; m++)
                    BlockQuantization.DotRows(level, type, weights.Pointer + m * matrixBytes, rowBytes, n, xq.Pointer, k, y.AsFloats);
            },
            best =>
            {
                double bytesPerSecond = count * matrixBytes / best;
                return $"{type.Name(),-5} {level,-10} {$"{k}x{n}",-10} {count,8} {count * matrixBytes / 1e6,6:F0} {bytesPerSecond / 1e9,7:F1} {bytesPerSecond / NominalBandwidth,8:F2} {(double)k * n * count / best / 1e9,11:F1}";
            });
    }

    static Measurement DotInCache(TensorType type, SimdLevel level)
    {
        const int k = 4096, n = 64;
        long rowBytes = type.Traits().BytesFor(k);
        var weights = RandomBlocks(type, rowBytes * n, 3);
        var xq = Activations(type, k);
        var y = new NativeBuffer(4L * n);
        int repeats = level == SimdLevel.Scalar ? 5 : 100;
        const string section = "DotRows in cache (one 64 x 4096 matrix, in L2, repeated): kernel throughput without DRAM\n" +
            "type  level         GB/s  Gweights/s";
        return new Measurement(section,
            () =>
            {
                for (int i = 0; i < repeats; i++) BlockQuantization.DotRows(level, type, weights.Pointer, rowBytes, n, xq.Pointer, k, y.AsFloats);
            },
            best => $"{type.Name(),-5} {level,-10} {weights.Length * repeats / best / 1e9,7:F1} {(double)k * n * repeats / best / 1e9,11:F2}");
    }

    static Measurement Dequantize(NativeBuffer weights, TensorType type, SimdLevel level)
    {
        const int k = 4096;
        long rowBytes = type.Traits().BytesFor(k);
        long rows = (level == SimdLevel.Scalar ? weights.Length / 8 : weights.Length) / rowBytes;
        var panel = new float[k];
        const string section = "DequantizeRow, weights streamed from DRAM into a 4096-float panel (in L1)\n" +
            "type  level       GB/s in  /37GB/s  Gfloats/s  GB/s out";
        return new Measurement(section,
            () =>
            {
                for (long r = 0; r < rows; r++)
                    BlockQuantization.DequantizeRow(level, type, new ReadOnlySpan<byte>(weights.Pointer + r * rowBytes, (int)rowBytes), panel);
            },
            best =>
            {
                double bytesPerSecond = rows * rowBytes / best, floatsPerSecond = (double)rows * k / best;
                return $"{type.Name(),-5} {level,-10} {bytesPerSecond / 1e9,8:F1} {bytesPerSecond / NominalBandwidth,8:F2} {floatsPerSecond / 1e9,10:F2} {floatsPerSecond * 4 / 1e9,9:F1}";
            });
    }

    static Measurement QuantizeActivations(TensorType weightType, SimdLevel level)
    {
        const int k = 4096, repeats = 200;
        var x = new float[k];
        var rng = new Random(1);
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var dotType = BlockQuantization.DotType(weightType);
        var xq = new byte[dotType.Traits().BytesFor(k)];
        const string section = "QuantizeForDot (activations, n = 4096)\ntype  level          µs   Gfloats/s";
        return new Measurement(section,
            () =>
            {
                for (int i = 0; i < repeats; i++) BlockQuantization.QuantizeRow(level, dotType, x, xq);
            },
            best => $"{dotType.Name(),-5} {level,-10} {best / repeats * 1e6,7:F2} {(double)k * repeats / best / 1e9,11:F2}");
    }

    /// <summary>Single-thread read bandwidth: sum the stream buffer with 64-byte loads.</summary>
    static Measurement ReadBandwidth(NativeBuffer buffer) => new("",
        () => Sink = SumBytes(buffer.Pointer, buffer.Length & ~255L),
        best => $"{(buffer.Length & ~255L) / best / 1e9:F1} GB/s");

    static volatile int Sink;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static int SumBytes(byte* p, long length)
    {
        var a0 = Vector256<int>.Zero; var a1 = Vector256<int>.Zero; var a2 = Vector256<int>.Zero; var a3 = Vector256<int>.Zero;
        for (long i = 0; i < length; i += 128)
        {
            a0 += Vector256.Load((int*)(p + i));
            a1 += Vector256.Load((int*)(p + i + 32));
            a2 += Vector256.Load((int*)(p + i + 64));
            a3 += Vector256.Load((int*)(p + i + 96));
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }
}
