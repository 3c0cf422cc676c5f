using Hone.Formats;
using Hone.Tensors;

namespace Hone.Model;

/// <summary>One tensor of an adapter: a trainable parameter and a tensor of the saved adapter.</summary>
/// <param name="Parameter">the parameter's name after the target ("lora_A" in blk.0.attn_q.weight:lora_A; training checkpoints use it)</param>
/// <param name="PeftName">its name after the module in adapter_model.safetensors ("lora_A.weight")</param>
/// <param name="Rows">1 for a vector (saved with shape [Cols])</param>
/// <param name="PeftAliases">other names other tools write for it</param>
public sealed unsafe record AdapterTensor(string Parameter, string PeftName, nint Data, int Rows, int Cols, bool WeightDecay, string[]? PeftAliases = null)
{
    public float* Values => (float*)Data;
    public long Count => (long)Rows * Cols;
    public long[] PeftShape => Rows == 1 ? [Cols] : [Rows, Cols];
}

/// <summary>
/// What an adapter's training forward and backward share for one batch: the pool, the row count N, a scratch buffer
/// of N · <see cref="LoraAdapter.WorkWidth"/> floats (the widest of the model's adapters) and the dropout.
/// </summary>
public readonly unsafe struct AdapterPass(WorkerPool pool, int rows, float* work, LoraDropout dropout)
{
    public WorkerPool Pool { get; } = pool;
    public int Rows { get; } = rows;
    public float* Work { get; } = work;
    public LoraDropout Dropout { get; } = dropout;
}

/// <summary>
/// A LoRA adapter on one projection W[out, in]: y = W·x + s·B·(A·x), with A[r, in], B[out, r], s = alpha/r (alpha/√r
/// with rsLoRA). It is also the base of the LoRA family (PEFT's variants): a kind derives from it, overrides what
/// differs — its tensors (allocation, PEFT names), inference, training forward and backward, merge, llama.cpp form —
/// and registers in <see cref="AdapterKinds"/>. The same object serves inference (through <see cref="ILinearAdapter"/>)
/// and training (its tensors are the parameters).
/// </summary>
public unsafe class LoraAdapter : ILinearAdapter, IDisposable
{
    readonly NativeBuffer _storage;   // A[r, in] | B[out, r] | what the kind adds
    NativeBuffer? _scratch;           // [T, r] for inference
    AdapterTensor[]? _tensors;

    public virtual AdapterKind Kind => AdapterKinds.Lora;
    public string Target { get; }     // canonical weight name, e.g. blk.0.attn_q.weight
    public int Rank { get; }
    public int In { get; }
    public int Out { get; }
    public float Alpha { get; }
    public bool RsLora { get; }
    public float Scale => RsLora ? Alpha / MathF.Sqrt(Rank) : Alpha / Rank;
    /// <summary>The file it was loaded from (null when made in memory), for error messages.</summary>
    public string? Source { get; set; }

    public float* A => _storage.AsFloats;                                  // [r, in]
    public float* B => _storage.AsFloats + (long)Rank * In;                // [out, r]
    /// <summary>The floats a derived kind asked for after A and B.</summary>
    protected float* Extra => B + (long)Out * Rank;
    public virtual bool IsAdditive => true;
    public long ParameterCount => Tensors.Sum(t => t.Count);

    public LoraAdapter(string target, int rank, int inFeatures, int outFeatures, float alpha, bool rsLora = false)
        : this(new AdapterShape(target, rank, inFeatures, outFeatures, alpha, rsLora), 0) { }

    public LoraAdapter(AdapterShape shape) : this(shape, 0) { }

    /// <param name="extraFloats">storage the derived kind needs after A and B (see <see cref="Extra"/>)</param>
    protected LoraAdapter(AdapterShape shape, long extraFloats)
    {
        if (shape.Rank <= 0) throw new ArgumentException($"LoRA rank must be positive, got {shape.Rank}");
        Target = shape.Target; Rank = shape.Rank; In = shape.In; Out = shape.Out; Alpha = shape.Alpha; RsLora = shape.RsLora;
        _storage = new NativeBuffer(checked(((long)Rank * In + (long)Out * Rank + extraFloats) * 4));
    }

    // ---- tensors ------------------------------------------------------------------------------------

