using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Hone.Tensors.Quantization;

namespace Hone.Tensors;

/// <summary>
/// Matrix-vector products for decode: y[N] = W[N,K]·x[K] with W in any supported type. Memory-bound, so the kernels
/// stream weight rows against one load of x, and threads split the rows.
/// f32, bf16 and f16 weights always meet fp32 x (bf16/f16 widen exactly). Quantized weights meet x quantized to their
/// dot format (Q8_0 / Q8_K, as llama.cpp) under <see cref="ComputePrecision.Fast"/>; under
/// <see cref="ComputePrecision.Exact"/> each row is dequantized to fp32 and dotted with fp32 x by the F32 kernel, so the
/// result is bit-identical to the F32 product of the dequantized weights.
/// </summary>
public static unsafe class MatVec
{
    /// <summary>One matrix of a job: W[N, K] (rows of the job's RowBytes) and its output y[N].</summary>
    struct Part { public byte* W; public int N; public float* Y; }

    struct Job
    {
        public TensorType Type; public long RowBytes; public int K;
        public float* X; public byte* QuantizedX; public bool Accumulate, Gated, Exact;
        public int Parts; public Part P0, P1, P2; // matrices sharing x, walked as one list of rows
    }

    const int RowGranularity = 16; // threads split rows in chunks of 16 (whole four-row groups, aligned in every part)

    /// <summary>y[N] = (accumulate ? y : 0) + W[N,K]·x[K].</summary>
    /// <param name="weights">W rows of <paramref name="rowBytes"/> bytes each, in <paramref name="type"/></param>
    public static void Multiply(WorkerPool pool, TensorType type, byte* weights, long rowBytes, int n, int k,
        float* x, float* y, bool accumulate = false, ComputePrecision precision = ComputePrecision.Fast)
    {
        var job = new Job { Type = type, RowBytes = rowBytes, K = k, X = x, Accumulate = accumulate, Parts = 1, Exact = precision == ComputePrecision.Exact };
        job.P0 = new Part { W = weights, N = n, Y = y };
        Run(pool, ref job);
    }

    /// <summary>
    /// Two or three products of the same x in one parallel region (decode's q, k and v): y_i[N_i] = W_i[N_i,K]·x[K].
    /// The matrices share type and row stride; threads split the rows of all of them together, so a decode step
    /// pays one dispatch and one activation quantization instead of three. Each row's result is bit-identical to
    /// <see cref="Multiply"/>'s.
    /// </summary>
    public static void MultiplyShared(WorkerPool pool, TensorType type, long rowBytes, int k, float* x,
        byte* w0, int n0, float* y0, byte* w1, int n1, float* y1, byte* w2 = null, int n2 = 0, float* y2 = null,
        ComputePrecision precision = ComputePrecision.Fast)
    {
        var job = new Job { Type = type, RowBytes = rowBytes, K = k, X = x, Parts = w2 == null ? 2 : 3, Exact = precision == ComputePrecision.Exact };
        job.P0 = new Part { W = w0, N = n0, Y = y0 };
        job.P1 = new Part { W = w1, N = n1, Y = y1 };
        job.P2 = new Part { W = w2, N = w2 == null ? 0 : n2, Y = y2 };
        Run(pool, ref job);
    }

    /// <summary>
    /// The gated MLP's first half in one parallel region: gate = Wg·x, up = Wu·x, then gate = silu(gate)·up, each
    /// thread finishing the activation on its own rows (no second dispatch). Bit-identical to two
    /// <see cref="Multiply"/> calls followed by <see cref="Activations.SwiGlu(float*, float*, long)"/>.
    /// </summary>
    /// <param name="gate">[N] out: silu(Wg·x)·(Wu·x)</param>
    /// <param name="up">[N] scratch: Wu·x</param>
    public static void MultiplyGated(WorkerPool pool, TensorType type, long rowBytes, int n, int k, float* x,
        byte* gateWeights, byte* upWeights, float* gate, float* up, ComputePrecision precision = ComputePrecision.Fast)
    {
        var job = new Job { Type = type, RowBytes = rowBytes, K = k, X = x, Parts = 2, Gated = true, Exact = precision == ComputePrecision.Exact };
        job.P0 = new Part { W = gateWeights, N = n, Y = gate };
        job.P1 = new Part { W = upWeights, N = n, Y = up };
        Run(pool, ref job);
    }

