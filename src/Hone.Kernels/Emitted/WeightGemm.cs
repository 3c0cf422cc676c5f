using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Emitted;

/// <summary>Which micro-kernels a <see cref="WeightGemm"/> call runs.</summary>
public enum WeightGemmKernel
{
    /// <summary>Not handled here (no suitable instruction set): the caller uses its own path.</summary>
    None,
    /// <summary>Machine code emitted at run time: vdpbf16ps (AVX512_BF16) or vpdpbusd (AVX512_VNNI).</summary>
    Emitted,
    /// <summary>Managed AVX-512 kernels: fp32 FMA on widened bf16, or vpmaddubsw/vpmaddwd for int8.</summary>
    Avx512,
    /// <summary>Managed AVX2 kernels, the same numerics on 256-bit vectors.</summary>
    Avx2,
}

/// <summary>
/// Prompt-processing GEMMs Y[M,N] (+)= X[M,K]·Wᵀ for weights W[N,K] stored as BF16, Q8_0 or Q4_0, on reduced-precision
/// dot-product instructions.
///
/// Numerics (the same for every kernel choice, up to fp32 accumulation order):
///   BF16: X is rounded to bf16 (nearest even); the products bf16(x)·w are exact in fp32 and accumulate in fp32.
///         Compared with an fp32 GEMM, the rounding of X (relative 2⁻⁹ per element) is the only extra error.
///   Q8_0/Q4_0: each row of X is quantized to Q8_0 blocks as ggml does (d = amax/127, q = round-to-nearest-even(x/d),
///         d stored as fp16), then Y += Σ_blocks float(int32 block dot) · d_x · d_w in fp32.
/// Against those exact terms (bf16(x)·w products; integer block dots times the scales) the only error is fp32
/// rounding: at worst about (terms + 2)·2⁻²⁴·Σ|term| (K/2 + 2 terms for BF16, K/32 + 2 for Q8_0/Q4_0), in practice a
/// few 2⁻²⁴·Σ|term|; the tests hold every kernel to 4·10⁻⁶·Σ|term|.
///
/// Both operands are packed: X once per call into row panels (shared by the threads), W per call into column slivers
/// (each thread packs its own), so the micro-kernels stream contiguous memory. Threads split N in 48-column slivers,
/// or M in row panels when N has too few slivers to balance.
/// </summary>
public static unsafe class WeightGemm
{
    /// <summary>Fewest rows of X for which <see cref="Gemm.MultiplyWeights(WorkerPool, int, int, int, float*, int, TensorType, byte*, long, float*, int, bool, ComputePrecision)"/>
    /// comes here: every row count, one included, so that a prompt row's product does not depend on how many other rows
    /// share its step (the batched engine's results must not depend on the batch). Decode's one-token products go to
    /// MatVec instead, which callers choose explicitly.</summary>
    public const int MinimumRows = 1;

    const int BFloat16DepthBlock = 2048;  // K elements per packed block (a multiple of 2·PairsPerStep): B sliver ≤ 192 KiB
    const int Int8DepthBlock = 4096;      // K elements per packed block (128 Q blocks): B sliver ≤ 216 KiB

    /// <summary>The kernels <see cref="TryMultiplyWeights"/> would use for <paramref name="type"/> on this machine.</summary>
    public static WeightGemmKernel BestKernel(TensorType type)
    {
        bool bf16 = type == TensorType.BF16;
        if (!bf16 && type != TensorType.Q8_0 && type != TensorType.Q4_0) return WeightGemmKernel.None;
        if (bf16 ? BFloat16Kernels.EmittedAvailable : Int8Kernels.EmittedAvailable) return WeightGemmKernel.Emitted;
        if (bf16 ? Avx512F.IsSupported : Avx512BW.IsSupported) return WeightGemmKernel.Avx512;
        if (Avx2.IsSupported && Fma.IsSupported) return WeightGemmKernel.Avx2;
        return WeightGemmKernel.None;
    }

    /// <summary>True when <paramref name="kernel"/> can run here for <paramref name="type"/>.</summary>
    public static bool IsAvailable(WeightGemmKernel kernel, TensorType type)
    {
        bool bf16 = type == TensorType.BF16;
        if (!bf16 && type != TensorType.Q8_0 && type != TensorType.Q4_0) return false;
        return kernel switch
        {
            WeightGemmKernel.Emitted => bf16 ? BFloat16Kernels.EmittedAvailable : Int8Kernels.EmittedAvailable,
            WeightGemmKernel.Avx512 => bf16 ? Avx512F.IsSupported : Avx512BW.IsSupported,
            WeightGemmKernel.Avx2 => Avx2.IsSupported && Fma.IsSupported,
            _ => false,
        };
    }

    /// <summary>Y[M,N] = (accumulate ? Y : 0) + X[M,K]·Wᵀ for BF16, Q8_0 or Q4_0 weights; false (nothing written)
    /// for other types, a K that is not a whole number of blocks, or a machine without the instructions.</summary>
    /// <param name="x">X[M, K] fp32, row stride ldx floats</param>
    /// <param name="weights">W[N, K]: N rows of <paramref name="rowBytes"/> bytes in <paramref name="type"/></param>
    /// <param name="y">Y[M, N] fp32, row stride ldy floats</param>
    public static bool TryMultiplyWeights(WorkerPool pool, int m, int n, int k, float* x, int ldx,
        TensorType type, byte* weights, long rowBytes, float* y, int ldy, bool accumulate) =>
        TryMultiplyWeights(pool, m, n, k, x, ldx, type, weights, rowBytes, y, ldy, accumulate, BestKernel(type));

