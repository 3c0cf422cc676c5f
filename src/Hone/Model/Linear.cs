using Hone.Tensors;
using Hone.Tensors.Emitted;

namespace Hone.Model;

/// <summary>
/// Something that changes what a projection computes (LoRA, DoRA, routed LoRA experts). It runs after the base
/// product: y[T, out] holds W·x when it is called, and it updates y in place.
/// </summary>
public unsafe interface ILinearAdapter
{
    /// <param name="x">X[T, in], row stride ldx</param>
    /// <param name="y">Y[T, out], row stride ldy, holding the base output</param>
    void Apply(WorkerPool pool, WeightMatrix weight, float* x, int tokens, int ldx, float* y, int ldy);

    /// <summary>As <see cref="Apply"/> for rows <paramref name="firstRow"/>.. of a batched step (an adapter whose terms
    /// depend on per-row state of the step, a LoRA mixture's routing, needs to know which rows it is given).</summary>
    void ApplyRows(WorkerPool pool, WeightMatrix weight, float* x, int firstRow, int tokens, int ldx, float* y, int ldy) =>
        Apply(pool, weight, x, tokens, ldx, y, ldy);

    /// <summary>True when Apply only adds a term (LoRA), so it may run on an output that already holds a residual.</summary>
    bool IsAdditive { get; }
}

/// <summary>
/// The one choke point every projection goes through (llama.cpp's build_lora_mm): Y = X·Wᵀ (+ bias), then any
/// adapter attached to W. Decode (one token) takes the matrix-vector path, everything else the GEMM — except Q8_0 and
/// F32 weights under fast precision, whose products of every row count run the int8 or fp32 GEMM on a copy packed once
/// (<see cref="WeightMatrix.PackedForGemm"/>, <see cref="WeightMatrix.PackedF32ForGemm"/>). The precision says
/// whether activations may be rounded to meet the weights (<see cref="ComputePrecision"/>): evaluation asks for Exact,
/// generation and training keep Fast.
/// </summary>
public static unsafe class Linear
{
    /// <param name="x">X[T, W.Cols], row stride ldx</param>
    /// <param name="y">Y[T, W.Rows], row stride ldy; with accumulate, Y += X·Wᵀ (the residual add, fused)</param>
    /// <param name="bias">[W.Rows] or null</param>
    /// <param name="scratch">[T, W.Rows] floats, needed only when an adapter meets accumulate</param>
    /// <param name="lowRank">an extra low-rank product L·Rᵀ added in the same pass (training's LoRA term)</param>
    /// <param name="promptRows">the rows are prompt tokens: they take the GEMM even when there is one, so a prompt row's
    /// result never depends on how many rows share its step (decode rows, one per sequence, take the matrix-vector
    /// kernel, whose every row is the same function of that row alone)</param>
    /// <param name="packedWeights">false: never build or use the packed copy of a Q8_0 weight (training, whose frozen
    /// base would otherwise be held twice); the GEMM then packs per call, with the same results</param>
    public static void Forward(WorkerPool pool, WeightMatrix w, float* bias, float* x, int tokens, int ldx, float* y, int ldy,
        bool accumulate, ILinearAdapter? adapter = null, float* scratch = null, Gemm.LowRankTerm? lowRank = null,
        ComputePrecision precision = ComputePrecision.Fast, bool promptRows = false, bool packedWeights = true)
    {
        if (adapter is { IsAdditive: false } && accumulate)
        {
            if (scratch == null) throw new ArgumentException("an adapted projection with accumulate needs scratch space");
            Forward(pool, w, bias, x, tokens, ldx, scratch, w.Rows, false, adapter, precision: precision, promptRows: promptRows,
                packedWeights: packedWeights);
            for (int t = 0; t < tokens; t++) Add(y + (long)t * ldy, scratch + (long)t * w.Rows, w.Rows);
            return;
        }
        if (packedWeights && lowRank == null && Packed(pool, w, precision) is { } packed)
            WeightGemm.MultiplyPacked(pool, tokens, x, ldx, packed, y, ldy, accumulate);
        else if (packedWeights && lowRank == null && PackedF32(pool, w, precision) is { } packedF32)
            Gemm.MultiplyPacked(pool, tokens, x, ldx, packedF32, y, ldy, accumulate);
        else if (tokens == 1 && !promptRows)
        {
            MatVec.Multiply(pool, w.Type, w.Data, w.RowBytes, w.Rows, w.Cols, x, y, accumulate, precision);
            if (lowRank is Gemm.LowRankTerm t)
                Gemm.Multiply(pool, 1, w.Rows, t.Rank, (float*)t.Left, t.LeftStride, false, (float*)t.Right, t.RightStride, GemmBLayout.NByK, y, ldy, true);
        }
        else Gemm.MultiplyWeights(pool, tokens, w.Rows, w.Cols, x, ldx, w.Type, w.Data, w.RowBytes, y, ldy, accumulate, lowRank, precision);
        if (bias != null) for (int t = 0; t < tokens; t++) Add(y + (long)t * ldy, bias, w.Rows);
        adapter?.Apply(pool, w, x, tokens, ldx, y, ldy);
    }

