using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors;

/// <summary>How the right-hand operand B of a GEMM is stored.</summary>
public enum GemmBLayout
{
    /// <summary>B[k, n] row-major, n contiguous (backward dX = dY·W uses W this way).</summary>
    KByN,
    /// <summary>B given as W[n, k] row-major, k contiguous: C = A·Wᵀ (every Linear forward).</summary>
    NByK,
}

/// <summary>
/// fp32 matrix multiply C[M,N] (+)= op(A)[M,K] · B[K,N], GotoBLAS style: B is packed into KC×NR slivers
/// (n contiguous: W[n, k] transposed, or dequantized from bf16/f16/quantized weights on the fly; fp32 B[k, n] already
/// is, and is read in place), and a 6×64 register-tiled AVX-512 micro-kernel broadcasts six values of A, read in place
/// row-major or transposed, and FMAs into 24 accumulators.
/// Work is split over N, or over M when the 64-wide slivers do not divide evenly among the pool's threads, in shares
/// sized by the threads' learned speeds (<see cref="WorkerPool.Balanced"/>).
/// </summary>
public static unsafe class Gemm
{
    const int MR = 6;       // rows of C per micro-tile
    const int NR = 64;      // columns of C per micro-tile (4 × Vector512)
    const int KC = 256;     // depth of one block of B read in place (B[k, n]), and the largest fused low-rank term
    const int NC = 512;     // columns of one such block: KC·NC·4 = 512 KiB, sized for L2
    const int MaxNC = 640;  // a thread's columns up to this many go in one block (576 as 512 + 64 cost a pass over A for one sliver)
    const int WeightKC = 576;  // depth of one block of a transposed-and-packed weight W[n, k] (every Linear forward)
    const int WeightNC = 384;  // its columns: WeightKC·WeightNC·4 = 864 KiB

    /// <summary>The largest rank of a low-rank term fused into a GEMM (<see cref="LowRankTerm"/>): training's LoRA
    /// product runs in the same pass over B as the base weights, one KC-deep block, so a LoRA rank above this cannot train.</summary>
    public const int MaxFusedRank = KC;

    /// <summary>Operand description handed to the worker threads (lives on the caller's stack).</summary>
    struct Job
    {
        public int M, N, K;
        public float* A; public nint Lda; public bool TransposeA;      // A[M,K] (or stored [K,M] when transposed)
        public byte* B; public long Ldb; public GemmBLayout BLayout; public TensorType BType; // ldb in elements of BType (row bytes for quantized)
        public float* C; public nint Ldc; public bool Accumulate;
        // An optional second product added in the same pass (a LoRA term): A2[M, K2] row-major · B2 (fp32, same layout as B).
        public float* A2; public nint Lda2; public float* B2; public long Ldb2; public int K2;
        public float* Prepacked;                                          // W packed once (PackedF32Weights): [slivers][K][NR]
    }

    /// <summary>A low-rank term L·R added to a product in the same pass over C (LoRA: (s·X·Aᵀ)·Bᵀ forward, (s·dY·B)·A backward).</summary>
    /// <param name="Left">[M, Rank] row-major, row stride LeftStride</param>
    /// <param name="Right">NByK products: [N, Rank] row-major; KByN products: [Rank, N] row-major; row stride RightStride</param>
    public readonly record struct LowRankTerm(nint Left, int LeftStride, nint Right, int RightStride, int Rank);

    /// <summary>C[M,N] = (accumulate ? C : 0) + op(A)·B for fp32 operands.</summary>
    /// <param name="a">A[M,K] row-major with row stride lda, or (transposeA) stored as [K,M] with row stride lda</param>
    /// <param name="b">B[K,N] (KByN) or W[N,K] (NByK), row stride ldb floats</param>
    /// <param name="c">C[M,N], row stride ldc</param>
    public static void Multiply(WorkerPool pool, int m, int n, int k,
        float* a, int lda, bool transposeA, float* b, int ldb, GemmBLayout layout, float* c, int ldc, bool accumulate)
    {
        var job = new Job
        {
            M = m, N = n, K = k, A = a, Lda = lda, TransposeA = transposeA,
            B = (byte*)b, Ldb = ldb, BLayout = layout, BType = TensorType.F32, C = c, Ldc = ldc, Accumulate = accumulate,
        };
        Run(pool, ref job);
    }

    /// <summary>The same as <see cref="Multiply"/> but on the calling thread only (for callers that parallelize
    /// at a coarser level, such as attention over heads).</summary>
    public static void MultiplySerial(int m, int n, int k, float* a, int lda, bool transposeA,
        float* b, int ldb, GemmBLayout layout, float* c, int ldc, bool accumulate)
    {
        if (m <= 0 || n <= 0) return;
        var job = new Job
        {
            M = m, N = n, K = k, A = a, Lda = lda, TransposeA = transposeA,
            B = (byte*)b, Ldb = ldb, BLayout = layout, BType = TensorType.F32, C = c, Ldc = ldc, Accumulate = accumulate,
        };
        if (k <= 0) { if (!accumulate) for (int i = 0; i < m; i++) new Span<float>(c + i * ldc, n).Clear(); return; }
        Compute(ref job, 0, m, 0, n, Scratch.ForThread());
    }

    /// <summary>Y[M, W.Rows] = (accumulate ? Y : 0) + X[M, W.Cols] · Wᵀ for a weight of any supported type.</summary>
    /// <param name="x">X[M, K] row stride ldx</param>
    /// <param name="weights">W[N, K] rows of <paramref name="rowBytes"/> bytes in <paramref name="type"/></param>
    /// <param name="y">Y[M, N] row stride ldy</param>
    /// <param name="precision">Exact: X stays fp32 (typed weights are widened or dequantized to fp32 while B is
    /// packed, so the result is bit-identical to this GEMM on the widened weights as F32); Fast: BF16 / Q8_0 / Q4_0
    /// weights may take the reduced-precision kernels of <see cref="Emitted.WeightGemm"/>, and X meets Q4_K / Q6_K weights
    /// rounded to Q8_K as in llama.cpp (<see cref="RoundRowsToQ8_K"/>)</param>
    public static void MultiplyWeights(WorkerPool pool, int m, int n, int k, float* x, int ldx,
        TensorType type, byte* weights, long rowBytes, float* y, int ldy, bool accumulate, ComputePrecision precision = ComputePrecision.Fast) =>
        MultiplyWeights(pool, m, n, k, x, ldx, type, weights, rowBytes, y, ldy, accumulate, null, precision);