    /// <summary>The same with the kernel choice made by the caller (tests compare emitted and managed kernels).</summary>
    public static bool TryMultiplyWeights(WorkerPool pool, int m, int n, int k, float* x, int ldx,
        TensorType type, byte* weights, long rowBytes, float* y, int ldy, bool accumulate, WeightGemmKernel kernel)
    {
        if (!IsAvailable(kernel, type)) return false;
        bool bf16 = type == TensorType.BF16;
        if (!bf16 && k % Int8Kernels.Block != 0) return false;
        if (m <= 0 || n <= 0) return true;
        if (k <= 0)
        {
            if (!accumulate) for (int i = 0; i < m; i++) new Span<float>(y + (long)i * ldy, n).Clear();
            return true;
        }
        var job = new Job
        {
            Kernel = kernel, Type = type, M = m, N = n, K = k, X = x, Ldx = ldx, W = weights, RowBytes = rowBytes,
            Y = y, Ldy = ldy, Accumulate = accumulate,
        };
        job.Rows = bf16 ? BFloat16Kernels.Rows : Int8Kernels.Rows;
        job.Columns = bf16 ? BFloat16Kernels.Columns : Int8Kernels.Columns;
        job.DepthBlock = bf16 ? BFloat16DepthBlock : Int8DepthBlock;
        job.Panels = (m + job.Rows - 1) / job.Rows;
        job.Slivers = (n + job.Columns - 1) / job.Columns;
        job.PanelBytes = PackedDepthBytes(ref job, k);
        job.WeightOffset = type == TensorType.Q4_0 ? 8 : type == TensorType.Q8_0 && kernel == WeightGemmKernel.Emitted ? 128 : 0;
        job.Activations = ActivationBuffer.ForThread(job.Panels * job.PanelBytes);
        int threads = pool.Threads;
        job.SplitM = threads > 1 && job.Slivers % threads != 0 && job.Slivers < 4 * threads && job.Panels >= threads;
        pool.Run(&PackActivationsWorker, &job);
        pool.Run(&MultiplyWorker, &job);
        return true;
    }

    /// <summary>
    /// W[N, K] in Q8_0 repacked once into the layout <see cref="MultiplyPacked"/> streams (the int8 kernel's column
    /// slivers over the whole depth), or null when this machine has no int8 GEMM kernel, the type is not Q8_0 or K is
    /// not a whole number of blocks. Packing costs 36 bytes per 34-byte block; products through it are bit-identical
    /// to <see cref="TryMultiplyWeights(WorkerPool, int, int, int, float*, int, TensorType, byte*, long, float*, int, bool)"/>
    /// on the stored weights, for every row count.
    /// </summary>
    /// <param name="weights">W[N, K]: N rows of <paramref name="rowBytes"/> bytes in <paramref name="type"/></param>
    /// <param name="into">64-byte aligned memory of <see cref="PackedBytes"/> bytes that the caller owns and keeps while the
    /// packed copy is used (an expert cache's slot); null allocates</param>
    public static PackedInt8Weights? TryPack(WorkerPool pool, TensorType type, byte* weights, long rowBytes, int n, int k, byte* into = null) =>
        TryPack(pool, type, weights, rowBytes, n, k, BestKernel(type), into);

    /// <summary>Bytes <see cref="TryPack(WorkerPool, TensorType, byte*, long, int, int, byte*)"/> packs W[N, K] into on
    /// this machine, or 0 when it does not pack such a weight.</summary>
    public static long PackedBytes(TensorType type, int n, int k)
    {
        var kernel = BestKernel(type);
        if (type != TensorType.Q8_0 || !IsAvailable(kernel, type) || n <= 0 || k <= 0 || k % Int8Kernels.Block != 0) return 0;
        return PackedInt8Weights.BytesFor(n, k);
    }

    /// <summary>The same for the kernel the caller chooses (tests pack for each kernel the machine runs).</summary>
    public static PackedInt8Weights? TryPack(WorkerPool pool, TensorType type, byte* weights, long rowBytes, int n, int k, WeightGemmKernel kernel,
        byte* into = null)
    {
        if (type != TensorType.Q8_0 || !IsAvailable(kernel, type) || n <= 0 || k <= 0 || k % Int8Kernels.Block != 0) return null;
        var packed = into == null ? new PackedInt8Weights(n, k, kernel) : new PackedInt8Weights(n, k, kernel, into);
        var job = new Job
        {
            Kernel = kernel, Type = type, N = n, K = k, W = weights, RowBytes = rowBytes,
            Columns = Int8Kernels.Columns, Slivers = (n + Int8Kernels.Columns - 1) / Int8Kernels.Columns, Prepacked = packed.Pointer,
            SliverBytes = packed.SliverBytes,
        };
        pool.Run(&PackSliversWorker, &job);
        return packed;
    }