    struct RowsJob
    {
        public Job Base;                        // type, row bytes, K, precision of every row's product
        public byte* W; public int N;           // W[N, K]
        public float* X; public long Ldx;       // X[M, K], row stride Ldx floats
        public byte* QuantizedX; public long QuantizedBytes; // M rows of X in the dot format, when quantized
        public float* Y; public long Ldy; public int M; // Y[M, N], row stride Ldy floats
    }

    /// <summary>
    /// Y[m, :] = (accumulate ? Y[m, :] : 0) + W·X[m, :] for M rows of X at once (the decode rows of a batched step):
    /// each row's result is bit-identical to <see cref="Multiply"/> of that row alone — the same quantization of x, the
    /// same per-row kernels at the same four-row alignment — but W streams from memory once for all M rows: threads
    /// split W's rows in chunks of 16, and each chunk (L1/L2-resident) meets every row of X before the next.
    /// </summary>
    /// <param name="x">X[M, K], row stride ldx floats</param>
    /// <param name="y">Y[M, N], row stride ldy floats</param>
    public static void MultiplyRows(WorkerPool pool, TensorType type, byte* weights, long rowBytes, int n, int k,
        float* x, long ldx, int m, float* y, long ldy, bool accumulate = false, ComputePrecision precision = ComputePrecision.Fast)
    {
        if (m <= 0) return;
        if (m == 1) { Multiply(pool, type, weights, rowBytes, n, k, x, y, accumulate, precision); return; }
        var job = new RowsJob
        {
            Base = new Job { Type = type, RowBytes = rowBytes, K = k, Accumulate = accumulate, Parts = 1, Exact = precision == ComputePrecision.Exact },
            W = weights, N = n, X = x, Ldx = ldx, Y = y, Ldy = ldy, M = m,
        };
        if (type.Traits().IsQuantized && !job.Base.Exact)
        {
            var dotTraits = BlockQuantization.DotType(type).Traits();
            long bytes = dotTraits.BytesFor(k);
            var buffer = ThreadBuffer.Activations.Get(checked((int)(bytes * m)));
            for (int r = 0; r < m; r++)
                BlockQuantization.QuantizeForDot(type, new ReadOnlySpan<float>(x + r * ldx, k), new Span<byte>(buffer + r * bytes, (int)bytes));
            job.QuantizedX = buffer;
            job.QuantizedBytes = bytes;
        }
        pool.Run(&RowsWorker, &job);
    }

    /// <summary>Weight rows per pass over the activation rows: a chunk stays in L1/L2 while every activation row meets it.
    /// Chunks start at multiples of 16 (whole four-row groups, as in <see cref="Multiply"/>'s thread shares).</summary>
    static int ChunkRows(TensorType type) => type == TensorType.F32 ? 16 : 64;

    static void RowsWorker(void* context, int thread, int threads)
    {
        ref RowsJob job = ref *(RowsJob*)context;
        var (r0, r1) = WorkerPool.Balanced(job.N, thread, threads, RowGranularity);
        int chunk = ChunkRows(job.Base.Type);
        float* partial = stackalloc float[64];
        for (int c0 = r0; c0 < r1; c0 += chunk)
        {
            int rows = Math.Min(chunk, r1 - c0);
            byte* w = job.W + c0 * job.Base.RowBytes;
            // Multi-row kernels write Y' [M, rows] (a per-thread buffer when the result is added to Y, as Multiply adds).
            bool accumulate = job.Base.Accumulate;
            float* target = accumulate ? (float*)ThreadBuffer.Partial.Get(checked(4 * job.M * rows)) : job.Y + c0;
            long ldt = accumulate ? rows : job.Ldy;
            bool done = false;
            if (job.QuantizedX != null)
                done = BlockQuantization.TryDotRowsMany(job.Base.Type, w, job.Base.RowBytes, rows, job.QuantizedX, job.QuantizedBytes, job.M, job.Base.K, target, ldt);
            else if (job.Base.Type == TensorType.F32 && Avx512F.IsSupported)
            {
                RowsF32Many((float*)w, (nint)(job.Base.RowBytes / 4), rows, job.X, job.Ldx, job.M, job.Base.K, target, ldt);
                done = true;
            }
            if (done)
            {
                if (accumulate)
                    for (int m = 0; m < job.M; m++)
                    {
                        float* y = job.Y + m * job.Ldy + c0, t = target + m * ldt;
                        for (int j = 0; j < rows; j++) y[j] += t[j];
                    }
                continue;
            }
            for (int m = 0; m < job.M; m++)
            {
                Job one = job.Base;
                one.X = job.X + m * job.Ldx;
                one.QuantizedX = job.QuantizedX == null ? null : job.QuantizedX + m * job.QuantizedBytes;
                float* y = job.Y + m * job.Ldy + c0;
                if (job.Base.Accumulate)
                    for (int i = 0; i < rows; i += 64)
                    {
                        int count = Math.Min(64, rows - i);
                        Rows(ref one, w + i * job.Base.RowBytes, count, partial);
                        for (int j = 0; j < count; j++) y[i + j] += partial[j];
                    }
                else Rows(ref one, w, rows, y);
            }
        }
    }