    /// <summary>
    /// Three projections of the same input (attention's q, k and v). In decode (one token), when none of them has an
    /// adapter and they share type and row stride, the three matrix-vector products run as one parallel region;
    /// otherwise this is three <see cref="Forward"/> calls. Results are identical either way.
    /// </summary>
    public static void ForwardShared(WorkerPool pool, float* x, int tokens, int ldx,
        WeightMatrix a, float* biasA, float* ya, int ldya, ILinearAdapter? adapterA,
        WeightMatrix b, float* biasB, float* yb, int ldyb, ILinearAdapter? adapterB,
        WeightMatrix c, float* biasC, float* yc, int ldyc, ILinearAdapter? adapterC, ComputePrecision precision = ComputePrecision.Fast,
        bool promptRows = false)
    {
        if (tokens == 1 && !promptRows && adapterA == null && adapterB == null && adapterC == null && SameLayout(a, b) && SameLayout(a, c)
            && !AnyPacked(pool, a, precision))
        {
            MatVec.MultiplyShared(pool, a.Type, a.RowBytes, a.Cols, x, a.Data, a.Rows, ya, b.Data, b.Rows, yb, c.Data, c.Rows, yc, precision);
            if (biasA != null) Add(ya, biasA, a.Rows);
            if (biasB != null) Add(yb, biasB, b.Rows);
            if (biasC != null) Add(yc, biasC, c.Rows);
            return;
        }
        if (adapterA == null && adapterB == null && adapterC == null
            && PackedPair(pool, a, b, precision, out var pa, out var pb) && PackedPair(pool, a, c, precision, out _, out var pc))
        {
            WeightGemm.MultiplyPackedShared(pool, tokens, x, ldx, pa, ya, ldya, pb, yb, ldyb, pc, yc, ldyc);
            AddBias(ya, ldya, biasA, tokens, a.Rows);
            AddBias(yb, ldyb, biasB, tokens, b.Rows);
            AddBias(yc, ldyc, biasC, tokens, c.Rows);
            return;
        }
        Forward(pool, a, biasA, x, tokens, ldx, ya, ldya, false, adapterA, precision: precision, promptRows: promptRows);
        Forward(pool, b, biasB, x, tokens, ldx, yb, ldyb, false, adapterB, precision: precision, promptRows: promptRows);
        Forward(pool, c, biasC, x, tokens, ldx, yc, ldyc, false, adapterC, precision: precision, promptRows: promptRows);
    }

    static void AddBias(float* y, int ldy, float* bias, int tokens, int n)
    {
        if (bias != null) for (int t = 0; t < tokens; t++) Add(y + (long)t * ldy, bias, n);
    }

    /// <summary>Both weights packed for the int8 GEMM with the same depth and kernel (so one shared call serves them).</summary>
    static bool PackedPair(WorkerPool pool, WeightMatrix a, WeightMatrix b, ComputePrecision precision,
        out PackedInt8Weights pa, out PackedInt8Weights pb)
    {
        pa = Packed(pool, a, precision)!; pb = Packed(pool, b, precision)!;
        return pa != null && pb != null && pa.K == pb.K && pa.Kernel == pb.Kernel;
    }