    /// <summary>Y = (accumulate ? Y : 0) + X·Wᵀ (+ L·Rᵀ, a low-rank term computed in the same pass).</summary>
    public static void MultiplyWeights(WorkerPool pool, int m, int n, int k, float* x, int ldx,
        TensorType type, byte* weights, long rowBytes, float* y, int ldy, bool accumulate, LowRankTerm? lowRank,
        ComputePrecision precision = ComputePrecision.Fast)
    {
        if (type != TensorType.F32 && k % Math.Max(1, type.Traits().BlockSize) != 0)
            throw new ArgumentException($"K={k} is not a multiple of the {type.Name()} block size");
        // ---- helper/emit: BF16 / Q8_0 / Q4_0 weights go to the vdpbf16ps / vpdpbusd GEMMs (or their managed twins),
        // which round X to bf16 / quantize X to Q8_0 as llama.cpp does; false when the machine or type isn't covered.
        if (precision == ComputePrecision.Fast && lowRank == null && m >= Emitted.WeightGemm.MinimumRows
            && Emitted.WeightGemm.TryMultiplyWeights(pool, m, n, k, x, ldx, type, weights, rowBytes, y, ldy, accumulate))
            return;
        // ---- end helper/emit
        if (precision == ComputePrecision.Fast && lowRank == null && type is TensorType.Q4_K or TensorType.Q6_K)
        {
            x = RoundRowsToQ8_K(x, ldx, m, k);
            ldx = k;
        }
        var job = new Job
        {
            M = m, N = n, K = k, A = x, Lda = ldx, B = weights, BLayout = GemmBLayout.NByK, BType = type,
            Ldb = type == TensorType.F32 ? rowBytes / 4 : rowBytes, C = y, Ldc = ldy, Accumulate = accumulate,
        };
        SetLowRank(ref job, lowRank);
        Run(pool, ref job);
    }

    [ThreadStatic] static float* _roundedRows;
    [ThreadStatic] static long _roundedCapacity;

    /// <summary>X[m, k] rounded to Q8_K and back, into a per-thread buffer [m, k]: llama.cpp quantizes activations to
    /// Q8_K for K-quant weights, and the fp32 GEMM on these rounded values and the dequantized weights computes its
    /// int8 dot products' values up to fp32 summation order, at the GEMM's speed (the int8 row kernels ran 3× slower).</summary>
    static float* RoundRowsToQ8_K(float* x, int ldx, int m, int k)
    {
        long floats = checked((long)m * k);
        if (_roundedCapacity < floats)
        {
            if (_roundedRows != null) NativeMemory.AlignedFree(_roundedRows);
            _roundedRows = (float*)NativeMemory.AlignedAlloc(checked((nuint)(floats * sizeof(float))), 64);
            _roundedCapacity = floats;
        }
        int bytes = checked((int)TensorType.Q8_K.Traits().BytesFor(k));
        Span<byte> blocks = bytes <= 32768 ? stackalloc byte[bytes] : new byte[bytes]; // [k/256] Q8_K blocks, one row
        for (int r = 0; r < m; r++)
        {
            Quantization.BlockQuantization.QuantizeRow(TensorType.Q8_K, new ReadOnlySpan<float>(x + (long)r * ldx, k), blocks);
            Quantization.BlockQuantization.DequantizeRow(TensorType.Q8_K, blocks, new Span<float>(_roundedRows + (long)r * k, k));
        }
        return _roundedRows;
    }

    /// <summary>C[M, W.Cols] = (accumulate ? C : 0) + A[M, W.Rows] · W for a weight of any supported type
    /// (the input gradient of a projection: dX = dY·W).</summary>
    /// <param name="a">A[M, K = W.Rows] row stride lda</param>
    /// <param name="weights">W[K, N] rows of <paramref name="rowBytes"/> bytes in <paramref name="type"/></param>
    public static void MultiplyByWeights(WorkerPool pool, int m, int n, int k, float* a, int lda,
        TensorType type, byte* weights, long rowBytes, float* c, int ldc, bool accumulate, LowRankTerm? lowRank = null)
    {
        var job = new Job
        {
            M = m, N = n, K = k, A = a, Lda = lda, B = weights, BLayout = GemmBLayout.KByN, BType = type,
            Ldb = type == TensorType.F32 ? rowBytes / 4 : rowBytes, C = c, Ldc = ldc, Accumulate = accumulate,
        };
        SetLowRank(ref job, lowRank);
        Run(pool, ref job);
    }

    static void SetLowRank(ref Job job, LowRankTerm? term)
    {
        if (term is not LowRankTerm t || t.Rank == 0) return;
        if (t.Rank > KC) throw new ArgumentException($"low-rank terms up to rank {KC} are fused; got {t.Rank}");
        job.A2 = (float*)t.Left; job.Lda2 = t.LeftStride; job.B2 = (float*)t.Right; job.Ldb2 = t.RightStride; job.K2 = t.Rank;
    }