    static void PackSliversWorker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        var (s0, s1) = WorkerPool.Balanced(job.Slivers, thread, threads);
        for (int sliver = s0; sliver < s1; sliver++)
        {
            int n0 = sliver * job.Columns;
            PackQ8Weights(ref job, n0, Math.Min(job.Columns, job.N - n0), 0, job.K, job.Prepacked + sliver * job.SliverBytes);
        }
    }

    /// <summary>Y[M, N] = (accumulate ? Y : 0) + X[M,K]·Wᵀ for weights packed by <see cref="TryPack"/>: the same
    /// kernels and numerics as the stored-weight GEMM without packing the weights per call, so one row costs about
    /// one pass over the weights and many rows share it.</summary>
    /// <param name="x">X[M, K] fp32, row stride ldx</param>
    /// <param name="y">Y[M, N] fp32, row stride ldy</param>
    public static void MultiplyPacked(WorkerPool pool, int m, float* x, int ldx, PackedInt8Weights weights, float* y, int ldy, bool accumulate)
    {
        if (m <= 0) return;
        var job = PackedJob(m, x, ldx, weights, y, ldy);
        job.Accumulate = accumulate;
        int threads = pool.Threads;
        job.SplitM = threads > 1 && job.Slivers % threads != 0 && job.Slivers < 4 * threads && job.Panels >= threads;
        QuantizeActivations(pool, &job);
        pool.Run(&MultiplyWorker, &job);
    }

    /// <summary>X of a packed-weight job quantized into the calling thread's activation buffer (assigned here).</summary>
    static void QuantizeActivations(WorkerPool pool, Job* job)
    {
        job->Activations = ActivationBuffer.ForThread(job->Panels * job->PanelBytes);
        // A few rows quantize in less time than a dispatch takes.
        if (job->Panels <= SerialPackingPanels) PackActivationsWorker(job, 0, 1);
        else pool.Run(&PackActivationsWorker, job);
    }

    const int SerialPackingPanels = 4;

    /// <summary>Operands and packing geometry handed to the worker threads (lives on the caller's stack).</summary>
    struct Job
    {
        public byte* Prepacked; public long SliverBytes; // weights packed once (TryPack): [Slivers][SliverBytes]
        public WeightGemmKernel Kernel; public TensorType Type;
        public int M, N, K;
        public float* X; public nint Ldx;          // X[M, K]
        public byte* W; public long RowBytes;      // W[N, K] rows
        public float* Y; public nint Ldy; public bool Accumulate; // Y[M, N]
        public int Rows, Columns, DepthBlock;      // micro-tile MR × NR; K elements per packed depth block
        public int Panels, Slivers;                // ⌈M/MR⌉ row panels, ⌈N/NR⌉ column slivers
        public long PanelBytes;                    // one packed row panel over the whole K
        public byte* Activations;                  // [Panels][PanelBytes]
        public int WeightOffset;                   // Q: the unsigned weight bias whose Σx correction the activations carry
        public bool SplitM;
    }

    /// <summary>Bytes of one packed activation panel over depth [0, kc). Full depth blocks need no padding, so depth
    /// block b of a panel starts at PackedDepthBytes(b·DepthBlock).</summary>
    static long PackedDepthBytes(ref Job job, int kc)
    {
        if (job.Type != TensorType.BF16) return (long)(kc / Int8Kernels.Block) * Int8Kernels.ActivationBlockBytes;
        if (job.Kernel == WeightGemmKernel.Emitted) return (long)PaddedPairs(kc) * BFloat16Kernels.Rows * 4;
        return (long)kc * BFloat16Kernels.Rows * 4;
    }

    static int PaddedPairs(int kc) =>
        ((kc + 1) / 2 + BFloat16Kernels.PairsPerStep - 1) / BFloat16Kernels.PairsPerStep * BFloat16Kernels.PairsPerStep;

    // ---- activations -------------------------------------------------------------------------------

    static void PackActivationsWorker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        var (p0, p1) = WorkerPool.Balanced(job.Panels, thread, threads);
        var scratch = Scratch.ForThread();
        for (int panel = p0; panel < p1; panel++)
        {
            byte* destination = job.Activations + panel * job.PanelBytes;
            int row0 = panel * job.Rows, rows = Math.Min(job.Rows, job.M - row0);
            for (int k0 = 0; k0 < job.K; k0 += job.DepthBlock)
            {
                int kc = Math.Min(job.DepthBlock, job.K - k0);
                byte* block = destination + PackedDepthBytes(ref job, k0);
                if (job.Type != TensorType.BF16) PackQuantizedActivations(ref job, row0, rows, k0, kc, block);
                else if (job.Kernel == WeightGemmKernel.Emitted) PackBFloat16PairActivations(ref job, row0, rows, k0, kc, (uint*)block, scratch);
                else PackWidenedActivations(ref job, row0, rows, k0, kc, (float*)block, scratch);
            }
        }
    }

    /// <summary>dst[pair][8 rows] = (bf16(x[2p]) | bf16(x[2p+1]) &lt;&lt; 16); padded pairs and missing rows are 0.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackBFloat16PairActivations(ref Job job, int row0, int rows, int k0, int kc, uint* dst, Scratch scratch)
    {
        const int MR = BFloat16Kernels.Rows;
        int pairs = PaddedPairs(kc);
        // Convert the panel's rows to bf16 [8][pairs] dwords (zero-padded), then transpose to [pairs][8].
        ushort* converted = (ushort*)scratch.Staging;
        int stride = 2 * pairs; // ushorts per converted row
        for (int i = 0; i < MR; i++)
        {
            ushort* row = converted + i * stride;
            int done = 0;
            if (i < rows) { NumberConversion.SingleToBFloat16(job.X + (row0 + i) * job.Ldx + k0, row, kc); done = kc; }
            new Span<ushort>(row + done, stride - done).Clear();
        }
        int p = 0;
        if (Avx512F.IsSupported)
            for (; p + 16 <= pairs; p += 16) Transpose8x16((uint*)converted + p, pairs, dst + p * MR);
        for (; p < pairs; p++)
            for (int i = 0; i < MR; i++) dst[p * MR + i] = ((uint*)converted)[i * pairs + p];
    }

    /// <summary>dst[p][i] = src[i·stride + p] for 8 rows × 16 dwords: 32-bit unpacks, 64-bit unpacks, then two rounds
    /// of 128-bit lane shuffles.</summary>
    /// <param name="src">[8 rows][stride] dwords</param>
    /// <param name="dst">[16][8] dwords</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose8x16(uint* src, nint stride, uint* dst)
    {
        var r0 = Vector512.Load(src); var r1 = Vector512.Load(src + stride);
        var r2 = Vector512.Load(src + 2 * stride); var r3 = Vector512.Load(src + 3 * stride);
        var r4 = Vector512.Load(src + 4 * stride); var r5 = Vector512.Load(src + 5 * stride);
        var r6 = Vector512.Load(src + 6 * stride); var r7 = Vector512.Load(src + 7 * stride);
        // In each 128-bit lane l: a_c / b_c hold column 4l + c of rows 0-3 / rows 4-7.
        Columns4(r0, r1, r2, r3, out var a0, out var a1, out var a2, out var a3);
        Columns4(r4, r5, r6, r7, out var b0, out var b1, out var b2, out var b3);
        // u_c_low = [a_c.l0, a_c.l1, b_c.l0, b_c.l1], u_c_high = lanes 2, 3.
        var u0Low = Avx512F.Shuffle4x128(a0, b0, 0x44); var u0High = Avx512F.Shuffle4x128(a0, b0, 0xEE);
        var u1Low = Avx512F.Shuffle4x128(a1, b1, 0x44); var u1High = Avx512F.Shuffle4x128(a1, b1, 0xEE);
        var u2Low = Avx512F.Shuffle4x128(a2, b2, 0x44); var u2High = Avx512F.Shuffle4x128(a2, b2, 0xEE);
        var u3Low = Avx512F.Shuffle4x128(a3, b3, 0x44); var u3High = Avx512F.Shuffle4x128(a3, b3, 0xEE);
        // Output vector t holds columns 2t and 2t+1 (8 rows each).
        Vector512.Store(Avx512F.Shuffle4x128(u0Low, u1Low, 0x88), dst);
        Vector512.Store(Avx512F.Shuffle4x128(u2Low, u3Low, 0x88), dst + 16);
        Vector512.Store(Avx512F.Shuffle4x128(u0Low, u1Low, 0xDD), dst + 32);
        Vector512.Store(Avx512F.Shuffle4x128(u2Low, u3Low, 0xDD), dst + 48);
        Vector512.Store(Avx512F.Shuffle4x128(u0High, u1High, 0x88), dst + 64);
        Vector512.Store(Avx512F.Shuffle4x128(u2High, u3High, 0x88), dst + 80);
        Vector512.Store(Avx512F.Shuffle4x128(u0High, u1High, 0xDD), dst + 96);
        Vector512.Store(Avx512F.Shuffle4x128(u2High, u3High, 0xDD), dst + 112);
    }

    /// <summary>For four rows, c_j (per 128-bit lane l) = column 4l + j of rows 0..3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Columns4(Vector512<uint> r0, Vector512<uint> r1, Vector512<uint> r2, Vector512<uint> r3,
        out Vector512<uint> c0, out Vector512<uint> c1, out Vector512<uint> c2, out Vector512<uint> c3)
    {
        var low01 = Avx512F.UnpackLow(r0, r1).AsUInt64(); var high01 = Avx512F.UnpackHigh(r0, r1).AsUInt64();
        var low23 = Avx512F.UnpackLow(r2, r3).AsUInt64(); var high23 = Avx512F.UnpackHigh(r2, r3).AsUInt64();
        c0 = Avx512F.UnpackLow(low01, low23).AsUInt32(); c1 = Avx512F.UnpackHigh(low01, low23).AsUInt32();
        c2 = Avx512F.UnpackLow(high01, high23).AsUInt32(); c3 = Avx512F.UnpackHigh(high01, high23).AsUInt32();
    }

    /// <summary>dst[k][8 rows] = bf16-rounded x as fp32 (the managed kernels' layout).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackWidenedActivations(ref Job job, int row0, int rows, int k0, int kc, float* dst, Scratch scratch)
    {
        if (rows < BFloat16Kernels.Rows) new Span<float>(dst, kc * BFloat16Kernels.Rows).Clear();
        ushort* converted = (ushort*)scratch.Staging;
        float* widened = scratch.Staging + (BFloat16DepthBlock + 2) / 2;
        for (int i = 0; i < rows; i++)
        {
            NumberConversion.SingleToBFloat16(job.X + (row0 + i) * job.Ldx + k0, converted, kc);
            NumberConversion.BFloat16ToSingle(converted, widened, kc);
            ScatterColumn((uint*)widened, kc, (uint*)dst + i, BFloat16Kernels.Rows);
        }
    }

    /// <summary>dst[p·stride] = src[p] for p &lt; count (a row of 32-bit values into a column of a packed panel).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ScatterColumn(uint* src, int count, uint* dst, int stride)
    {
        for (int p = 0; p < count; p++) dst[p * stride] = src[p];
    }

    /// <summary>Quantize rows row0..row0+rows, depth k0..k0+kc of X to Q8_0 into packed activation blocks.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackQuantizedActivations(ref Job job, int row0, int rows, int k0, int kc, byte* dst)
    {
        const int MR = Int8Kernels.Rows;
        int blocks = kc / Int8Kernels.Block;
        if (rows < MR) new Span<byte>(dst, blocks * Int8Kernels.ActivationBlockBytes).Clear();
        if (Avx512F.IsSupported && rows == MR)
        {
            PackQuantizedPanel512(job.X + row0 * job.Ldx + k0, job.Ldx, blocks, job.WeightOffset, dst);
            return;
        }
        sbyte* quantized = stackalloc sbyte[Int8Kernels.Block];
        for (int i = 0; i < rows; i++)
        {
            float* source = job.X + (row0 + i) * job.Ldx + k0;
            for (int blockIndex = 0; blockIndex < blocks; blockIndex++)
            {
                byte* record = dst + blockIndex * Int8Kernels.ActivationBlockBytes;
                int sum = QuantizeBlock(source + blockIndex * Int8Kernels.Block, quantized, out float scale);
                for (int q = 0; q < Int8Kernels.Quads; q++)
                    ((int*)record)[q * MR + i] = ((int*)quantized)[q];
                ((float*)(record + Int8Kernels.ActivationScalesOffset))[i] = scale;
                ((int*)(record + Int8Kernels.ActivationCorrectionsOffset))[i] = -job.WeightOffset * sum;
            }
        }
    }

    /// <summary>A full 4-row panel: the four rows' blocks are quantized together (one division, one horizontal
    /// reduction for all four) and their quads interleaved with two vpermt2d. Same results as <see cref="QuantizeBlock"/>.</summary>
    /// <param name="x">row 0 of the panel at depth k0; rows are <paramref name="ldx"/> floats apart</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackQuantizedPanel512(float* x, nint ldx, int blocks, int weightOffset, byte* dst)
    {
        // Element e of the first output vector is quad e/4 of row e%4; row i's quad q is table index 8i + q
        // (rows 0, 1 in the first table, rows 2, 3 in the second).
        var firstQuads = Vector512.Create(0u, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
        var lastQuads = firstQuads + Vector512.Create(4u);
        var correction = Vector128.Create(-weightOffset);
        for (int b = 0; b < blocks; b++, x += Int8Kernels.Block, dst += Int8Kernels.ActivationBlockBytes)
        {
            var v00 = Vector512.Load(x); var v01 = Vector512.Load(x + 16);
            var v10 = Vector512.Load(x + ldx); var v11 = Vector512.Load(x + ldx + 16);
            var v20 = Vector512.Load(x + 2 * ldx); var v21 = Vector512.Load(x + 2 * ldx + 16);
            var v30 = Vector512.Load(x + 3 * ldx); var v31 = Vector512.Load(x + 3 * ldx + 16);
            var amax = ReduceAcrossRows(
                Vector512.Max(Vector512.Abs(v00), Vector512.Abs(v01)).AsUInt32(), Vector512.Max(Vector512.Abs(v10), Vector512.Abs(v11)).AsUInt32(),
                Vector512.Max(Vector512.Abs(v20), Vector512.Abs(v21)).AsUInt32(), Vector512.Max(Vector512.Abs(v30), Vector512.Abs(v31)).AsUInt32(),
                maximum: true).AsSingle();
            var d = amax / Vector128.Create(127f);
            var inverse = Vector128.ConditionalSelect(Vector128.Equals(d, Vector128<float>.Zero), Vector128<float>.Zero, Vector128<float>.One / d);
            var q00 = Avx512F.ConvertToVector512Int32(v00 * inverse[0]); var q01 = Avx512F.ConvertToVector512Int32(v01 * inverse[0]);
            var q10 = Avx512F.ConvertToVector512Int32(v10 * inverse[1]); var q11 = Avx512F.ConvertToVector512Int32(v11 * inverse[1]);
            var q20 = Avx512F.ConvertToVector512Int32(v20 * inverse[2]); var q21 = Avx512F.ConvertToVector512Int32(v21 * inverse[2]);
            var q30 = Avx512F.ConvertToVector512Int32(v30 * inverse[3]); var q31 = Avx512F.ConvertToVector512Int32(v31 * inverse[3]);
            var sums = ReduceAcrossRows((q00 + q01).AsUInt32(), (q10 + q11).AsUInt32(), (q20 + q21).AsUInt32(), (q30 + q31).AsUInt32(), maximum: false).AsInt32();
            var rows01 = Vector512.Create(Bytes(q00, q01), Bytes(q10, q11)).AsUInt32();
            var rows23 = Vector512.Create(Bytes(q20, q21), Bytes(q30, q31)).AsUInt32();
            Vector512.Store(Avx512F.PermuteVar16x32x2(rows01, firstQuads, rows23), (uint*)dst);
            Vector512.Store(Avx512F.PermuteVar16x32x2(rows01, lastQuads, rows23), (uint*)(dst + 64));
            Vector128.Store(RoundToHalf(d), (float*)(dst + Int8Kernels.ActivationScalesOffset));
            Vector128.Store(sums * correction, (int*)(dst + Int8Kernels.ActivationCorrectionsOffset));
        }
    }

    /// <summary>The 32 int32 quants of one block narrowed to bytes (they lie in −127..127).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<sbyte> Bytes(Vector512<int> low, Vector512<int> high) =>
        Vector256.Create(Avx512F.ConvertToVector128SByte(low), Avx512F.ConvertToVector128SByte(high));

    /// <summary>[max or sum of r0's 16 lanes, … of r1, … of r2, … of r3]: fp32 maxima of non-negative values compare
    /// as their bit patterns, so one unsigned-integer path serves both.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<uint> ReduceAcrossRows(Vector512<uint> r0, Vector512<uint> r1, Vector512<uint> r2, Vector512<uint> r3, bool maximum)
    {
        // [r0 lanes 0|2, r0 lanes 1|3, r1 lanes 0|2, r1 lanes 1|3] combined, then lane i = row i's four partials.
        var t01 = Combine(Avx512F.Shuffle4x128(r0, r1, 0x44), Avx512F.Shuffle4x128(r0, r1, 0xEE), maximum);
        var t23 = Combine(Avx512F.Shuffle4x128(r2, r3, 0x44), Avx512F.Shuffle4x128(r2, r3, 0xEE), maximum);
        var u = Combine(Avx512F.Shuffle4x128(t01, t23, 0x88), Avx512F.Shuffle4x128(t01, t23, 0xDD), maximum);
        u = Combine(u, Avx512F.Shuffle(u, 0xB1), maximum); // swap neighbours
        u = Combine(u, Avx512F.Shuffle(u, 0x4E), maximum); // swap pairs: every element holds its lane's result
        return Avx512F.PermuteVar16x32(u, Vector512.Create(0u, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> Combine(Vector512<uint> a, Vector512<uint> b, bool maximum) => maximum ? Vector512.Max(a, b) : a + b;

    /// <summary>
    /// One Q8_0 block as ggml quantizes it: d = amax/127, q = round-to-nearest-even(x·(1/d)) (0 when d is 0), and the
    /// scale kept as fp16. Returns Σq; <paramref name="scale"/> is the fp16-rounded d as fp32.
    /// </summary>
    /// <param name="x">32 floats</param>
    /// <param name="q">32 int8 out</param>
    public static int QuantizeBlock(float* x, sbyte* q, out float scale)
    {
        int sum;
        if (Avx512F.IsSupported)
        {
            Vector256.Store(QuantizeBlock512(x, out scale, out sum), q);
            return sum;
        }
        float max = 0;
        for (int t = 0; t < Int8Kernels.Block; t++) max = MathF.Max(max, MathF.Abs(x[t]));
        float delta = max / 127f, inv = delta != 0 ? 1f / delta : 0f;
        sum = 0;
        for (int t = 0; t < Int8Kernels.Block; t++)
        {
            int v = (int)MathF.Round(x[t] * inv, MidpointRounding.ToEven);
            q[t] = (sbyte)v;
            sum += v;
        }
        scale = RoundToHalf(delta);
        return sum;
    }

    /// <summary><see cref="QuantizeBlock"/> on AVX-512, returning the 32 quants in a vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<sbyte> QuantizeBlock512(float* x, out float scale, out int sum)
    {
        var v0 = Vector512.Load(x); var v1 = Vector512.Load(x + 16);
        var magnitude = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1));
        var m256 = Vector256.Max(magnitude.GetLower(), magnitude.GetUpper());
        var m128 = Vector128.Max(m256.GetLower(), m256.GetUpper());
        float amax = MathF.Max(MathF.Max(m128[0], m128[1]), MathF.Max(m128[2], m128[3]));
        float d = amax / 127f, inverse = d != 0 ? 1f / d : 0f;
        var q0 = Avx512F.ConvertToVector512Int32(v0 * inverse); // round to nearest even (MXCSR default)
        var q1 = Avx512F.ConvertToVector512Int32(v1 * inverse);
        sum = Vector512.Sum(q0 + q1);
        scale = RoundToHalf(d);
        return Vector256.Create(Avx512F.ConvertToVector128SByte(q0), Avx512F.ConvertToVector128SByte(q1));
    }

    /// <summary>(float)(Half)d for d ≥ 0 (or NaN) without the library's general conversion: round to nearest even at
    /// fp16 precision, i.e. 10 mantissa bits for normals and a quantum of 2⁻²⁴ below 2⁻¹⁴.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToHalf(float d)
    {
        uint bits = BitConverter.SingleToUInt32Bits(d);
        if (bits >= 0x477FF000u) return (float)(Half)d;  // ≥ 65520 rounds to infinity; NaN and negatives too
        if (bits < 0x38800000u) return MathF.Round(d * 16777216f, MidpointRounding.ToEven) * (1f / 16777216f); // fp16 subnormal
        return BitConverter.UInt32BitsToSingle((bits + 0xFFFu + (bits >> 13 & 1)) & 0xFFFFE000u);
    }

    /// <summary><see cref="RoundToHalf(float)"/> for four values ≥ 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> RoundToHalf(Vector128<float> d)
    {
        var bits = d.AsUInt32();
        if (Vector128.GreaterThanOrEqualAny(bits, Vector128.Create(0x477FF000u)))
            return Vector128.Create(RoundToHalf(d[0]), RoundToHalf(d[1]), RoundToHalf(d[2]), RoundToHalf(d[3]));
        var normal = ((bits + Vector128.Create(0xFFFu) + ((bits >> 13) & Vector128<uint>.One)) & Vector128.Create(0xFFFFE000u)).AsSingle();
        var subnormal = Vector128.Round(d * 16777216f) * (1f / 16777216f); // Round: to nearest even
        return Vector128.ConditionalSelect(Vector128.LessThan(bits, Vector128.Create(0x38800000u)).AsSingle(), subnormal, normal);
    }

    // ---- the multiply ------------------------------------------------------------------------------

    static void MultiplyWorker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        int p0 = 0, p1 = job.Panels, s0 = 0, s1 = job.Slivers;
        if (job.SplitM) (p0, p1) = WorkerPool.Balanced(job.Panels, thread, threads);
        else (s0, s1) = WorkerPool.Balanced(job.Slivers, thread, threads);
        if (p0 >= p1 || s0 >= s1) return;
        MultiplySlivers(ref job, s0, s1, p0, p1);
    }

    /// <summary>Up to three packed weights over the same X (see <see cref="MultiplyPackedShared"/>).</summary>
    struct SharedJob { public Job A, B, C; public int Parts; }

    static void MultiplySharedWorker(void* context, int thread, int threads)
    {
        ref SharedJob shared = ref *(SharedJob*)context;
        int total = shared.A.Slivers + shared.B.Slivers + shared.C.Slivers;
        var (s0, s1) = WorkerPool.Balanced(total, thread, threads);
        // The threads split the slivers of all the weights as one list.
        for (int part = 0, first = 0; part < shared.Parts; part++)
        {
            ref Job job = ref part == 0 ? ref shared.A : ref part == 1 ? ref shared.B : ref shared.C;
            int from = Math.Max(s0, first) - first, to = Math.Min(s1, first + job.Slivers) - first;
            if (from < to) MultiplySlivers(ref job, from, to, 0, job.Panels);
            first += job.Slivers;
        }
    }

    /// <summary>
    /// Y_i[M, N_i] = X[M, K]·W_iᵀ for two or three weights packed by <see cref="TryPack"/> with the same K and kernel
    /// (attention's q, k and v; the MLP's gate and up): X is quantized once and the threads split all the weights'
    /// slivers in one dispatch. Each output is bit-identical to <see cref="MultiplyPacked"/>'s.
    /// </summary>
    /// <param name="x">X[M, K] fp32, row stride ldx</param>
    /// <param name="ya">Y_a[M, N_a] out, row stride ldya (likewise b and c; c may be null)</param>
    public static void MultiplyPackedShared(WorkerPool pool, int m, float* x, int ldx,
        PackedInt8Weights a, float* ya, int ldya, PackedInt8Weights b, float* yb, int ldyb,
        PackedInt8Weights? c = null, float* yc = null, int ldyc = 0)
    {
        if (b.K != a.K || b.Kernel != a.Kernel || c != null && (c.K != a.K || c.Kernel != a.Kernel))
            throw new ArgumentException("weights sharing an input need the same depth and kernel");
        if (m <= 0) return;
        var shared = new SharedJob { Parts = c == null ? 2 : 3 };
        shared.A = PackedJob(m, x, ldx, a, ya, ldya);
        QuantizeActivations(pool, &shared.A);
        shared.B = PackedJob(m, x, ldx, b, yb, ldyb);
        shared.B.Activations = shared.A.Activations;
        if (c != null)
        {
            shared.C = PackedJob(m, x, ldx, c, yc, ldyc);
            shared.C.Activations = shared.A.Activations;
        }
        pool.Run(&MultiplySharedWorker, &shared);
    }

    /// <summary>The job of one product on packed weights (activations not yet assigned).</summary>
    static Job PackedJob(int m, float* x, int ldx, PackedInt8Weights weights, float* y, int ldy)
    {
        var job = new Job
        {
            Kernel = weights.Kernel, Type = TensorType.Q8_0, M = m, N = weights.N, K = weights.K, X = x, Ldx = ldx,
            Y = y, Ldy = ldy, Accumulate = false, Prepacked = weights.Pointer, SliverBytes = weights.SliverBytes,
            Rows = Int8Kernels.Rows, Columns = Int8Kernels.Columns, DepthBlock = Int8DepthBlock,
        };
        job.Panels = (m + job.Rows - 1) / job.Rows;
        job.Slivers = (job.N + job.Columns - 1) / job.Columns;
        job.PanelBytes = PackedDepthBytes(ref job, job.K);
        job.WeightOffset = weights.Kernel == WeightGemmKernel.Emitted ? 128 : 0;
        return job;
    }

    /// <summary>Column slivers [s0, s1) × row panels [p0, p1) of one product.</summary>
    static void MultiplySlivers(ref Job job, int s0, int s1, int p0, int p1)
    {
        var scratch = Scratch.ForThread();
        for (int sliver = s0; sliver < s1; sliver++)
        {
            int n0 = sliver * job.Columns, columns = Math.Min(job.Columns, job.N - n0);
            for (int k0 = 0; k0 < job.K; k0 += job.DepthBlock)
            {
                int kc = Math.Min(job.DepthBlock, job.K - k0);
                byte* packedWeights = job.Prepacked != null
                    ? job.Prepacked + sliver * job.SliverBytes + (long)(k0 / Int8Kernels.Block) * Int8Kernels.WeightBlockBytes
                    : scratch.PackedWeights;
                if (job.Prepacked == null) PackWeights(ref job, n0, columns, k0, kc, scratch);
                bool load = job.Accumulate || k0 > 0;
                long depthOffset = PackedDepthBytes(ref job, k0);
                nint iterations = job.Type != TensorType.BF16 ? kc / Int8Kernels.Block
                    : job.Kernel == WeightGemmKernel.Emitted ? PaddedPairs(kc) / BFloat16Kernels.PairsPerStep : kc;
                for (int panel = p0; panel < p1; panel++)
                {
                    int row0 = panel * job.Rows, rows = Math.Min(job.Rows, job.M - row0);
                    byte* a = job.Activations + panel * job.PanelBytes + depthOffset;
                    float* c = job.Y + row0 * job.Ldy + n0;
                    if (rows == job.Rows && columns == job.Columns)
                    {
                        // Prepacked weights are one stream through the thread's slivers: the first panel reads this
                        // block of it from memory, and the next three fetch the block after it a third each.
                        int ahead = panel - p0 - 1;
                        if (job.Prepacked != null && job.Kernel == WeightGemmKernel.Emitted && ahead is >= 0 and < 3)
                            Int8Kernels.EmittedPrefetching(a, packedWeights, c, job.Ldy * 4, iterations, load ? 1 : 0,
                                packedWeights + iterations * Int8Kernels.WeightBlockBytes + ahead * iterations * 64L * Int8Kernels.PrefetchLinesPerBlock);
                        else CallKernel(ref job, a, packedWeights, c, job.Ldy * 4, iterations, load);
                        continue;
                    }
                    // Edge tile: run the full tile on a scratch copy and write back the valid part.
                    float* tile = scratch.Tile;
                    if (load)
                        for (int i = 0; i < rows; i++)
                            new ReadOnlySpan<float>(c + i * job.Ldy, columns).CopyTo(new Span<float>(tile + i * job.Columns, columns));
                    CallKernel(ref job, a, packedWeights, tile, job.Columns * 4, iterations, load);
                    for (int i = 0; i < rows; i++)
                        new ReadOnlySpan<float>(tile + i * job.Columns, columns).CopyTo(new Span<float>(c + i * job.Ldy, columns));
                }
            }
        }
    }

    static void CallKernel(ref Job job, byte* a, byte* b, float* c, nint ldcBytes, nint iterations, bool load)
    {
        bool bf16 = job.Type == TensorType.BF16;
        switch (job.Kernel)
        {
            case WeightGemmKernel.Emitted:
                if (bf16) BFloat16Kernels.Emitted(a, b, c, ldcBytes, iterations, load ? 1 : 0);
                else Int8Kernels.Emitted(a, b, c, ldcBytes, iterations, load ? 1 : 0);
                break;
            case WeightGemmKernel.Avx512:
                if (bf16) BFloat16Kernels.Fallback512((float*)a, (float*)b, c, ldcBytes, iterations, load);
                else Int8Kernels.Fallback512(a, b, c, ldcBytes, iterations, load, job.Type == TensorType.Q8_0);
                break;
            default:
                if (bf16) BFloat16Kernels.Fallback256((float*)a, (float*)b, c, ldcBytes, iterations, load);
                else Int8Kernels.Fallback256(a, b, c, ldcBytes, iterations, load, job.Type == TensorType.Q8_0);
                break;
        }
    }

    // ---- weights -----------------------------------------------------------------------------------

    /// <summary>Pack columns n0..n0+columns, depth k0..k0+kc of W into the sliver layout of the job's kernel
    /// (missing columns and padded depth are zero).</summary>
    static void PackWeights(ref Job job, int n0, int columns, int k0, int kc, Scratch scratch)
    {
        byte* dst = scratch.PackedWeights;
        if (job.Type == TensorType.BF16)
        {
            if (job.Kernel == WeightGemmKernel.Emitted) PackBFloat16PairWeights(ref job, n0, columns, k0, kc, (uint*)dst);
            else PackWidenedWeights(ref job, n0, columns, k0, kc, (float*)dst, scratch);
        }
        else if (job.Type == TensorType.Q8_0) PackQ8Weights(ref job, n0, columns, k0, kc, dst);
        else PackQ4Weights(ref job, n0, columns, k0, kc, dst);
    }

    /// <summary>dst[pair][48 columns] = the bf16 pair dword of W[n0 + j] at element k0 + 2·pair.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackBFloat16PairWeights(ref Job job, int n0, int columns, int k0, int kc, uint* dst)
    {
        const int NR = BFloat16Kernels.Columns;
        int pairs = PaddedPairs(kc), fullPairs = kc / 2;
        if (columns < NR || fullPairs < pairs) new Span<uint>(dst, pairs * NR).Clear();
        byte* first = job.W + n0 * job.RowBytes + k0 * 2L;
        if (job.RowBytes % 4 == 0)
            Transpose.Block((float*)first, (nint)(job.RowBytes / 4), (float*)dst, NR, columns, fullPairs); // bit moves only
        else
            for (int j = 0; j < columns; j++)
                for (int p = 0; p < fullPairs; p++) dst[p * NR + j] = Unsafe.ReadUnaligned<uint>(first + j * job.RowBytes + 4L * p);
        if ((kc & 1) != 0)
            for (int j = 0; j < columns; j++) dst[fullPairs * NR + j] = Unsafe.ReadUnaligned<ushort>(first + j * job.RowBytes + 2L * (kc - 1));
    }

    /// <summary>dst[k][48 columns] = W[n0 + j][k0 + k] widened to fp32 (the managed kernels' layout).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackWidenedWeights(ref Job job, int n0, int columns, int k0, int kc, float* dst, Scratch scratch)
    {
        const int NR = BFloat16Kernels.Columns;
        if (columns < NR) new Span<float>(dst, kc * NR).Clear();
        float* rows = scratch.WidenedRows; // [48][kc]
        for (int j = 0; j < columns; j++)
            NumberConversion.BFloat16ToSingle((ushort*)(job.W + (n0 + j) * job.RowBytes) + k0, rows + j * kc, kc);
        Transpose.Block(rows, kc, dst, NR, columns, kc);
    }

    /// <summary>Q8_0 blocks → [8 quads][48 columns] dwords + dw[48]; bytes get +128 for the emitted (unsigned) kernel.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackQ8Weights(ref Job job, int n0, int columns, int k0, int kc, byte* dst)
    {
        const int NR = Int8Kernels.Columns, BlockBytes = 34;
        int blocks = kc / Int8Kernels.Block;
        uint flip = job.Kernel == WeightGemmKernel.Emitted ? 0x80808080u : 0;
        if (columns < NR) new Span<byte>(dst, blocks * Int8Kernels.WeightBlockBytes).Clear();
        for (int j = 0; j < columns; j++)
        {
            byte* source = job.W + (n0 + j) * job.RowBytes + (k0 / Int8Kernels.Block) * BlockBytes;
            byte* record = dst;
            for (int b = 0; b < blocks; b++, source += BlockBytes, record += Int8Kernels.WeightBlockBytes)
            {
                ((float*)(record + Int8Kernels.WeightScalesOffset))[j] = NumberConversion.HalfToSingle(Unsafe.ReadUnaligned<ushort>(source));
                uint* quads = (uint*)record + j;
                for (int q = 0; q < Int8Kernels.Quads; q++) quads[q * NR] = Unsafe.ReadUnaligned<uint>(source + 2 + 4 * q) ^ flip;
            }
        }
    }

    /// <summary>Q4_0 blocks → [8 quads][48 columns] dwords of nibbles 0..15 (elements 0..15 are the low nibbles of
    /// bytes 0..15, elements 16..31 the high nibbles) + dw[48].</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PackQ4Weights(ref Job job, int n0, int columns, int k0, int kc, byte* dst)
    {
        const int NR = Int8Kernels.Columns, BlockBytes = 18;
        int blocks = kc / Int8Kernels.Block;
        if (columns < NR) new Span<byte>(dst, blocks * Int8Kernels.WeightBlockBytes).Clear();
        for (int j = 0; j < columns; j++)
        {
            byte* source = job.W + (n0 + j) * job.RowBytes + (k0 / Int8Kernels.Block) * BlockBytes;
            byte* record = dst;
            for (int b = 0; b < blocks; b++, source += BlockBytes, record += Int8Kernels.WeightBlockBytes)
            {
                ((float*)(record + Int8Kernels.WeightScalesOffset))[j] = NumberConversion.HalfToSingle(Unsafe.ReadUnaligned<ushort>(source));
                uint* quads = (uint*)record + j;
                for (int q = 0; q < 4; q++)
                {
                    uint packed = Unsafe.ReadUnaligned<uint>(source + 2 + 4 * q);
                    quads[q * NR] = packed & 0x0F0F0F0Fu;
                    quads[(q + 4) * NR] = packed >> 4 & 0x0F0F0F0Fu;
                }
            }
        }
    }

    // ---- buffers -----------------------------------------------------------------------------------

    /// <summary>The calling thread's packed-activation buffer, grown as needed and kept (workers read it during the call).</summary>
    static class ActivationBuffer
    {
        [ThreadStatic] static byte* _buffer;
        [ThreadStatic] static long _bytes;

        public static byte* ForThread(long bytes)
        {
            if (bytes > _bytes)
            {
                if (_buffer != null) NativeMemory.AlignedFree(_buffer);
                _bytes = Math.Max(bytes, _bytes * 3 / 2);
                _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)_bytes, 64);
            }
            return _buffer;
        }
    }

    /// <summary>Per-thread packing buffers, allocated once per thread and reused for the life of the thread.</summary>
    sealed class Scratch
    {
        [ThreadStatic] static Scratch? _current;

        /// <summary>One packed weight sliver over a depth block, the largest of the layouts:
        /// bf16 pairs [1024][48] dwords, widened bf16 [2048][48] floats, int8 [128 blocks][1728 bytes].</summary>
        public readonly byte* PackedWeights = Alloc(Math.Max(BFloat16DepthBlock * BFloat16Kernels.Columns * 4L,
            Int8DepthBlock / Int8Kernels.Block * (long)Int8Kernels.WeightBlockBytes));
        /// <summary>[48][2048] floats: bf16 weight rows widened before the transpose (managed bf16 kernels).</summary>
        public readonly float* WidenedRows = (float*)Alloc(BFloat16Kernels.Columns * (long)BFloat16DepthBlock * 4);
        /// <summary>A panel's 8 rows converted to bf16 ([8][2048 + 8] ushorts), or one row converted (2048 + 2 ushorts)
        /// and widened (2048 floats).</summary>
        public readonly float* Staging = (float*)Alloc(Math.Max(BFloat16Kernels.Rows * (BFloat16DepthBlock + 8) * 2L,
            ((BFloat16DepthBlock + 2) / 2 + BFloat16DepthBlock) * 4L));
        /// <summary>[8][48] floats for edge tiles (the larger micro-tile).</summary>
        public readonly float* Tile = (float*)Alloc(BFloat16Kernels.Rows * BFloat16Kernels.Columns * 4L);

        static byte* Alloc(long bytes)
        {
            var p = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            NativeMemory.Clear(p, (nuint)bytes);
            return p;
        }

        public static Scratch ForThread() => _current ??= new Scratch();
    }
}