    /// <summary>F32 rows against M activation rows, four activation rows per pass over a weight row; each pair's sum is
    /// <see cref="DotF32"/>'s, operation for operation.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void RowsF32Many(float* w, nint ldw, int rows, float* x, long ldx, int m, int k, float* y, long ldy)
    {
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            float* x0 = x + i * ldx, x1 = x0 + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
            for (int r = 0; r < rows; r++)
            {
                float* wr = w + r * ldw;
                Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
                int j = 0;
                for (; j + 32 <= k; j += 32)
                {
                    var w0 = Vector512.Load(wr + j);
                    var w1 = Vector512.Load(wr + j + 16);
                    a00 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x0 + j), a00);
                    a01 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x0 + j + 16), a01);
                    a10 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x1 + j), a10);
                    a11 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x1 + j + 16), a11);
                    a20 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x2 + j), a20);
                    a21 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x2 + j + 16), a21);
                    a30 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x3 + j), a30);
                    a31 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x3 + j + 16), a31);
                }
                for (; j + 16 <= k; j += 16)
                {
                    var w0 = Vector512.Load(wr + j);
                    a00 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x0 + j), a00);
                    a10 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x1 + j), a10);
                    a20 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x2 + j), a20);
                    a30 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x3 + j), a30);
                }
                float s0 = Vector512.Sum(a00 + a01), s1 = Vector512.Sum(a10 + a11), s2 = Vector512.Sum(a20 + a21), s3 = Vector512.Sum(a30 + a31);
                for (; j < k; j++)
                {
                    s0 += wr[j] * x0[j]; s1 += wr[j] * x1[j]; s2 += wr[j] * x2[j]; s3 += wr[j] * x3[j];
                }
                y[i * ldy + r] = s0; y[(i + 1) * ldy + r] = s1; y[(i + 2) * ldy + r] = s2; y[(i + 3) * ldy + r] = s3;
            }
        }
        for (; i < m; i++) RowsF32(w, ldw, rows, x + i * ldx, k, y + i * ldy);
    }

    static void Run(WorkerPool pool, ref Job job)
    {
        if (job.Type.Traits().IsQuantized && !job.Exact)
        {
            // Activations are quantized once to the weight's dot format (Q8_0 / Q8_K), then every row reuses them.
            var dotTraits = BlockQuantization.DotType(job.Type).Traits();
            int bytes = (int)dotTraits.BytesFor(job.K);
            var buffer = ThreadBuffer.Activations.Get(bytes);
            BlockQuantization.QuantizeForDot(job.Type, new ReadOnlySpan<float>(job.X, job.K), new Span<byte>(buffer, bytes));
            job.QuantizedX = buffer;
        }
        fixed (Job* context = &job) pool.Run(&Worker, context);
    }

    static void Worker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        Part* parts = (Part*)Unsafe.AsPointer(ref job.P0);
        if (job.Gated)
        {
            var (r0, r1) = WorkerPool.Balanced(job.P0.N, thread, threads, RowGranularity);
            if (r0 >= r1) return;
            PartRows(ref job, parts[0], r0, r1 - r0);
            PartRows(ref job, parts[1], r0, r1 - r0);
            Activations.SwiGlu(parts[0].Y + r0, parts[1].Y + r0, r1 - r0);
            return;
        }
        // Chunks of 16 rows numbered across the parts; each thread takes a contiguous range of chunks.
        int total = 0;
        for (int p = 0; p < job.Parts; p++) total += (parts[p].N + RowGranularity - 1) / RowGranularity;
        var (c0, c1) = WorkerPool.Balanced(total, thread, threads);
        int first = 0;
        for (int p = 0; p < job.Parts && c0 < c1; p++)
        {
            int chunks = (parts[p].N + RowGranularity - 1) / RowGranularity;
            int lo = Math.Max(c0, first), hi = Math.Min(c1, first + chunks);
            if (hi > lo)
            {
                int r0 = (lo - first) * RowGranularity, r1 = Math.Min(parts[p].N, (hi - first) * RowGranularity);
                PartRows(ref job, parts[p], r0, r1 - r0);
            }
            first += chunks;
        }
    }

    static void PartRows(ref Job job, Part part, int r0, int rows)
    {
        byte* w = part.W + r0 * job.RowBytes;
        float* y = part.Y + r0;
        if (job.Accumulate)
        {
            float* partial = stackalloc float[64];
            for (int i = 0; i < rows; i += 64)
            {
                int count = Math.Min(64, rows - i);
                Rows(ref job, w + i * job.RowBytes, count, partial);
                for (int j = 0; j < count; j++) y[i + j] += partial[j];
            }
        }
        else Rows(ref job, w, rows, y);
    }

    static void Rows(ref Job job, byte* w, int rows, float* y)
    {
        bool quantized = job.Type.Traits().IsQuantized;
        if (!Avx512F.IsSupported && (!quantized || job.Exact)) { RowsPortable(ref job, w, rows, y); return; }
        if (quantized && job.Exact) { RowsDequantized(job.Type, w, job.RowBytes, rows, job.X, job.K, y); return; }
        switch (job.Type)
        {
            case TensorType.F32: RowsF32((float*)w, (nint)(job.RowBytes / 4), rows, job.X, job.K, y); break;
            case TensorType.BF16: RowsBFloat16((ushort*)w, (nint)(job.RowBytes / 2), rows, job.X, job.K, y); break;
            case TensorType.F16: RowsHalf((ushort*)w, (nint)(job.RowBytes / 2), rows, job.X, job.K, y); break;
            default: BlockQuantization.DotRows(job.Type, w, job.RowBytes, rows, job.QuantizedX, job.K, y); break;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void RowsF32(float* w, nint ldw, int rows, float* x, int k, float* y)
    {
        // One row at a time: a single sequential stream per thread is what the hardware prefetchers follow best
        // (four interleaved rows measured ~30% slower from DRAM).
        for (int r = 0; r < rows; r++) y[r] = DotF32(w + r * ldw, x, k);
    }

    /// <summary>Σ w[i]·x[i] on AVX-512, in the one summation order every fp32 row of a product uses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotF32(float* wr, float* x, int k)
    {
        Vector512<float> a0 = default, a1 = default;
        int i = 0;
        for (; i + 32 <= k; i += 32)
        {
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(wr + i), Vector512.Load(x + i), a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Load(wr + i + 16), Vector512.Load(x + i + 16), a1);
        }
        for (; i + 16 <= k; i += 16) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(wr + i), Vector512.Load(x + i), a0);
        float s = Vector512.Sum(a0 + a1);
        for (; i < k; i++) s += wr[i] * x[i];
        return s;
    }

    /// <summary>Exact products with quantized weights on AVX-512: each row dequantized to fp32 into a per-thread
    /// buffer (L1/L2-resident), then <see cref="DotF32"/>, the F32 kernel's own summation.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void RowsDequantized(TensorType type, byte* w, long rowBytes, int rows, float* x, int k, float* y)
    {
        float* row = (float*)ThreadBuffer.Row.Get(4 * k);
        for (int r = 0; r < rows; r++)
        {
            WeightRows.DequantizeSegment(type, w + r * rowBytes, 0, k, row);
            y[r] = DotF32(row, x, k);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void RowsBFloat16(ushort* w, nint ldw, int rows, float* x, int k, float* y)
    {
        // bf16 widens exactly (a shift) and sums in DotF32's order: bit-identical to the F32 product of the widened weights.
        for (int r = 0; r < rows; r++)
        {
            ushort* wr = w + r * ldw;
            Vector512<float> a0 = default, a1 = default;
            int i = 0;
            for (; i + 32 <= k; i += 32)
            {
                a0 = Vector512.FusedMultiplyAdd(NumberConversion.WidenBFloat16(Vector256.Load(wr + i)), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(NumberConversion.WidenBFloat16(Vector256.Load(wr + i + 16)), Vector512.Load(x + i + 16), a1);
            }
            for (; i + 16 <= k; i += 16)
                a0 = Vector512.FusedMultiplyAdd(NumberConversion.WidenBFloat16(Vector256.Load(wr + i)), Vector512.Load(x + i), a0);
            float s = Vector512.Sum(a0 + a1);
            for (; i < k; i++) s += NumberConversion.BFloat16ToSingle(wr[i]) * x[i];
            y[r] = s;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void RowsHalf(ushort* w, nint ldw, int rows, float* x, int k, float* y)
    {
        for (int r = 0; r < rows; r++)
        {
            // The summation order of DotF32, so an f16 product equals the F32 one of the widened weights bit for bit.
            ushort* wr = w + r * ldw;
            Vector512<float> a0 = default, a1 = default;
            int i = 0;
            for (; i + 32 <= k; i += 32)
            {
                a0 = Vector512.FusedMultiplyAdd(NumberConversion.WidenHalf(Vector256.Load(wr + i)), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(NumberConversion.WidenHalf(Vector256.Load(wr + i + 16)), Vector512.Load(x + i + 16), a1);
            }
            for (; i + 16 <= k; i += 16)
                a0 = Vector512.FusedMultiplyAdd(NumberConversion.WidenHalf(Vector256.Load(wr + i)), Vector512.Load(x + i), a0);
            float s = Vector512.Sum(a0 + a1);
            for (; i < k; i++) s += NumberConversion.HalfToSingle(wr[i]) * x[i];
            y[r] = s;
        }
    }

    /// <summary>Fallback without AVX-512: dequantize a row into a stack buffer and dot with portable vectors.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void RowsPortable(ref Job job, byte* w, int rows, float* y)
    {
        const int Chunk = 256;
        float* buffer = stackalloc float[Chunk];
        for (int r = 0; r < rows; r++)
        {
            byte* row = w + r * job.RowBytes;
            var sum = Vector256<float>.Zero;
            float tail = 0;
            for (int start = 0; start < job.K; start += Chunk)
            {
                int count = Math.Min(Chunk, job.K - start);
                WeightRows.DequantizeSegment(job.Type, row, start, count, buffer);
                int i = 0;
                for (; i + 8 <= count; i += 8)
                    sum = Vector256.FusedMultiplyAdd(Vector256.Load(buffer + i), Vector256.Load(job.X + start + i), sum);
                for (; i < count; i++) tail += buffer[i] * job.X[start + i];
            }
            y[r] = Vector256.Sum(sum) + tail;
        }
    }

    /// <summary>Reference twin: dequantize each row to fp32 and accumulate in double.</summary>
    public static void MultiplyReference(TensorType type, byte* weights, long rowBytes, int n, int k, float* x, float* y)
    {
        var row = new float[k];
        fixed (float* r = row)
            for (int j = 0; j < n; j++)
            {
                WeightRows.DequantizeSegment(type, weights + j * rowBytes, 0, k, r);
                double s = 0;
                for (int i = 0; i < k; i++) s += (double)r[i] * x[i];
                y[j] = (float)s;
            }
    }

    /// <summary>Per-thread native buffers, grown as needed and kept for the life of the thread: the activations
    /// quantized to a dot format (written by the calling thread, read by all), and one dequantized weight row (each
    /// worker its own).</summary>
    sealed class ThreadBuffer
    {
        [ThreadStatic] static ThreadBuffer? _activations, _row, _partial;
        public static ThreadBuffer Activations => _activations ??= new ThreadBuffer();
        public static ThreadBuffer Row => _row ??= new ThreadBuffer();
        /// <summary>A worker's results for many activation rows before they are added to the output.</summary>
        public static ThreadBuffer Partial => _partial ??= new ThreadBuffer();

        byte* _buffer;
        int _capacity;

        public byte* Get(int bytes)
        {
            if (_capacity < bytes)
            {
                if (_buffer != null) NativeMemory.AlignedFree(_buffer);
                _capacity = Math.Max(bytes, 4096);
                _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)_capacity, 64);
            }
            return _buffer;
        }
    }
}