    /// <summary>Every tensor of this adapter, in save order: the parameters training updates and the tensors of
    /// adapter_model.safetensors (PEFT names).</summary>
    public IReadOnlyList<AdapterTensor> Tensors => _tensors ??= DeclareTensors().ToArray();

    protected virtual IEnumerable<AdapterTensor> DeclareTensors() =>
    [
        new AdapterTensor("lora_A", "lora_A.weight", (nint)A, Rank, In, WeightDecay: true),
        new AdapterTensor("lora_B", "lora_B.weight", (nint)B, Out, Rank, WeightDecay: true),
    ];

    /// <summary>PEFT's initialization: A ~ U(−1/√in, 1/√in) (kaiming-uniform with a = √5), B = 0.</summary>
    public virtual void Initialize(ulong seed, WeightMatrix? weight)
    {
        var rng = new Xoshiro256(seed);
        float bound = 1f / MathF.Sqrt(In);
        for (long i = 0; i < (long)Rank * In; i++) A[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
        new Span<float>(B, Out * Rank).Clear();
    }

    /// <summary>Recompute what follows from the tensors and the base weight; called after they change (load, optimizer
    /// step, checkpoint restore). Nothing for LoRA.</summary>
    public virtual void Refresh(WeightMatrix weight) { }

    // ---- inference ----------------------------------------------------------------------------------

    /// <summary>"the LoRA adapter …/adapter_model.safetensors (scale 1.25E+37)", for error messages.</summary>
    public string Describe() => $"the {Kind} adapter {Source ?? "(made in memory)"} (scale {Scale:G3})";

    /// <summary>Inference: y[T, out] (holding W·x) ← adapted output.</summary>
    public virtual void Apply(WorkerPool pool, WeightMatrix weight, float* x, int tokens, int ldx, float* y, int ldy) =>
        AddLowRank(pool, x, tokens, ldx, y, ldy);

    /// <summary>Inference on rows <paramref name="firstRow"/>.. of a batched step (see <see cref="ILinearAdapter.ApplyRows"/>).</summary>
    public virtual void ApplyRows(WorkerPool pool, WeightMatrix weight, float* x, int firstRow, int tokens, int ldx, float* y, int ldy) =>
        Apply(pool, weight, x, tokens, ldx, y, ldy);

    /// <summary>y += s·(x·Aᵀ)·Bᵀ.</summary>
    protected void AddLowRank(WorkerPool pool, float* x, int tokens, int ldx, float* y, int ldy)
    {
        if (_scratch == null || _scratch.Length < (long)tokens * Rank * 4) { _scratch?.Dispose(); _scratch = new NativeBuffer((long)Math.Max(tokens, 16) * Rank * 4); }
        float* xa = _scratch.AsFloats; // [T, r] = X·Aᵀ
        Gemm.Multiply(pool, tokens, Rank, In, x, ldx, false, A, In, GemmBLayout.NByK, xa, Rank, false);
        float s = Scale;
        for (long i = 0; i < (long)tokens * Rank; i++) xa[i] *= s;
        Gemm.Multiply(pool, tokens, Out, Rank, xa, Rank, false, B, Rank, GemmBLayout.NByK, y, ldy, true);
    }

    // ---- merge --------------------------------------------------------------------------------------

    /// <summary>The adapted weight minus W, as fp32 [out, in], for merging: s·B·A.</summary>
    public virtual float[] MergedDelta(WeightMatrix weight)
    {
        var delta = new float[(long)Out * In];
        float s = Scale;
        fixed (float* d = delta)
            for (int o = 0; o < Out; o++)
            {
                float* dr = d + (long)o * In;
                float* b = B + (long)o * Rank;
                for (int k = 0; k < Rank; k++)
                {
                    float c = s * b[k];
                    float* a = A + (long)k * In;
                    for (int i = 0; i < In; i++) dr[i] += c * a[i];
                }
            }
        return delta;
    }

    // ---- llama.cpp LoRA GGUF ------------------------------------------------------------------------

    /// <summary>This adapter's tensors of a llama.cpp LoRA GGUF: blk.N.attn_q.weight.lora_a [r, in] and .lora_b
    /// [out, r]; with <paramref name="permuteQueryKey"/>, q/k lora_b rows go to the adjacent-pair layout exactly like the
    /// base q/k weights, so llama.cpp's rope sees the same layout.</summary>
    public virtual IReadOnlyList<GgufWriter.Tensor> LlamaCppTensors(bool permuteQueryKey, int headDim)
    {
        if (Kind.LlamaCppType == null) throw new ArgumentException(Kind.WhyNoLlamaCpp);
        bool permute = permuteQueryKey && (Target.Contains(".attn_q.") || Target.Contains(".attn_k."));
        return
        [
            new GgufWriter.Tensor(Target + ".lora_a", TensorType.F32, [Rank, In], s => s.Write(new ReadOnlySpan<byte>(A, Rank * In * 4))),
            new GgufWriter.Tensor(Target + ".lora_b", TensorType.F32, [Out, Rank], s =>
            {
                for (int row = 0; row < Out; row++)
                {
                    int source = permute ? RopePermutation.HalvesRowForAdjacentRow(row, headDim) : row;
                    s.Write(new ReadOnlySpan<byte>(B + (long)source * Rank, Rank * 4));
                }
            }),
        ];
    }

    /// <summary>A llama.cpp LoRA GGUF (general.type = adapter, adapter.type = lora): scale alpha/r; q/k lora_b rows are
    /// in the adjacent-pair layout and are permuted back when the base weights use the Hugging Face layout.</summary>
    public static Dictionary<string, LoraAdapter> ReadLlamaCpp(GgufFile gguf, LlamaWeights weights)
    {
        string path = gguf.Path;
        var config = weights.Config;
        float? alpha = gguf.Get("adapter.lora.alpha") is { } a ? (float)a.AsNumber(path, "adapter.lora.alpha") : null;
        if (alpha is float given && !float.IsFinite(given))
            throw new ModelFormatException(path, $"alpha {given} is not a finite number (the adapter's scale alpha/r would be too)", "adapter.lora.alpha");
        bool unpermute = config.GgufArchitecture == "llama" && config.RopeLayout == RopeLayout.Halves;
        var matrices = PeftAdapter.Adaptable(weights).ToDictionary(m => m.Name);
        var adapters = new Dictionary<string, LoraAdapter>();
        try
        {
            foreach (var t in gguf.Tensors)
                if (!t.Name.EndsWith(".lora_a", StringComparison.Ordinal) && !t.Name.EndsWith(".lora_b", StringComparison.Ordinal))
                    throw new ModelFormatException(path, "is not a lora_a/lora_b tensor of a llama.cpp LoRA adapter", $"tensor '{t.Name}'");
            foreach (var ta in gguf.Tensors.Where(t => t.Name.EndsWith(".lora_a", StringComparison.Ordinal)))
            {
                string target = ta.Name[..^".lora_a".Length];
                if (!matrices.TryGetValue(target, out var w)) throw new ModelFormatException(path, "is not a projection of this model", $"tensor '{ta.Name}'");
                if (!gguf.TryGetTensor(target + ".lora_b", out var tb)) throw new ModelFormatException(path, "has no matching lora_b", $"tensor '{ta.Name}'");
                if (ta.Shape.Length != 2 || ta.Shape[0] is < 1 or > int.MaxValue)
                    throw new ModelFormatException(path, $"shape [{string.Join(", ", ta.Shape)}] is not [r, {w.Cols}] with a positive rank r", $"tensor '{ta.Name}'");
                int rank = (int)ta.Shape[0];
                // The file's data fits it, but one of A or B could still hold more elements than an int counts.
                if ((long)rank * Math.Max(w.Cols, w.Rows) > Array.MaxLength)
                    throw new ModelFormatException(path, $"rank {rank} gives [{rank}, {w.Cols}] / [{w.Rows}, {rank}] tensors of more than {Array.MaxLength} elements", $"tensor '{ta.Name}'");
                if (!ta.Shape.SequenceEqual(new long[] { rank, w.Cols }) || !tb.Shape.SequenceEqual(new long[] { w.Rows, rank }))
                    throw new ModelFormatException(path, $"shapes {string.Join("x", ta.Shape)} / {string.Join("x", tb.Shape)} do not fit [{rank}, {w.Cols}] / [{w.Rows}, {rank}]", $"tensor '{ta.Name}'");
                var adapter = AdapterKinds.Lora.Create(new AdapterShape(target, rank, w.Cols, w.Rows, alpha ?? rank));
                adapter.Source = path;
                adapters[target] = adapter;
                WeightRows.DequantizeSegment(ta.Type, gguf.TensorData(ta), 0, rank * w.Cols, adapter.A);
                PeftAdapter.RequireFinite(path, ta.Name, adapter.A, (long)rank * w.Cols);
                var b = new float[(long)w.Rows * rank];
                fixed (float* pb = b)
                {
                    WeightRows.DequantizeSegment(tb.Type, gguf.TensorData(tb), 0, rank * w.Rows, pb);
                    PeftAdapter.RequireFinite(path, tb.Name, pb, b.LongLength);
                }
                bool qk = target.Contains(".attn_q.") || target.Contains(".attn_k.");
                for (int row = 0; row < w.Rows; row++)
                {
                    int source = unpermute && qk ? RopePermutation.AdjacentRowForHalvesRow(row, config.HeadDim) : row;
                    b.AsSpan(source * rank, rank).CopyTo(new Span<float>(adapter.B + (long)row * rank, rank));
                }
            }
            foreach (var tb in gguf.Tensors.Where(t => t.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
                if (!adapters.ContainsKey(tb.Name[..^".lora_b".Length]))
                    throw new ModelFormatException(path, "has no matching lora_a", $"tensor '{tb.Name}'");
        }
        catch { foreach (var x in adapters.Values) x.Dispose(); throw; }
        if (adapters.Count == 0) throw new ModelFormatException(path, "holds no lora_a/lora_b tensors");
        return adapters;
    }

    // ---- training -----------------------------------------------------------------------------------
    // The projection's base weight and bias are frozen while an adapter trains: the adapter computes the whole
    // projection (through Linear) in forward, and ∂L/∂x and its own gradients in backward.

    /// <summary>Per row, the floats each buffer this adapter keeps from forward to backward holds, in allocation order:
    /// LoRA keeps X·Aᵀ [N, r].</summary>
    public virtual IReadOnlyList<int> SavedWidths => [Rank];

    /// <summary>Per row, the scratch floats forward and backward need (shared by all adapters): s·X·Aᵀ or s·g·B [N, r].</summary>
    public virtual int WorkWidth => Rank;

    /// <summary>y[N, out] (+)= x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ; keeps drop(x)·Aᵀ in saved[0].</summary>
    /// <param name="saved">one pointer per <see cref="SavedWidths"/> entry</param>
    public virtual void TrainingForward(in AdapterPass pass, WeightMatrix w, float* bias, float* x, float* y, bool accumulate, nint[] saved) =>
        LowRankForward(pass, w, bias, x, y, accumulate, (float*)saved[0]);

    /// <summary>The projection with the low-rank term added in the same pass (a zero B leaves it bit-identical to
    /// the plain projection): output (+)= x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ, with xa ← drop(x)·Aᵀ [N, r].</summary>
    protected void LowRankForward(in AdapterPass pass, WeightMatrix w, float* bias, float* x, float* output, bool accumulate, float* xa)
    {
        int n = pass.Rows;
        float* xin = pass.Dropout.Apply(Target, x, (long)n * In);
        Gemm.Multiply(pass.Pool, n, Rank, In, xin, In, false, A, In, GemmBLayout.NByK, xa, Rank, false);
        float s = Scale;
        float* work = pass.Work;
        for (long i = 0; i < (long)n * Rank; i++) work[i] = xa[i] * s;
        Linear.Forward(pass.Pool, w, bias, x, n, w.Cols, output, w.Rows, accumulate,
            lowRank: new Gemm.LowRankTerm((nint)work, Rank, (nint)B, Rank, Rank));
    }

    /// <summary>Backward given dy[N, out]: dx[N, in] (+)= ∂L/∂x, and the gradients of this adapter's tensors
    /// (one pointer per <see cref="Tensors"/> entry) accumulated.</summary>
    public virtual void TrainingBackward(in AdapterPass pass, WeightMatrix w, float* x, float* dy, float* dx, bool accumulateDx,
        nint[] saved, nint[] gradients) =>
        LowRankBackward(pass, w, x, dy, dx, accumulateDx, (float*)saved[0], (float*)gradients[0], (float*)gradients[1]);

    /// <summary>Backward of y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ given g = ∂L/∂y [N, out]: dB += s·gᵀ·(drop(x)·Aᵀ);
    /// u = s·g·B; dA += uᵀ·drop(x); dx (+)= g·W + drop'(u·A).</summary>
    protected void LowRankBackward(in AdapterPass pass, WeightMatrix w, float* x, float* g, float* dx, bool accumulateDx,
        float* xa, float* gradientA, float* gradientB)
    {
        int n = pass.Rows, r = Rank;
        float s = Scale;
        float* work = pass.Work;
        for (long i = 0; i < (long)n * r; i++) work[i] = xa[i] * s;
        Gemm.Multiply(pass.Pool, w.Rows, r, n, g, w.Rows, true, work, r, GemmBLayout.KByN, gradientB, r, true);
        Gemm.Multiply(pass.Pool, n, r, w.Rows, g, w.Rows, false, B, r, GemmBLayout.KByN, work, r, false);
        for (long i = 0; i < (long)n * r; i++) work[i] *= s;
        float* xin = pass.Dropout.Apply(Target, x, (long)n * w.Cols);
        Gemm.Multiply(pass.Pool, r, w.Cols, n, work, r, true, xin, w.Cols, GemmBLayout.KByN, gradientA, w.Cols, true);
        if (pass.Dropout.Active)
        {
            Gemm.MultiplyByWeights(pass.Pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx);
            // ∂L/∂x through the dropout: the same mask and scale applied to u·A.
            float* ua = xin; // reuse the dropout buffer: its contents are no longer needed
            Gemm.Multiply(pass.Pool, n, w.Cols, r, work, r, false, A, w.Cols, GemmBLayout.KByN, ua, w.Cols, false);
            pass.Dropout.AddMasked(Target, ua, dx, (long)n * w.Cols);
        }
        else
            Gemm.MultiplyByWeights(pass.Pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx,
                new Gemm.LowRankTerm((nint)work, r, (nint)A, w.Cols, r));
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>A kind that holds more native memory releases it here (and calls the base).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        _storage.Dispose();
        _scratch?.Dispose();
    }
}

/// <summary>
/// LoRA dropout on the adapters' input during training: a mask derived from (seed, step, adapter, element), so
/// backward regenerates it instead of storing it. Inactive (the input passes through) outside training or with p = 0.
/// </summary>
public sealed unsafe class LoraDropout(float probability, ulong seed, float* buffer)
{
    public float Probability { get; } = probability;
    /// <summary>The micro-step counter that seeds the masks (set by the trainer, so resumes reproduce them).</summary>
    public long Step { get; set; }
    public bool Training { get; set; }
    public bool Active => Training && Probability > 0;

    public static readonly LoraDropout None = new(0, 0, null);

    /// <summary>drop(x) into the dropout buffer [count], or x itself when inactive.</summary>
    public float* Apply(string target, float* x, long count)
    {
        if (!Active) return x;
        float p = Probability, keep = 1 / (1 - p);
        ulong key = Key(target);
        for (long i = 0; i < count; i++) buffer[i] = Dropped(key, i, p) ? 0 : x[i] * keep;
        return buffer;
    }

    /// <summary>dx += mask ⊙ source / (1 − p), the same mask <see cref="Apply"/> used.</summary>
    public void AddMasked(string target, float* source, float* dx, long count)
    {
        float p = Probability, keep = 1 / (1 - p);
        ulong key = Key(target);
        for (long i = 0; i < count; i++) dx[i] += Dropped(key, i, p) ? 0 : source[i] * keep;
    }

    /// <summary>The mask: element <paramref name="i"/> is dropped when its uniform draw in [0, 1) falls below p.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    static bool Dropped(ulong key, long i, float p) => (Hash(key, (ulong)i, 0) >> 11) * (1.0 / (1UL << 53)) < p;

    /// <summary>The mask's key for one adapter at this step. The target's hash must be the same in every process
    /// (string.GetHashCode is randomized per process), or a resumed or repeated run would draw other masks.</summary>
    ulong Key(string target) => Hash(seed, (ulong)Step, StableHash(target));

    /// <summary>FNV-1a (64-bit) over the UTF-16 code units.</summary>
    static ulong StableHash(string text)
    {
        ulong h = 0xCBF29CE484222325;
        foreach (char c in text) { h ^= c; h *= 0x100000001B3; }
        return h;
    }

    static ulong Hash(ulong a, ulong b, ulong c)
    {
        ulong z = a * 0x9E3779B97F4A7C15 ^ (b + 0x632BE59BD9B4E019) * 0xBF58476D1CE4E5B9 ^ (c + 0x94D049BB133111EB);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }
}
