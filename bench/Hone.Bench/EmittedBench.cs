using System.Diagnostics;
using Hone.Tensors;
using Hone.Tensors.Emitted;

namespace Hone.Bench;

/// <summary>
/// `emitted` mode: prompt GEMMs Y[512, N] = X[512, K]·Wᵀ on SmolLM2-135M's projection shapes, fp32 (Gemm.Multiply)
/// against BF16 / Q8_0 / Q4_0 weights through WeightGemm (emitted and managed kernels), 1 and 2 threads.
/// GFLOP/s counts 2·M·N·K for every type; ratios are to the fp32 FMA peak measured in the same run and to fp32 GEMM.
/// </summary>
public static unsafe class EmittedBench
{
    static readonly (int N, int K, string Name, int PerLayer)[] Shapes =
    [
        (576, 576, "q,o", 2), (192, 576, "k,v", 2), (1536, 576, "gate,up", 2), (576, 1536, "down", 1),
    ];
    const int M = 512, Layers = 30;

    public static int Run(string[] args)
    {
        int repetitions = args.Length > 0 ? int.Parse(args[0]) : 15;
        Console.WriteLine($"load: {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine($"emitted bf16: {(BFloat16Kernels.EmittedAvailable ? "yes" : BFloat16Kernels.EmittedUnavailableReason)}; " +
                          $"emitted int8: {(Int8Kernels.EmittedAvailable ? "yes" : Int8Kernels.EmittedUnavailableReason)}");
        InstructionThroughput();
        KernelOnly();
        SmallBatches(repetitions);
        foreach (int threads in new[] { 1, 2 })
        {
            using var pool = new WorkerPool(threads);
            double peak = MachineLimits.Measure(pool, 16L << 20).PeakGflops;
            Console.WriteLine($"\nthreads={threads}: fp32 FMA peak {peak:F1} GFLOP/s (register-only loop)");
            Console.WriteLine($"{"shape",-22} {"kernel",-14} {"ms",8} {"GFLOP/s",8} {"/peak",6} {"/fp32",6}");
            var layerSeconds = new Dictionary<string, double>();
            foreach (var (n, k, name, perLayer) in Shapes)
            {
                using var x = new NativeBuffer((long)M * k * 4);
                using var y = new NativeBuffer((long)M * n * 4);
                using var wf = new NativeBuffer((long)n * k * 4);
                var rng = new Random(1);
                for (long i = 0; i < (long)M * k; i++) x.AsFloats[i] = (float)(rng.NextDouble() * 2 - 1);
                for (long i = 0; i < (long)n * k; i++) wf.AsFloats[i] = (float)(rng.NextDouble() * 2 - 1) * 0.05f;
                string shape = $"{name} N={n} K={k}";
                double fp32 = Time(repetitions, () => Gemm.Multiply(pool, M, n, k, x.AsFloats, k, false, wf.AsFloats, k, GemmBLayout.NByK, y.AsFloats, n, false));
                Report(shape, "f32 gemm", fp32, fp32, peak, n, k);
                layerSeconds["f32"] = layerSeconds.GetValueOrDefault("f32") + perLayer * fp32;
                foreach (var type in new[] { TensorType.BF16, TensorType.Q8_0, TensorType.Q4_0 })
                {
                    using var w = MakeWeights(type, n, k, rng, out long rowBytes);
                    foreach (var kernel in new[] { WeightGemmKernel.Emitted, WeightGemmKernel.Avx512 })
                    {
                        if (!WeightGemm.IsAvailable(kernel, type)) continue;
                        double seconds = Time(repetitions, () =>
                            WeightGemm.TryMultiplyWeights(pool, M, n, k, x.AsFloats, k, type, w.Pointer, rowBytes, y.AsFloats, n, false, kernel));
                        string label = $"{type.Name()} {(kernel == WeightGemmKernel.Emitted ? "emitted" : "managed")}";
                        Report(shape, label, seconds, fp32, peak, n, k);
                        layerSeconds[label] = layerSeconds.GetValueOrDefault(label) + perLayer * seconds;
                    }
                }
            }
            Console.WriteLine($"  projection GEMMs alone, {Layers} layers × pp{M} (no attention, norms or head): tokens/s upper bound");
            foreach (var (label, seconds) in layerSeconds)
                Console.WriteLine($"    {label,-14} {M / (Layers * seconds),8:F0} t/s");
        }
        return 0;
    }