    /// <summary>
    /// The gated MLP's input side: gate = silu(X·Wgᵀ)·(X·Wuᵀ), with up as scratch ([T, F] each, row stride F).
    /// In decode without adapters both products and the activation run in one parallel region.
    /// </summary>
    public static void ForwardGated(WorkerPool pool, float* x, int tokens, int ldx, WeightMatrix gateWeight, ILinearAdapter? gateAdapter,
        WeightMatrix upWeight, ILinearAdapter? upAdapter, float* gate, float* up, ComputePrecision precision = ComputePrecision.Fast,
        bool promptRows = false)
    {
        int f = gateWeight.Rows;
        if (upWeight.Rows != f) throw new ArgumentException($"{gateWeight.Name} has {f} rows but {upWeight.Name} has {upWeight.Rows}");
        if (tokens == 1 && !promptRows && gateAdapter == null && upAdapter == null && SameLayout(gateWeight, upWeight)
            && !AnyPacked(pool, gateWeight, precision))
        {
            MatVec.MultiplyGated(pool, gateWeight.Type, gateWeight.RowBytes, f, gateWeight.Cols, x, gateWeight.Data, upWeight.Data, gate, up, precision);
            return;
        }
        if (gateAdapter == null && upAdapter == null && PackedPair(pool, gateWeight, upWeight, precision, out var pg, out var pu))
            WeightGemm.MultiplyPackedShared(pool, tokens, x, ldx, pg, gate, f, pu, up, f);
        else
        {
            Forward(pool, gateWeight, null, x, tokens, ldx, gate, f, false, gateAdapter, precision: precision, promptRows: promptRows);
            Forward(pool, upWeight, null, x, tokens, ldx, up, f, false, upAdapter, precision: precision, promptRows: promptRows);
        }
        RowParallel.SwiGlu(pool, gate, up, (long)tokens * f);
    }

    /// <summary>
    /// A projection over the rows of a batched step (many sequences, each with its own adapter or none): rows
    /// [0, <paramref name="decodeRows"/>) are decode rows and take the matrix-vector kernels (one weight pass for all of
    /// them), the rest are prompt rows and take the GEMM, so every row's result equals what <see cref="Forward"/> gives
    /// that row in a one-sequence step. The base product is shared; each group's adapter then applies to its own rows
    /// (S-LoRA's split: one base GEMM, a low-rank term per adapter).
    /// </summary>
    /// <param name="x">X[R, W.Cols], row stride ldx</param>
    /// <param name="y">Y[R, W.Rows], row stride ldy; with accumulate, Y += the projection</param>
    /// <param name="groups">consecutive row ranges covering [0, R), none straddling the decode/prompt boundary</param>
    /// <param name="scratch">[R, W.Rows] floats, used when an adapter that is not additive meets accumulate</param>
    public static void ForwardRows(WorkerPool pool, WeightMatrix w, float* bias, float* x, int ldx, float* y, int ldy, bool accumulate,
        int decodeRows, int rows, ReadOnlySpan<RowGroup> groups, float* scratch, ComputePrecision precision)
    {
        bool split = false;
        if (accumulate)
            foreach (var g in groups)
                if (g.AdapterOf(w) is { IsAdditive: false }) split = true;
        if (!split)
        {
            if (AnyPacked(pool, w, precision)) BaseRows(pool, w, x, ldx, y, ldy, accumulate, 0, rows, false, precision);
            else
            {
                BaseRows(pool, w, x, ldx, y, ldy, accumulate, 0, decodeRows, true, precision);
                BaseRows(pool, w, x, ldx, y, ldy, accumulate, decodeRows, rows - decodeRows, false, precision);
            }
            if (bias != null) for (int t = 0; t < rows; t++) Add(y + (long)t * ldy, bias, w.Rows);
            foreach (var g in groups)
                g.AdapterOf(w)?.ApplyRows(pool, w, x + (long)g.Start * ldx, g.Start, g.Count, ldx, y + (long)g.Start * ldy, ldy);
            return;
        }
        foreach (var g in groups)
        {
            bool decode = g.Start < decodeRows;
            float* gx = x + (long)g.Start * ldx, gy = y + (long)g.Start * ldy;
            var adapter = g.AdapterOf(w);
            if (adapter is { IsAdditive: false })
            {
                float* s = scratch + (long)g.Start * w.Rows;
                BaseRows(pool, w, gx, ldx, s, w.Rows, false, 0, g.Count, decode, precision);
                if (bias != null) for (int t = 0; t < g.Count; t++) Add(s + (long)t * w.Rows, bias, w.Rows);
                adapter.ApplyRows(pool, w, gx, g.Start, g.Count, ldx, s, w.Rows);
                for (int t = 0; t < g.Count; t++) Add(gy + (long)t * ldy, s + (long)t * w.Rows, w.Rows);
            }
            else
            {
                BaseRows(pool, w, gx, ldx, gy, ldy, true, 0, g.Count, decode, precision);
                if (bias != null) for (int t = 0; t < g.Count; t++) Add(gy + (long)t * ldy, bias, w.Rows);
                adapter?.ApplyRows(pool, w, gx, g.Start, g.Count, ldx, gy, ldy);
            }
        }
    }