    /// <summary>
    /// An F32 weight W[N, K] transposed once into the GEMM's NR-column slivers over the whole depth, [⌈N/NR⌉][K][NR]
    /// (the edge sliver zero-padded): exactly what the GEMM packs per call, so products through it are bit-identical to
    /// <see cref="MultiplyWeights(WorkerPool, int, int, int, float*, int, TensorType, byte*, long, float*, int, bool, ComputePrecision)"/>
    /// for every row count, and a few rows no longer pay a pass that reads and writes all of W. Null for W of at most
    /// 16 rows (those take the narrow kernel).
    /// </summary>
    /// <param name="weights">W[N, K] fp32, row stride ldw floats</param>
    /// <param name="into">64-byte aligned memory of <see cref="PackedWeightsBytes"/> bytes that the caller owns and keeps
    /// while the packed copy is used (an expert cache's slot); null allocates</param>
    public static PackedF32Weights? TryPackWeights(WorkerPool pool, float* weights, long ldw, int n, int k, byte* into = null)
    {
        if (n <= NarrowColumns || k <= 0) return null;
        var packed = into == null ? new PackedF32Weights(n, k) : new PackedF32Weights(n, k, into);
        var job = new Job { N = n, K = k, B = (byte*)weights, Ldb = ldw, Prepacked = packed.Pointer };
        pool.Run(&PackWeightsWorker, &job);
        return packed;
    }

    /// <summary>Bytes <see cref="TryPackWeights"/> packs W[N, K] into, or 0 when it does not pack such a weight.</summary>
    public static long PackedWeightsBytes(int n, int k) => n <= NarrowColumns || k <= 0 ? 0 : PackedF32Weights.BytesFor(n, k);