    static void Report(string shape, string label, double seconds, double fp32Seconds, double peak, int n, int k)
    {
        double gflops = 2.0 * M * n * k / seconds / 1e9;
        Console.WriteLine($"{shape,-22} {label,-14} {seconds * 1e3,8:F3} {gflops,8:F1} {gflops / peak,6:F2} {fp32Seconds / seconds,6:F2}");
    }

    /// <summary>Best of <paramref name="repetitions"/> after warm-up runs (the machine is shared).</summary>
    static double Time(int repetitions, Action action)
    {
        // Past tier-0 code (the JIT promotes hot methods after ~30 calls and a 100 ms delay), then measure.
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 40 || warm.ElapsedMilliseconds < 300; i++) action();
        double best = double.MaxValue;
        for (int r = 0; r < repetitions; r++)
        {
            var sw = Stopwatch.StartNew();
            action();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    /// <summary>Random W[N, K] in <paramref name="type"/>: bf16 values, or blocks with random fp16 scales and quants.</summary>
    static NativeBuffer MakeWeights(TensorType type, int n, int k, Random rng, out long rowBytes)
    {
        rowBytes = type.Traits().BytesFor(k);
        var buffer = new NativeBuffer(n * rowBytes);
        byte* p = buffer.Pointer;
        if (type == TensorType.BF16)
        {
            for (long i = 0; i < (long)n * k; i++) ((ushort*)p)[i] = NumberConversion.SingleToBFloat16((float)(rng.NextDouble() * 2 - 1) * 0.05f);
            return buffer;
        }
        int blockBytes = type.Traits().BlockBytes;
        rng.NextBytes(new Span<byte>(p, (int)(n * rowBytes)));
        for (long b = 0; b < n * rowBytes / blockBytes; b++)
            *(ushort*)(p + b * blockBytes) = NumberConversion.SingleToHalf((float)(0.001 + 0.01 * rng.NextDouble()));
        return buffer;
    }

    /// <summary>Few-token batches (Gemm.MultiplyWeights hands BF16 to WeightGemm from MinimumRows on): WeightGemm on
    /// BF16 weights against the fp32 GEMM on the same weights widened to fp32, one thread, N=1536 K=576.</summary>
    static void SmallBatches(int repetitions)
    {
        const int n = 1536, k = 576;
        using var pool = new WorkerPool(1);
        using var x = new NativeBuffer(64L * k * 4);
        using var y = new NativeBuffer(64L * n * 4);
        using var widened = new NativeBuffer((long)n * k * 4);
        var rng = new Random(3);
        for (int i = 0; i < 64 * k; i++) x.AsFloats[i] = (float)(rng.NextDouble() * 2 - 1);
        using var w = MakeWeights(TensorType.BF16, n, k, rng, out long rowBytes);
        NumberConversion.BFloat16ToSingle((ushort*)w.Pointer, widened.AsFloats, n * k);
        Console.WriteLine($"small batches, N={n} K={k}, 1 thread: M, fp32 Gemm.Multiply on widened weights ms, WeightGemm bf16 ms");
        foreach (int m in new[] { 2, 4, 8, 16, 32, 64 })
        {
            double fp32 = Time(repetitions, () => Gemm.Multiply(pool, m, n, k, x.AsFloats, k, false, widened.AsFloats, k, GemmBLayout.NByK, y.AsFloats, n, false));
            double bf16 = Time(repetitions, () => WeightGemm.TryMultiplyWeights(pool, m, n, k, x.AsFloats, k, TensorType.BF16, w.Pointer, rowBytes, y.AsFloats, n, false));
            Console.WriteLine($"  M={m,3}: {fp32 * 1e3,7:F3} {bf16 * 1e3,7:F3}");
        }
    }

    /// <summary>Register-only loops of 24 independent vfmadd231ps / vdpbf16ps / vpdpbusd (zmm): instructions per
    /// nanosecond on one thread, the hardware ceiling each kernel is built on.</summary>
    static void InstructionThroughput()
    {
        if (!EmittedCpu.CanRunEvexCode) return;
        var instructions = new List<(string Name, Action<X86Assembler, Zmm, Zmm, Zmm> Emit, double Flops)>
        {
            ("vfmadd231ps", (a, d, l, r) => a.Vfmadd231ps(d, l, r), 32),
        };
        if (EmittedCpu.HasAvx512Bf16) instructions.Add(("vdpbf16ps", (a, d, l, r) => a.Vdpbf16ps(d, l, r), 64));
        if (EmittedCpu.HasAvx512Vnni) instructions.Add(("vpdpbusd", (a, d, l, r) => a.Vpdpbusd(d, l, r), 128));
        foreach (var (name, emit, flops) in instructions)
        {
            var asm = new X86Assembler();
            var loop = new Label();
            for (int i = 0; i < 26; i++) asm.Vpxord(new Zmm(i), new Zmm(i), new Zmm(i));
            asm.Bind(loop);
            for (int i = 0; i < 24; i++) emit(asm, new Zmm(i), new Zmm(24), new Zmm(25));
            asm.Dec(Gpr.Rdi);
            asm.Jump(Condition.NotEqual, loop);
            asm.Vzeroupper();
            asm.Ret();
            var code = ExecutableMemory.TryCreate(asm.ToArray(), out var failure) ?? throw new InvalidOperationException(failure);
            var function = (delegate* unmanaged<long, void>)code.Pointer;
            const long iterations = 2_000_000;
            double best = 0;
            for (int rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                function(iterations);
                best = Math.Max(best, iterations * 24 / sw.Elapsed.TotalSeconds / 1e9);
            }
            Console.WriteLine($"{name,-12} register-only, 1 thread: {best:F2} instructions/ns = {best * flops:F0} G(FL)OP/s");
        }
    }

    /// <summary>The emitted micro-kernels alone on L1-resident packed data: the ceiling for the full GEMMs.</summary>
    static void KernelOnly()
    {
        using var buffer = new NativeBuffer(64 << 10);
        byte* a = buffer.Pointer, b = buffer.Pointer + (8 << 10), c = buffer.Pointer + (40 << 10);
        var rng = new Random(2);
        rng.NextBytes(new Span<byte>(buffer.Pointer, 40 << 10));
        for (int i = 0; i < 16 << 10; i += 2) ((ushort*)buffer.Pointer)[i / 2] &= 0x3FFF; // finite bf16 values
        const int calls = 200_000;
        if (BFloat16Kernels.EmittedAvailable)
        {
            // A [128 pairs][8] dwords = 4 KiB, B [128][48] dwords = 24 KiB.
            var kernel = BFloat16Kernels.Emitted;
            double best = 0;
            for (int rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                for (int r = 0; r < calls; r++) kernel(a, b, (float*)c, 48 * 4, 128 / BFloat16Kernels.PairsPerStep, 0);
                best = Math.Max(best, 2.0 * 8 * 48 * 256 * calls / sw.Elapsed.TotalSeconds / 1e9);
            }
            Console.WriteLine($"bf16 emitted micro-kernel alone (L1, 1 thread): {best:F1} GFLOP/s");
        }
        if (Int8Kernels.EmittedAvailable)
        {
            // 8 blocks: A 1280 bytes, B 13.5 KiB.
            var kernel = Int8Kernels.Emitted;
            double best = 0;
            for (int rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                for (int r = 0; r < calls; r++) kernel(a, b, (float*)c, 48 * 4, 8, 0);
                best = Math.Max(best, 2.0 * 4 * 48 * 256 * calls / sw.Elapsed.TotalSeconds / 1e9);
            }
            Console.WriteLine($"int8 emitted micro-kernel alone (L1, 1 thread): {best:F1} GOP/s");
        }
    }
}