/// <summary>Q8_0 weights W[N, K] in the int8 GEMM's packed layout (see <see cref="WeightGemm.TryPack"/>): for each
/// 48-row sliver of W, its K/32 blocks of 1,728 bytes ([8 quads][48 rows] of 4 bytes, then 48 fp32 scales), the bytes
/// biased by +128 for the emitted kernel. Held in a pinned array, so it lives as long as this object.</summary>
public sealed unsafe class PackedInt8Weights
{
    readonly byte[] _storage;

    public int N { get; }
    public int K { get; }
    public WeightGemmKernel Kernel { get; }
    internal byte* Pointer { get; }
    internal long SliverBytes => (long)(K / Int8Kernels.Block) * Int8Kernels.WeightBlockBytes;
    public long ByteLength => (N + Int8Kernels.Columns - 1L) / Int8Kernels.Columns * SliverBytes;
    internal static long BytesFor(int n, int k) => (n + Int8Kernels.Columns - 1L) / Int8Kernels.Columns * ((long)(k / Int8Kernels.Block) * Int8Kernels.WeightBlockBytes);

    /// <summary>Over memory the caller owns (64-byte aligned, <see cref="ByteLength"/> bytes).</summary>
    internal PackedInt8Weights(int n, int k, WeightGemmKernel kernel, byte* memory)
    {
        if (((nint)memory & 63) != 0) throw new ArgumentException("packed weights need 64-byte aligned memory");
        N = n; K = k; Kernel = kernel; _storage = [];
        Pointer = memory;
    }

    internal PackedInt8Weights(int n, int k, WeightGemmKernel kernel)
    {
        N = n; K = k; Kernel = kernel;
        long bytes = ByteLength;
        if (bytes > Array.MaxLength - 64) throw new ArgumentException($"a packed Q8_0 weight of {n}×{k} needs {bytes} bytes, more than one array holds");
        _storage = GC.AllocateUninitializedArray<byte>((int)bytes + 64, pinned: true);
        byte* start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        Pointer = (byte*)(((nint)start + 63) & ~(nint)63);
    }
}