    static void PackWeightsWorker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        int slivers = (job.N + NR - 1) / NR;
        var (s0, s1) = WorkerPool.Share(slivers, thread, threads);
        for (int sliver = s0; sliver < s1; sliver++)
        {
            int nr = Math.Min(NR, job.N - sliver * NR);
            float* dst = job.Prepacked + (long)sliver * job.K * NR;
            if (nr < NR) new Span<float>(dst, job.K * NR).Clear();
            Transpose.Block((float*)job.B + (long)sliver * NR * job.Ldb, (nint)job.Ldb, dst, NR, nr, job.K);
        }
    }

    /// <summary>Y[M, N] = (accumulate ? Y : 0) + X[M, K]·Wᵀ for a weight packed by <see cref="TryPackWeights"/>; the
    /// threads split W's slivers, so each streams only its own part of the packed copy.</summary>
    /// <param name="x">X[M, K] row stride ldx</param>
    /// <param name="y">Y[M, N] row stride ldy</param>
    public static void MultiplyPacked(WorkerPool pool, int m, float* x, int ldx, PackedF32Weights weights, float* y, int ldy, bool accumulate)
    {
        if (m <= 0) return;
        var job = new Job
        {
            M = m, N = weights.N, K = weights.K, A = x, Lda = ldx, BLayout = GemmBLayout.NByK, BType = TensorType.F32,
            C = y, Ldc = ldy, Accumulate = accumulate, Prepacked = weights.Pointer,
        };
        pool.Run(&Worker, &job);
    }

    static void Run(WorkerPool pool, ref Job job)
    {
        if (job.M <= 0 || job.N <= 0) return;
        if (job.K <= 0)
        {
            if (!job.Accumulate) for (int i = 0; i < job.M; i++) new Span<float>(job.C + i * job.Ldc, job.N).Clear();
            return;
        }
        if (job.N <= NarrowColumns && (job.BType == TensorType.F32 || job.BLayout == GemmBLayout.NByK) && job.K2 == 0 && Avx512F.IsSupported)
        {
            // LoRA's rank-r products, and weights of at most 16 rows (typed ones too, so an exact product with widened
            // weights sums exactly as the F32 one): a 64-wide tile would be 3/4 padding.
            NarrowRun(pool, ref job);
            return;
        }
        fixed (Job* p = &job) pool.Run(&Worker, p);
    }

    /// <summary>Split N (each thread packs only its own columns of B) when the NR-wide slivers divide evenly among the
    /// threads; otherwise split M, every thread packing all of B: at N = 576 (9 slivers) a 5 : 4 column split stalls
    /// one thread, and a split that cuts the odd sliver by rows measured slower still (its single-sliver half re-reads
    /// A for a quarter of the usual work).</summary>
    static void Worker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        int slivers = (job.N + NR - 1) / NR;
        var scratch = Scratch.ForThread();
        if (threads > 1 && slivers % threads != 0 && job.M >= MR * threads && job.Prepacked == null)
        {
            var (m0, m1) = WorkerPool.Balanced(job.M, thread, threads, MR);
            if (m0 < m1) Compute(ref job, m0, m1, 0, job.N, scratch);
        }
        else
        {
            var (n0, n1) = WorkerPool.Balanced(job.N, thread, threads, NR);
            if (n0 < n1) Compute(ref job, 0, job.M, n0, n1, scratch);
        }
    }

    /// <summary>The blocked loop nest over one thread's part of C: for each column block, the depth blocks of the
    /// product and then those of the optional low-rank term, all accumulating into the same C tiles.</summary>
    static void Compute(ref Job job, int m0, int m1, int n0, int n1, Scratch scratch)
    {
        Job second = job;
        second.A = job.A2; second.Lda = job.Lda2; second.TransposeA = false; second.B = (byte*)job.B2; second.Ldb = job.Ldb2;
        second.BType = TensorType.F32; second.K = job.K2;
        // Packed weights W[n, k] (every Linear forward) go in deep, narrower blocks: one pass of C loads and stores per
        // 576 of depth instead of per 192–256 (the C tiles miss cache at these M). Alternated call by call
        // (`Hone.Bench gemm 2 train|prefill|head compare-blocking`): 1024×1536×576 +16%, 1024×576×1536 +3%,
        // 512×1536×576 +27%, 512×576×1536 +10%, the head's 256×49152×576 +5%. B read in place (B[k, n]) measured
        // equal or slower that way (the head's dX −2..−5%), so it keeps the shallow, wide blocks.
        bool weight = job.BLayout == GemmBLayout.NByK && !job.TransposeA && !ShallowWeightBlocks;
        int depth = DepthBlock(job.K, job.BType, weight ? WeightKC : KC);
        int columns = ColumnBlock(n1 - n0, weight ? WeightNC : NC, weight ? WeightNC : MaxNC);
        for (int jc = n0; jc < n1; jc += columns)
        {
            int nc = Math.Min(columns, n1 - jc);
            for (int pc = 0; pc < job.K; pc += depth)
                Block(ref job, m0, m1, jc, nc, pc, Math.Min(depth, job.K - pc), job.Accumulate || pc > 0, scratch);
            if (job.K2 > 0) Block(ref second, m0, m1, jc, nc, 0, job.K2, true, scratch);
        }
    }

    /// <summary>Columns of one packed B block for a thread's range of <paramref name="width"/> columns: all of them up to
    /// <paramref name="singleBlockColumns"/>, else equal blocks of at most <paramref name="blockColumns"/> (768 as 2 × 384, not 512 + 256). Measured A/B on the SmolLM2 training
    /// shapes: equal or up to 7% faster than fixed 512-column blocks.</summary>
    static int ColumnBlock(int width, int blockColumns, int singleBlockColumns)
    {
        if (width <= singleBlockColumns) return width;
        int blocks = (width + blockColumns - 1) / blockColumns;
        return ((width + blocks - 1) / blocks + NR - 1) / NR * NR;
    }

    /// <summary>Depth of the packed blocks: K cut into equal blocks of at most <paramref name="maxDepth"/> (K = 576 as
    /// 3 × 192 at 256, not 256 + 256 + 64, whose last block pays a whole pass of C loads and stores for a quarter of the
    /// work), rounded up to whole quantization blocks for typed weights (never past the largest whole-block depth).</summary>
    static int DepthBlock(int k, TensorType type, int maxDepth)
    {
        if (k <= maxDepth) return Math.Max(k, 1);
        // Plain types share F32's blocking, so widened bf16/f16 weights sum in exactly the F32 product's order.
        int granularity = type.Traits().IsQuantized ? type.Traits().BlockSize : 16;
        int blocks = (k + maxDepth - 1) / maxDepth;
        int depth = (k + blocks - 1) / blocks;
        return Math.Min(maxDepth / granularity * granularity, (depth + granularity - 1) / granularity * granularity);
    }

    /// <summary>One depth block: pack B[pc..pc+kc, jc..jc+nc], then every MR×NR tile of this thread's rows.</summary>
    static void Block(ref Job job, int m0, int m1, int jc, int nc, int pc, int kc, bool load, Scratch scratch)
    {
        float* packedB = scratch.PackedB;   // [nc/NR][kc][NR]
        float* tile = scratch.Tile;         // [MR][NR] for edge tiles
        if (job.Prepacked == null) PackB(ref job, pc, kc, jc, nc, packedB, scratch);
        for (int ir = m0; ir < m1; ir += MR)
        {
            int mr = Math.Min(MR, m1 - ir);
            // A is read in place: row-major as six row pointers stepping one float per k; stored transposed as six
            // adjacent columns stepping a stored row per k. (Packing transposed A into [kc][MR] first did the same
            // strided reads plus a copy: weight-gradient products ran at 250 GFLOP/s packed, 340–370 in place.)
            float* a; nint rowStride, kStride;
            if (!job.TransposeA) { a = job.A + ir * job.Lda + pc; rowStride = job.Lda; kStride = 1; }
            else { a = job.A + pc * job.Lda + ir; rowStride = 1; kStride = job.Lda; }
            for (int jr = 0; jr < nc; jr += NR)
            {
                int nr = Math.Min(NR, nc - jr);
                float* c = job.C + ir * job.Ldc + jc + jr;
                float* b; nint bStride;
                if (job.Prepacked != null) { b = job.Prepacked + (long)((jc + jr) / NR) * job.K * NR + (long)pc * NR; bStride = NR; }
                else if (nr == NR && InPlaceB(ref job)) { b = (float*)job.B + (long)pc * job.Ldb + jc + jr; bStride = (nint)job.Ldb; }
                else { b = packedB + (jr / NR) * (kc * NR); bStride = NR; }
                if (mr == MR && nr == NR) Kernel(a, rowStride, kStride, mr, b, bStride, kc, c, job.Ldc, load);
                else
                {
                    // Edge tile through the [MR][NR] scratch tile (vector copies: a 4-row edge of a 64-row attention
                    // block is one tile in eleven); its rows past mr and columns past nr are never read back.
                    if (load)
                        for (int i = 0; i < mr; i++) new ReadOnlySpan<float>(c + i * job.Ldc, nr).CopyTo(new Span<float>(tile + i * NR, nr));
                    Kernel(a, rowStride, kStride, mr, b, bStride, kc, tile, NR, load);
                    for (int i = 0; i < mr; i++) new ReadOnlySpan<float>(tile + i * NR, nr).CopyTo(new Span<float>(c + i * job.Ldc, nr));
                }
            }
        }
    }

    /// <summary>fp32 B[k, n] rows already hold NR contiguous columns per k: the kernel reads full slivers in place
    /// (equal or up to 10% faster than copying them into the packed block, and no copy).</summary>
    /// <summary>For the benchmark project's A/B: packed weights in the shallow 256-deep blocks of B read in place.</summary>
    internal static bool ShallowWeightBlocks;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static bool InPlaceB(ref Job job) => job.BLayout == GemmBLayout.KByN && job.BType == TensorType.F32;

    /// <summary>Pack depth pc..pc+kc, columns jc..jc+nc of B into NR-wide slivers [kc][NR] (zero-padded columns).</summary>
    static void PackB(ref Job job, int pc, int kc, int jc, int nc, float* dst, Scratch scratch)
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int nr = Math.Min(NR, nc - jr);
            float* sliver = dst + (jr / NR) * (kc * NR);
            if (nr == NR && InPlaceB(ref job)) continue; // read in place by the kernel
            if (nr < NR) new Span<float>(sliver, kc * NR).Clear();
            if (job.BLayout == GemmBLayout.KByN && job.BType == TensorType.F32)
            {
                float* src = (float*)job.B + (long)pc * job.Ldb + jc + jr;
                for (int p = 0; p < kc; p++) // only a partial last sliver gets here (full ones are read in place)
                    new ReadOnlySpan<float>(src + p * job.Ldb, nr).CopyTo(new Span<float>(sliver + p * NR, nr));
            }
            else if (job.BLayout == GemmBLayout.KByN)
            {
                // Typed W[k, n] rows (dX = dY·W): dequantize the whole blocks covering columns [c0, c0+nr) of each row.
                int block = job.BType.Traits().BlockSize, c0 = jc + jr;
                int start = c0 / block * block, end = Math.Min(job.N, (c0 + nr + block - 1) / block * block);
                float* staging = scratch.Staging;
                for (int p = 0; p < kc; p++)
                {
                    WeightRows.DequantizeSegment(job.BType, job.B + (long)(pc + p) * job.Ldb, start, end - start, staging);
                    new ReadOnlySpan<float>(staging + (c0 - start), nr).CopyTo(new Span<float>(sliver + p * NR, nr));
                }
            }
            else if (job.BType == TensorType.F32)
            {
                float* src = (float*)job.B + (long)(jc + jr) * job.Ldb + pc;
                Transpose.Block(src, (nint)job.Ldb, sliver, NR, nr, kc);
            }
            else
            {
                // Typed weights: dequantize nr row segments into a row-major staging block, then transpose.
                float* rows = scratch.Staging; // [NR][kc]
                for (int j = 0; j < nr; j++)
                    WeightRows.DequantizeSegment(job.BType, job.B + (long)(jc + jr + j) * job.Ldb, pc, kc, rows + j * kc);
                Transpose.Block(rows, kc, sliver, NR, nr, kc);
            }
        }
    }

    /// <summary>C[6, 64] (+)= A[6, kc] · B[kc][64], on the widest instruction set present. B's row p is b + p·bStride
    /// (NR in a packed sliver, ldb read in place). Row i of A, depth p
    /// is a[i·rowStride + p·kStride] (packed [kc][MR]: 1, MR; row-major: lda, 1; stored transposed: 1, lda). The first
    /// mr rows are real; missing rows repeat row 0 and their results land in the discarded part of the edge tile.</summary>
    static void Kernel(float* a, nint rowStride, nint kStride, int mr, float* b, nint bStride, int kc, float* c, nint ldc, bool load)
    {
        if (mr == 1 && Avx512F.IsSupported) { KernelOneRow512(a, kStride, b, bStride, kc, c, load); return; }
        float* a0 = a, a1 = mr > 1 ? a + rowStride : a, a2 = mr > 2 ? a + 2 * rowStride : a;
        float* a3 = mr > 3 ? a + 3 * rowStride : a, a4 = mr > 4 ? a + 4 * rowStride : a, a5 = mr > 5 ? a + 5 * rowStride : a;
        if (Avx512F.IsSupported) Kernel512(a0, a1, a2, a3, a4, a5, kStride, b, bStride, kc, c, ldc, load);
        else if (Fma.IsSupported) for (int g = 0; g < NR; g += 16) Kernel256(a0, a1, a2, a3, a4, a5, kStride, b + g, bStride, kc, c + g, ldc, load);
        else KernelScalar(a0, a1, a2, a3, a4, a5, kStride, b, bStride, kc, c, ldc, load);
    }

    /// <summary>AVX2+FMA fallback: a 6×16 column group of the 6×64 tile (12 accumulators of 16 registers).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Kernel256(float* a0, float* a1, float* a2, float* a3, float* a4, float* a5, nint step, float* b, nint bStride, int kc, float* c, nint ldc, bool load)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (load)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
            c40 = Vector256.Load(c + 4 * ldc); c41 = Vector256.Load(c + 4 * ldc + 8);
            c50 = Vector256.Load(c + 5 * ldc); c51 = Vector256.Load(c + 5 * ldc + 8);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = default;
        for (nint p = 0, q = 0; p < kc; p++, q += step)
        {
            var b0 = Vector256.Load(b); var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a0[q]); c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[q]); c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[q]); c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[q]); c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
            x = Vector256.Create(a4[q]); c40 = Fma.MultiplyAdd(x, b0, c40); c41 = Fma.MultiplyAdd(x, b1, c41);
            x = Vector256.Create(a5[q]); c50 = Fma.MultiplyAdd(x, b0, c50); c51 = Fma.MultiplyAdd(x, b1, c51);
            b += bStride;
        }
        c00.Store(c); c01.Store(c + 8); c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8); c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 8); c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 8);
    }

    /// <summary>Scalar fallback (and the shape of the computation, spelled out).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void KernelScalar(float* a0, float* a1, float* a2, float* a3, float* a4, float* a5, nint step, float* b, nint bStride, int kc, float* c, nint ldc, bool load)
    {
        float** rows = stackalloc float*[MR] { a0, a1, a2, a3, a4, a5 };
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
            {
                float s = load ? c[i * ldc + j] : 0f;
                for (int p = 0; p < kc; p++) s = MathF.FusedMultiplyAdd(rows[i][p * step], b[p * bStride + j], s);
                c[i * ldc + j] = s;
            }
    }

    /// <summary>AVX-512: 24 Vector512 accumulators stay in registers.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Kernel512(float* a0, float* a1, float* a2, float* a3, float* a4, float* a5, nint step, float* b, nint bStride, int kc, float* c, nint ldc, bool load)
    {
        Vector512<float> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23,
                         c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
        if (load)
        {
            float* r = c;
            c00 = Vector512.Load(r); c01 = Vector512.Load(r + 16); c02 = Vector512.Load(r + 32); c03 = Vector512.Load(r + 48); r += ldc;
            c10 = Vector512.Load(r); c11 = Vector512.Load(r + 16); c12 = Vector512.Load(r + 32); c13 = Vector512.Load(r + 48); r += ldc;
            c20 = Vector512.Load(r); c21 = Vector512.Load(r + 16); c22 = Vector512.Load(r + 32); c23 = Vector512.Load(r + 48); r += ldc;
            c30 = Vector512.Load(r); c31 = Vector512.Load(r + 16); c32 = Vector512.Load(r + 32); c33 = Vector512.Load(r + 48); r += ldc;
            c40 = Vector512.Load(r); c41 = Vector512.Load(r + 16); c42 = Vector512.Load(r + 32); c43 = Vector512.Load(r + 48); r += ldc;
            c50 = Vector512.Load(r); c51 = Vector512.Load(r + 16); c52 = Vector512.Load(r + 32); c53 = Vector512.Load(r + 48);
        }
        else
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = default;
            c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = default;
        }
        for (nint p = 0, q = 0; p < kc; p++, q += step)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + 16); var b2 = Vector512.Load(b + 32); var b3 = Vector512.Load(b + 48);
            var x0 = Vector512.Create(a0[q]);
            c00 = Avx512F.FusedMultiplyAdd(x0, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x0, b1, c01);
            c02 = Avx512F.FusedMultiplyAdd(x0, b2, c02); c03 = Avx512F.FusedMultiplyAdd(x0, b3, c03);
            var x1 = Vector512.Create(a1[q]);
            c10 = Avx512F.FusedMultiplyAdd(x1, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x1, b1, c11);
            c12 = Avx512F.FusedMultiplyAdd(x1, b2, c12); c13 = Avx512F.FusedMultiplyAdd(x1, b3, c13);
            var x2 = Vector512.Create(a2[q]);
            c20 = Avx512F.FusedMultiplyAdd(x2, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x2, b1, c21);
            c22 = Avx512F.FusedMultiplyAdd(x2, b2, c22); c23 = Avx512F.FusedMultiplyAdd(x2, b3, c23);
            var x3 = Vector512.Create(a3[q]);
            c30 = Avx512F.FusedMultiplyAdd(x3, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x3, b1, c31);
            c32 = Avx512F.FusedMultiplyAdd(x3, b2, c32); c33 = Avx512F.FusedMultiplyAdd(x3, b3, c33);
            var x4 = Vector512.Create(a4[q]);
            c40 = Avx512F.FusedMultiplyAdd(x4, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x4, b1, c41);
            c42 = Avx512F.FusedMultiplyAdd(x4, b2, c42); c43 = Avx512F.FusedMultiplyAdd(x4, b3, c43);
            var x5 = Vector512.Create(a5[q]);
            c50 = Avx512F.FusedMultiplyAdd(x5, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x5, b1, c51);
            c52 = Avx512F.FusedMultiplyAdd(x5, b2, c52); c53 = Avx512F.FusedMultiplyAdd(x5, b3, c53);
            b += bStride;
        }
        float* o = c;
        Vector512.Store(c00, o); Vector512.Store(c01, o + 16); Vector512.Store(c02, o + 32); Vector512.Store(c03, o + 48); o += ldc;
        Vector512.Store(c10, o); Vector512.Store(c11, o + 16); Vector512.Store(c12, o + 32); Vector512.Store(c13, o + 48); o += ldc;
        Vector512.Store(c20, o); Vector512.Store(c21, o + 16); Vector512.Store(c22, o + 32); Vector512.Store(c23, o + 48); o += ldc;
        Vector512.Store(c30, o); Vector512.Store(c31, o + 16); Vector512.Store(c32, o + 32); Vector512.Store(c33, o + 48); o += ldc;
        Vector512.Store(c40, o); Vector512.Store(c41, o + 16); Vector512.Store(c42, o + 32); Vector512.Store(c43, o + 48); o += ldc;
        Vector512.Store(c50, o); Vector512.Store(c51, o + 16); Vector512.Store(c52, o + 32); Vector512.Store(c53, o + 48);
    }

    /// <summary>Row 0 of <see cref="Kernel512"/> alone, operation for operation (a one-row product, such as one decode
    /// token on packed weights, would otherwise compute six rows to keep one: memory bounds it either way, but the
    /// five wasted rows cost a fifth of one sequence's decode speed on F32 weights).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void KernelOneRow512(float* a, nint step, float* b, nint bStride, int kc, float* c, bool load)
    {
        Vector512<float> c0, c1, c2, c3;
        if (load) { c0 = Vector512.Load(c); c1 = Vector512.Load(c + 16); c2 = Vector512.Load(c + 32); c3 = Vector512.Load(c + 48); }
        else c0 = c1 = c2 = c3 = default;
        for (nint p = 0, q = 0; p < kc; p++, q += step)
        {
            var x = Vector512.Create(a[q]);
            c0 = Avx512F.FusedMultiplyAdd(x, Vector512.Load(b), c0); c1 = Avx512F.FusedMultiplyAdd(x, Vector512.Load(b + 16), c1);
            c2 = Avx512F.FusedMultiplyAdd(x, Vector512.Load(b + 32), c2); c3 = Avx512F.FusedMultiplyAdd(x, Vector512.Load(b + 48), c3);
            b += bStride;
        }
        Vector512.Store(c0, c); Vector512.Store(c1, c + 16); Vector512.Store(c2, c + 32); Vector512.Store(c3, c + 48);
    }

    /// <summary>For the benchmark project: run the micro-kernel alone on L1-resident data; returns FLOPs done.</summary>
    internal static double KernelOnly(int repetitions, int kc)
    {
        var scratch = Scratch.ForThread();
        float* a = scratch.PackedA, b = scratch.PackedB, c = scratch.Tile;
        for (int r = 0; r < repetitions; r++) Kernel(a, 1, MR, MR, b, NR, kc, c, NR, r > 0);
        return 2.0 * MR * NR * kc * repetitions;
    }

    // ---- narrow products (N ≤ 16): the low-rank halves of LoRA ------------------------------------------------

    const int NarrowColumns = 16;  // one Vector512 of C per row
    const int NarrowRows = 16;     // rows per tile: 16 independent FMA chains; row-major A tiles are SIMD-transposed 16×16

    struct NarrowJob
    {
        public float* A; public nint Lda; public bool TransposeA;
        public float* B;                 // packed [K][16], zero beyond N
        public float* C; public nint Ldc; public int M, N, K; public bool Accumulate;
    }

    static void NarrowRun(WorkerPool pool, ref Job job)
    {
        int k = job.K;
        // B packed [K][16] into the calling thread's buffer (the workers only read it during the job). This runs on
        // one thread while the others wait, so it is vector copies / 16×16 transposes, and allocates nothing.
        float* packed = Scratch.ForThread().NarrowB((long)k * NarrowColumns);
        float* b = (float*)job.B;
        if (job.N < NarrowColumns) new Span<float>(packed, k * NarrowColumns).Clear();
        if (job.BLayout == GemmBLayout.NByK && job.BType != TensorType.F32) PackNarrowTypedWeights(ref job, packed);
        else if (job.BLayout == GemmBLayout.NByK) Transpose.Block(b, (nint)job.Ldb, packed, NarrowColumns, job.N, k); // [N][K] → [K][16]
        else if (job.N == NarrowColumns)
            for (int p = 0; p < k; p++) Vector512.Load(b + p * job.Ldb).Store(packed + (long)p * NarrowColumns);
        else
            for (int p = 0; p < k; p++)
                new ReadOnlySpan<float>(b + p * job.Ldb, job.N).CopyTo(new Span<float>(packed + (long)p * NarrowColumns, job.N));
        var narrow = new NarrowJob
        {
            A = job.A, Lda = job.Lda, TransposeA = job.TransposeA, B = packed, C = job.C, Ldc = job.Ldc,
            M = job.M, N = job.N, K = k, Accumulate = job.Accumulate,
        };
        pool.Run(&NarrowWorker, &narrow);
    }

    /// <summary>Typed W[N ≤ 16, K] → packed [K][16] fp32: each row widened (dequantized) in chunks through the staging
    /// buffer, then written down its column.</summary>
    static void PackNarrowTypedWeights(ref Job job, float* packed)
    {
        float* staging = Scratch.ForThread().Staging;
        int chunk = 4096; // a multiple of every block size (1, 32, 256); fits the staging buffer
        for (int j = 0; j < job.N; j++)
            for (int p0 = 0; p0 < job.K; p0 += chunk)
            {
                int count = Math.Min(chunk, job.K - p0);
                WeightRows.DequantizeSegment(job.BType, job.B + (long)j * job.Ldb, p0, count, staging);
                for (int p = 0; p < count; p++) packed[(long)(p0 + p) * NarrowColumns + j] = staging[p];
            }
    }

    static void NarrowWorker(void* context, int thread, int threads)
    {
        ref NarrowJob j = ref *(NarrowJob*)context;
        var (m0, m1) = WorkerPool.Balanced(j.M, thread, threads, NarrowRows);
        if (m0 >= m1) return;
        const int Chunk = 1024;                            // depth staged at a time: [1024][16] floats fit the staging buffer
        float* staging = Scratch.ForThread().Staging;
        float* tile = Scratch.ForThread().Tile;            // C tile [16][16] at the edges
        for (int i0 = m0; i0 < m1; i0 += NarrowRows)
        {
            int rows = Math.Min(NarrowRows, m1 - i0);
            bool full = rows == NarrowRows && j.N == NarrowColumns;
            float* c = full ? j.C + i0 * j.Ldc : tile;
            nint ldc = full ? j.Ldc : NarrowColumns;
            if (!full)
                for (int i = 0; i < NarrowRows; i++)
                    for (int col = 0; col < NarrowColumns; col++)
                        tile[i * NarrowColumns + col] = i < rows && col < j.N && j.Accumulate ? j.C[(i0 + i) * j.Ldc + col] : 0f;
            bool load = j.Accumulate || !full;
            if (j.TransposeA && rows == NarrowRows)
                NarrowKernel(j.A + i0, j.Lda, j.B, j.K, c, ldc, load); // the 16 values of one k are contiguous in place
            else
                for (int p0 = 0; p0 < j.K; p0 += Chunk)
                {
                    int kc = Math.Min(Chunk, j.K - p0);
                    if (rows < NarrowRows) new Span<float>(staging, kc * NarrowRows).Clear();
                    if (j.TransposeA)
                        for (int p = 0; p < kc; p++)
                            for (int i = 0; i < rows; i++) staging[p * NarrowRows + i] = j.A[(p0 + p) * j.Lda + i0 + i];
                    else
                        Transpose.Block(j.A + i0 * j.Lda + p0, j.Lda, staging, NarrowRows, rows, kc); // [rows][kc] → [kc][16]
                    NarrowKernel(staging, NarrowRows, j.B + (long)p0 * NarrowColumns, kc, c, ldc, load || p0 > 0);
                }
            if (!full)
                for (int i = 0; i < rows; i++)
                    for (int col = 0; col < j.N; col++) j.C[(i0 + i) * j.Ldc + col] = tile[i * NarrowColumns + col];
        }
    }

    /// <summary>C[16, 16] (+)= A·B with A(i, k) = a[k·strideK + i] and B packed [K][16].</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void NarrowKernel(float* a, nint strideK, float* b, int k, float* c, nint ldc, bool load)
    {
        Vector512<float> c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15;
        if (load)
        {
            c0 = Vector512.Load(c); c1 = Vector512.Load(c + ldc); c2 = Vector512.Load(c + 2 * ldc); c3 = Vector512.Load(c + 3 * ldc);
            c4 = Vector512.Load(c + 4 * ldc); c5 = Vector512.Load(c + 5 * ldc); c6 = Vector512.Load(c + 6 * ldc); c7 = Vector512.Load(c + 7 * ldc);
            c8 = Vector512.Load(c + 8 * ldc); c9 = Vector512.Load(c + 9 * ldc); c10 = Vector512.Load(c + 10 * ldc); c11 = Vector512.Load(c + 11 * ldc);
            c12 = Vector512.Load(c + 12 * ldc); c13 = Vector512.Load(c + 13 * ldc); c14 = Vector512.Load(c + 14 * ldc); c15 = Vector512.Load(c + 15 * ldc);
        }
        else c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = c12 = c13 = c14 = c15 = default;
        for (int p = 0; p < k; p++)
        {
            var bv = Vector512.Load(b + p * NarrowColumns);
            float* ap = a + p * strideK;
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[0]), bv, c0); c1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[1]), bv, c1);
            c2 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[2]), bv, c2); c3 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[3]), bv, c3);
            c4 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[4]), bv, c4); c5 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[5]), bv, c5);
            c6 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[6]), bv, c6); c7 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[7]), bv, c7);
            c8 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[8]), bv, c8); c9 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[9]), bv, c9);
            c10 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[10]), bv, c10); c11 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[11]), bv, c11);
            c12 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[12]), bv, c12); c13 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[13]), bv, c13);
            c14 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[14]), bv, c14); c15 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[15]), bv, c15);
        }
        Vector512.Store(c0, c); Vector512.Store(c1, c + ldc); Vector512.Store(c2, c + 2 * ldc); Vector512.Store(c3, c + 3 * ldc);
        Vector512.Store(c4, c + 4 * ldc); Vector512.Store(c5, c + 5 * ldc); Vector512.Store(c6, c + 6 * ldc); Vector512.Store(c7, c + 7 * ldc);
        Vector512.Store(c8, c + 8 * ldc); Vector512.Store(c9, c + 9 * ldc); Vector512.Store(c10, c + 10 * ldc); Vector512.Store(c11, c + 11 * ldc);
        Vector512.Store(c12, c + 12 * ldc); Vector512.Store(c13, c + 13 * ldc); Vector512.Store(c14, c + 14 * ldc); Vector512.Store(c15, c + 15 * ldc);
    }

    /// <summary>Plain triple loop in double: the reference twin for tests.</summary>
    public static void MultiplyReference(int m, int n, int k, float* a, int lda, bool transposeA,
        float* b, int ldb, GemmBLayout layout, float* c, int ldc, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = accumulate ? c[i * ldc + j] : 0;
                for (int p = 0; p < k; p++)
                {
                    float av = transposeA ? a[p * lda + i] : a[i * lda + p];
                    float bv = layout == GemmBLayout.KByN ? b[p * ldb + j] : b[j * ldb + p];
                    s += (double)av * bv;
                }
                c[i * ldc + j] = (float)s;
            }
    }

    /// <summary>Per-thread packing buffers, allocated once per thread and reused.</summary>
    sealed class Scratch
    {
        [ThreadStatic] static Scratch? _current;
        public readonly float* PackedB = Alloc(Math.Max(KC * MaxNC, WeightKC * WeightNC));
        public readonly float* PackedA = Alloc(KC * MR + 8);   // the micro-kernel benchmark's A
        public readonly float* Tile = Alloc(MR * NR);
        public readonly float* Staging = Alloc(NR * WeightKC + 2 * 256); // NR rows × depth, or one row's covering blocks

        static float* Alloc(int floats)
        {
            var p = (float*)NativeMemory.AlignedAlloc((nuint)floats * 4, 64);
            NativeMemory.Clear(p, (nuint)floats * 4);
            return p;
        }

        float* _narrowB; long _narrowFloats;

        /// <summary>The narrow products' packed B [K][16], grown on demand.</summary>
        public float* NarrowB(long floats)
        {
            if (_narrowFloats < floats)
            {
                if (_narrowB != null) NativeMemory.AlignedFree(_narrowB);
                _narrowFloats = Math.Max(floats, 16384);
                _narrowB = (float*)NativeMemory.AlignedAlloc((nuint)_narrowFloats * 4, 64);
            }
            return _narrowB;
        }

        // Thread-lifetime buffers: freed when the process ends (a handful of threads, ~1 MiB each).
        public static Scratch ForThread() => _current ??= new Scratch();
    }
}