    /// <summary>The gated MLP's input side over a batched step's rows (see <see cref="ForwardRows"/>): gate =
    /// silu(X·Wgᵀ)·(X·Wuᵀ), up as scratch ([R, F] each, row stride F).</summary>
    public static void ForwardGatedRows(WorkerPool pool, float* x, int ldx, WeightMatrix gateWeight, WeightMatrix upWeight,
        float* gate, float* up, int decodeRows, int rows, ReadOnlySpan<RowGroup> groups, ComputePrecision precision)
    {
        int f = gateWeight.Rows;
        if (upWeight.Rows != f) throw new ArgumentException($"{gateWeight.Name} has {f} rows but {upWeight.Name} has {upWeight.Rows}");
        if (PackedPair(pool, gateWeight, upWeight, precision, out var pg, out var pu))
        {
            WeightGemm.MultiplyPackedShared(pool, rows, x, ldx, pg, gate, f, pu, up, f);
            ApplyAdapters(pool, gateWeight, x, ldx, gate, f, groups);
            ApplyAdapters(pool, upWeight, x, ldx, up, f, groups);
        }
        else
        {
            ForwardRows(pool, gateWeight, null, x, ldx, gate, f, false, decodeRows, rows, groups, null, precision);
            ForwardRows(pool, upWeight, null, x, ldx, up, f, false, decodeRows, rows, groups, null, precision);
        }
        RowParallel.SwiGlu(pool, gate, up, (long)rows * f);
    }

    /// <summary>Three projections of the same rows (attention's q, k and v) over a batched step, each as
    /// <see cref="ForwardRows"/> with accumulate off gives it; weights packed for the int8 GEMM share one quantization
    /// of X and one dispatch.</summary>
    public static void ForwardSharedRows(WorkerPool pool, float* x, int ldx,
        WeightMatrix a, float* biasA, float* ya, int ldya, WeightMatrix b, float* biasB, float* yb, int ldyb,
        WeightMatrix c, float* biasC, float* yc, int ldyc, int decodeRows, int rows, ReadOnlySpan<RowGroup> groups, float* scratch,
        ComputePrecision precision)
    {
        if (PackedPair(pool, a, b, precision, out var pa, out var pb) && PackedPair(pool, a, c, precision, out _, out var pc))
        {
            WeightGemm.MultiplyPackedShared(pool, rows, x, ldx, pa, ya, ldya, pb, yb, ldyb, pc, yc, ldyc);
            AddBias(ya, ldya, biasA, rows, a.Rows);
            AddBias(yb, ldyb, biasB, rows, b.Rows);
            AddBias(yc, ldyc, biasC, rows, c.Rows);
            ApplyAdapters(pool, a, x, ldx, ya, ldya, groups);
            ApplyAdapters(pool, b, x, ldx, yb, ldyb, groups);
            ApplyAdapters(pool, c, x, ldx, yc, ldyc, groups);
            return;
        }
        ForwardRows(pool, a, biasA, x, ldx, ya, ldya, false, decodeRows, rows, groups, scratch, precision);
        ForwardRows(pool, b, biasB, x, ldx, yb, ldyb, false, decodeRows, rows, groups, scratch, precision);
        ForwardRows(pool, c, biasC, x, ldx, yc, ldyc, false, decodeRows, rows, groups, scratch, precision);
    }

    /// <summary>Each row group's adapter of <paramref name="w"/> on its own rows of Y (holding the base output).</summary>
    static void ApplyAdapters(WorkerPool pool, WeightMatrix w, float* x, int ldx, float* y, int ldy, ReadOnlySpan<RowGroup> groups)
    {
        foreach (var g in groups)
            g.AdapterOf(w)?.ApplyRows(pool, w, x + (long)g.Start * ldx, g.Start, g.Count, ldx, y + (long)g.Start * ldy, ldy);
    }

    static void BaseRows(WorkerPool pool, WeightMatrix w, float* x, int ldx, float* y, int ldy, bool accumulate, int start, int count,
        bool decode, ComputePrecision precision)
    {
        if (count <= 0) return;
        x += (long)start * ldx;
        y += (long)start * ldy;
        if (Packed(pool, w, precision) is { } packed) WeightGemm.MultiplyPacked(pool, count, x, ldx, packed, y, ldy, accumulate);
        else if (PackedF32(pool, w, precision) is { } packedF32) Gemm.MultiplyPacked(pool, count, x, ldx, packedF32, y, ldy, accumulate);
        else if (decode) MatVec.MultiplyRows(pool, w.Type, w.Data, w.RowBytes, w.Rows, w.Cols, x, ldx, count, y, ldy, accumulate, precision);
        else Gemm.MultiplyWeights(pool, count, w.Rows, w.Cols, x, ldx, w.Type, w.Data, w.RowBytes, y, ldy, accumulate, precision);
    }

    /// <summary>The weight packed for the int8 GEMM when this product may use it (fast precision, Q8_0 weights, a
    /// machine with the kernels): then every row count, one included, takes the same kernel.</summary>
    static PackedInt8Weights? Packed(WorkerPool pool, WeightMatrix w, ComputePrecision precision) =>
        precision == ComputePrecision.Fast ? w.PackedForGemm(pool) : null;

    /// <summary>The F32 weight packed for the fp32 GEMM when this product may use it (fast precision): then every row
    /// count, one included, takes the GEMM on that copy.</summary>
    static PackedF32Weights? PackedF32(WorkerPool pool, WeightMatrix w, ComputePrecision precision) =>
        precision == ComputePrecision.Fast ? w.PackedF32ForGemm(pool) : null;

    static bool AnyPacked(WorkerPool pool, WeightMatrix w, ComputePrecision precision) =>
        Packed(pool, w, precision) != null || PackedF32(pool, w, precision) != null;

    static bool SameLayout(WeightMatrix a, WeightMatrix b) => a.Type == b.Type && a.RowBytes == b.RowBytes && a.Cols == b.Cols;

    static void Add(float* y, float* b, int n)
    {
        var ys = new Span<float>(y, n);
        var bs = new ReadOnlySpan<float>(b, n);
        for (int i = 0; i < n; i++) ys[i] += bs[i];
    }
}

/// <summary>Consecutive rows [Start, Start + Count) of a batched step that share one set of adapters (null: none), by
/// canonical weight name.</summary>
public readonly record struct RowGroup(int Start, int Count, IReadOnlyDictionary<string, ILinearAdapter>? Adapters)
{
    public ILinearAdapter? AdapterOf(WeightMatrix w) => Adapters != null && Adapters.TryGetValue(w.Name, out var a) ? a : null;
}