/// <summary>An F32 weight packed once for <see cref="Gemm.MultiplyPacked"/> (see <see cref="Gemm.TryPackWeights"/>):
/// as many bytes as W again, plus the edge sliver's padding.</summary>
public sealed unsafe class PackedF32Weights
{
    readonly byte[] _storage;

    public int N { get; }
    public int K { get; }
    internal float* Pointer { get; }
    public long ByteLength => BytesFor(N, K);
    internal static long BytesFor(int n, int k) => (n + 63L) / 64 * k * 64 * 4;

    /// <summary>Over memory the caller owns (64-byte aligned, <see cref="ByteLength"/> bytes).</summary>
    internal PackedF32Weights(int n, int k, byte* memory)
    {
        if (((nint)memory & 63) != 0) throw new ArgumentException("packed weights need 64-byte aligned memory");
        N = n; K = k; _storage = [];
        Pointer = (float*)memory;
    }

    internal PackedF32Weights(int n, int k)
    {
        N = n; K = k;
        long bytes = ByteLength;
        if (bytes > Array.MaxLength - 64) throw new ArgumentException($"a packed F32 weight of {n}×{k} needs {bytes} bytes, more than one array holds");
        _storage = GC.AllocateUninitializedArray<byte>((int)bytes + 64, pinned: true);
        byte* start = (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(_storage));
        Pointer = (float*)(((nint)start + 63) & ~(nint)63);
    }
}
