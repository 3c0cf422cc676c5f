using Hone.Formats;
using Hone.Tensors;
using Hone.Tensors.Quantization;

namespace Hone.Model;

/// <summary>Per-layer weights. Shapes (glossary in <see cref="ModelConfig"/>): norms [D]; Q [H·Dh, D]; K, V [Hkv·Dh, D];
/// O [D, H·Dh]; Gate, Up [F, D]; Down [D, F]; biases [out]. A mixture-of-experts layer has no dense Gate, Up and Down
/// (null) but a Router [E, D] and E experts, each [Fe, D], [Fe, D], [D, Fe], laid out one after another per projection
/// as in GGUF's stacked tensors, and optionally a shared expert ([Fs, D], [Fs, D], [D, Fs]) with its sigmoid gate [D].</summary>
public sealed unsafe class LayerWeights
{
    public required float* AttentionNorm;
    public required WeightMatrix Query, Key, Value, AttentionOutput;
    public float* QueryBias, KeyBias, ValueBias;
    /// <summary>QK-norm weights ([Dh] per head, or [H·Dh] / [Hkv·Dh] over the whole projection); null without.</summary>
    public float* QueryNorm, KeyNorm;
    public required float* FeedForwardNorm;
    public required WeightMatrix Gate, Up, Down;
    public WeightMatrix? Router;
    public WeightMatrix[]? ExpertGate, ExpertUp, ExpertDown;
    public WeightMatrix? SharedGate, SharedUp, SharedDown;
    public float* SharedRouter;
    /// <summary>Residual shortcuts S [D, D] around the attention and the MLP block (residual' = residual·Sᵀ + block),
    /// or null: the plain residual (<see cref="ModelConfig.ResidualShortcuts"/>).</summary>
    public WeightMatrix? AttentionShortcut, FeedForwardShortcut;
    public bool IsSparse => Router != null;

    /// <summary>The shared expert's gate logit h·g of one normed row h [D] (its output is scaled by the logit's sigmoid).</summary>
    public float SharedGateLogit(float* h, int d)
    {
        float logit = 0;
        for (int i = 0; i < d; i++) logit += h[i] * SharedRouter[i];
        return logit;
    }

    /// <summary>QK-norm in place on this layer's projected queries q[T, H·Dh] and keys k[T, Hkv·Dh], before RoPE:
    /// per head (rows of Dh) or over each row.</summary>
    public void NormalizeQueriesKeys(WorkerPool pool, ModelConfig c, float* q, float* k, int rows)
    {
        if (c.QkNorm == QkNorm.PerHead)
        {
            RowParallel.RmsNormForward(pool, q, QueryNorm, q, rows * c.Heads, c.HeadDim, c.RmsNormEps);
            RowParallel.RmsNormForward(pool, k, KeyNorm, k, rows * c.KvHeads, c.HeadDim, c.RmsNormEps);
        }
        else if (c.QkNorm == QkNorm.Whole)
        {
            RowParallel.RmsNormForward(pool, q, QueryNorm, q, rows, c.QueryDim, c.RmsNormEps);
            RowParallel.RmsNormForward(pool, k, KeyNorm, k, rows, c.KvDim, c.RmsNormEps);
        }
    }
}

/// <summary>How to bring weights into memory.</summary>
/// <param name="MatrixType">store every 2D weight in this type (F32 for training, a quantized type to requantize);
/// null keeps each weight's stored type</param>
/// <param name="CheckFinite">reject NaN/Inf weights at load time, naming the tensor</param>
/// <param name="ExpertsInPlace">a mixture of experts' expert matrices are not copied into memory: they point into the
/// checkpoint's mapping (which must outlive the weights), in their stored type, unchecked for finiteness until an
/// <see cref="Hone.Model.ExpertCache"/> brings them in; refused with a conversion</param>
public sealed record WeightLoadOptions(TensorType? MatrixType = null, bool CheckFinite = true, bool ExpertsInPlace = false);

/// <summary>
/// All parameters of a Llama-family model in one 64-byte aligned native buffer, with named views into it.
/// Matrices keep their stored type (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, hq3_o, hq4_o) unless asked to convert; norms and
/// biases are always fp32.
/// </summary>
public sealed unsafe class LlamaWeights : IDisposable
{
    readonly NativeBuffer _arena;

    public ModelConfig Config { get; }
    public WeightMatrix TokenEmbedding { get; }   // [V, D]
    public float* OutputNorm { get; }             // [D]
    public WeightMatrix Output { get; }           // [V, D]; the embedding itself when tied
    public LayerWeights[] Layers { get; }
    /// <summary>Per-frequency divisors from a GGUF rope_freqs tensor (Llama 3 scaling), or null.</summary>
    public float[]? RopeFrequencyDivisors { get; }
    public long ByteLength => _arena.Length;
    /// <summary>Bytes of expert matrices left in the checkpoint's mapping (<see cref="WeightLoadOptions.ExpertsInPlace"/>), else 0.</summary>
    public long MappedExpertBytes { get; }
    /// <summary>The checkpoint the in-place experts point into (for messages), or null.</summary>
    public string? MappedFrom { get; }

    /// <summary>Bytes a one-token step reads (the bandwidth bound of decoding): every weight, except that an untied token
    /// embedding gives one row, and a mixture of experts' sparse layers only k of their E experts.</summary>
    public long ActiveByteLength
    {
        get
        {
            long idle = -MappedExpertBytes; // in-place experts are outside the arena but read all the same
            if (!Config.TiedEmbeddings) idle += NativeBuffer.Align(TokenEmbedding.ByteLength) - TokenEmbedding.RowBytes;
            foreach (var l in Layers)
                if (l.IsSparse)
                    foreach (var experts in new[] { l.ExpertGate!, l.ExpertUp!, l.ExpertDown! })
                        idle += (long)(Config.Experts - Config.ExpertsPerToken) * NativeBuffer.Align(experts[0].ByteLength);
            return _arena.Length - idle;
        }
    }

    /// <summary>One planned view of the arena (reference identity: the offset is filled in later).</summary>
    sealed class Slot(string name, TensorRole role, int layer, bool bias, TensorType type, int rows, int cols, int expert = -1)
    {
        public string Name { get; } = name;
        public int Expert { get; } = expert;
        public TensorRole Role { get; } = role;
        public int Layer { get; } = layer;
        public bool Bias { get; } = bias;
        public TensorType Type { get; } = type;
        public int Rows { get; } = rows;
        public int Cols { get; } = cols;
        public long Offset;
        /// <summary>Where the matrix already is (an expert left in the checkpoint's mapping), or 0: it gets arena space.</summary>
        public nint External;
        public long Bytes => Type.Traits().BytesFor((long)Rows * Cols);
    }

    LlamaWeights(ModelConfig config, List<Slot> slots, Action<Slot, nint> fill, float[]? ropeDivisors, string? mappedFrom = null)
    {
        Config = config;
        RopeFrequencyDivisors = ropeDivisors;
        MappedFrom = mappedFrom;
        long total = 0;
        foreach (var s in slots)
        {
            if (s.External != 0) { MappedExpertBytes += NativeBuffer.Align(s.Bytes); continue; }
            s.Offset = total; total = checked(total + NativeBuffer.Align(s.Bytes));
        }
        _arena = new NativeBuffer(total);
        foreach (var s in slots) if (s.External == 0) fill(s, (nint)(_arena.Pointer + s.Offset));

        var bySlot = slots.ToDictionary(s => (s.Role, s.Layer, s.Bias, s.Expert));
        WeightMatrix Matrix(TensorRole role, int layer = -1, int expert = -1)
        {
            var s = bySlot[(role, layer, false, expert)];
            return new WeightMatrix(s.Name, s.Type, s.Rows, s.Cols, s.External != 0 ? (byte*)s.External : _arena.Pointer + s.Offset);
        }
        WeightMatrix? Optional(TensorRole role, int layer) => bySlot.ContainsKey((role, layer, false, -1)) ? Matrix(role, layer) : null;
        WeightMatrix[] Experts(TensorRole role, int layer) => Enumerable.Range(0, config.Experts).Select(e => Matrix(role, layer, e)).ToArray();
        float* Vector(TensorRole role, int layer = -1, bool bias = false) =>
            bySlot.TryGetValue((role, layer, bias, -1), out var s) ? (float*)(_arena.Pointer + s.Offset) : null;

        TokenEmbedding = Matrix(TensorRole.TokenEmbedding);
        OutputNorm = Vector(TensorRole.OutputNorm);
        Output = config.TiedEmbeddings ? TokenEmbedding : Matrix(TensorRole.Output);
        Layers = new LayerWeights[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            bool sparse = config.IsSparseLayer(l);
            Layers[l] = new LayerWeights
            {
                AttentionNorm = Vector(TensorRole.AttentionNorm, l),
                Query = Matrix(TensorRole.AttentionQuery, l), Key = Matrix(TensorRole.AttentionKey, l),
                Value = Matrix(TensorRole.AttentionValue, l), AttentionOutput = Matrix(TensorRole.AttentionOutput, l),
                QueryBias = Vector(TensorRole.AttentionQuery, l, true), KeyBias = Vector(TensorRole.AttentionKey, l, true),
                ValueBias = Vector(TensorRole.AttentionValue, l, true),
                QueryNorm = Vector(TensorRole.AttentionQueryNorm, l), KeyNorm = Vector(TensorRole.AttentionKeyNorm, l),
                FeedForwardNorm = Vector(TensorRole.FeedForwardNorm, l),
                Gate = sparse ? null! : Matrix(TensorRole.FeedForwardGate, l),
                Up = sparse ? null! : Matrix(TensorRole.FeedForwardUp, l),
                Down = sparse ? null! : Matrix(TensorRole.FeedForwardDown, l),
                Router = sparse ? Matrix(TensorRole.ExpertRouter, l) : null,
                ExpertGate = sparse ? Experts(TensorRole.ExpertGate, l) : null,
                ExpertUp = sparse ? Experts(TensorRole.ExpertUp, l) : null,
                ExpertDown = sparse ? Experts(TensorRole.ExpertDown, l) : null,
                SharedGate = Optional(TensorRole.SharedExpertGate, l), SharedUp = Optional(TensorRole.SharedExpertUp, l),
                SharedDown = Optional(TensorRole.SharedExpertDown, l), SharedRouter = Vector(TensorRole.SharedExpertRouter, l),
                AttentionShortcut = Optional(TensorRole.AttentionShortcut, l), FeedForwardShortcut = Optional(TensorRole.FeedForwardShortcut, l),
            };
        }
    }

    /// <summary>Every parameter the config implies, with its shape: (role, layer, bias, rows, cols, expert); expert is
    /// −1 except for experts' projections. Vectors have rows = 1.</summary>
    public static IEnumerable<(TensorRole Role, int Layer, bool Bias, int Rows, int Cols, int Expert)> Expected(ModelConfig c)
    {
        foreach (var (role, layer, bias, rows, cols) in ExpectedDense(c)) yield return (role, layer, bias, rows, cols, -1);
        for (int l = 0; l < c.Layers; l++)
        {
            if (!c.IsSparseLayer(l)) continue;
            int d = c.HiddenSize, fe = c.ExpertFeedForwardSize, fs = c.SharedExpertFeedForwardSize;
            yield return (TensorRole.ExpertRouter, l, false, c.Experts, d, -1);
            foreach (var (role, rows, cols) in new[] { (TensorRole.ExpertGate, fe, d), (TensorRole.ExpertUp, fe, d), (TensorRole.ExpertDown, d, fe) })
                for (int e = 0; e < c.Experts; e++) yield return (role, l, false, rows, cols, e);
            if (fs > 0)
            {
                yield return (TensorRole.SharedExpertGate, l, false, fs, d, -1);
                yield return (TensorRole.SharedExpertUp, l, false, fs, d, -1);
                yield return (TensorRole.SharedExpertDown, l, false, d, fs, -1);
                yield return (TensorRole.SharedExpertRouter, l, false, 1, d, -1);
            }
        }
    }

    /// <summary>The attention and dense parts: everything of a dense model; a mixture of experts' sparse layers without
    /// their MLP.</summary>
    static IEnumerable<(TensorRole Role, int Layer, bool Bias, int Rows, int Cols)> ExpectedDense(ModelConfig c)
    {
        yield return (TensorRole.TokenEmbedding, -1, false, c.VocabSize, c.HiddenSize);
        yield return (TensorRole.OutputNorm, -1, false, 1, c.HiddenSize);
        if (!c.TiedEmbeddings) yield return (TensorRole.Output, -1, false, c.VocabSize, c.HiddenSize);
        for (int l = 0; l < c.Layers; l++)
        {
            yield return (TensorRole.AttentionNorm, l, false, 1, c.HiddenSize);
            yield return (TensorRole.AttentionQuery, l, false, c.QueryDim, c.HiddenSize);
            yield return (TensorRole.AttentionKey, l, false, c.KvDim, c.HiddenSize);
            yield return (TensorRole.AttentionValue, l, false, c.KvDim, c.HiddenSize);
            if (c.AttentionBias)
            {
                yield return (TensorRole.AttentionQuery, l, true, 1, c.QueryDim);
                yield return (TensorRole.AttentionKey, l, true, 1, c.KvDim);
                yield return (TensorRole.AttentionValue, l, true, 1, c.KvDim);
            }
            if (c.QkNorm != QkNorm.None)
            {
                yield return (TensorRole.AttentionQueryNorm, l, false, 1, c.QkNorm == QkNorm.PerHead ? c.HeadDim : c.QueryDim);
                yield return (TensorRole.AttentionKeyNorm, l, false, 1, c.QkNorm == QkNorm.PerHead ? c.HeadDim : c.KvDim);
            }
            yield return (TensorRole.AttentionOutput, l, false, c.HiddenSize, c.QueryDim);
            yield return (TensorRole.FeedForwardNorm, l, false, 1, c.HiddenSize);
            if (c.ResidualShortcuts)
            {
                yield return (TensorRole.AttentionShortcut, l, false, c.HiddenSize, c.HiddenSize);
                yield return (TensorRole.FeedForwardShortcut, l, false, c.HiddenSize, c.HiddenSize);
            }
            if (c.IsSparseLayer(l)) continue;
            yield return (TensorRole.FeedForwardGate, l, false, c.IntermediateSize, c.HiddenSize);
            yield return (TensorRole.FeedForwardUp, l, false, c.IntermediateSize, c.HiddenSize);
            yield return (TensorRole.FeedForwardDown, l, false, c.HiddenSize, c.IntermediateSize);
        }
    }

    static TensorType MatrixStorage(TensorType? requested, TensorType source, int cols)
    {
        var t = requested ?? source;
        int block = t.Traits().BlockSize;
        if (cols % block != 0)
            throw new ArgumentException($"rows of {cols} elements cannot be stored as {t.Name()} (block size {block})");
        return t;
    }

    /// <summary>Load and validate every parameter of a checkpoint: presence, shape, type, finiteness.</summary>
    public static LlamaWeights Load(Checkpoint checkpoint, WeightLoadOptions? options = null)
    {
        options ??= new WeightLoadOptions();
        var config = checkpoint.Config;
        var slots = new List<Slot>();
        var sources = new Dictionary<Slot, CheckpointTensor>();
        var expectedNames = new HashSet<string>();
        foreach (var (role, layer, bias, rows, cols, expert) in Expected(config))
        {
            string name = TensorNames.Gguf(role, layer, bias, expert);
            expectedNames.Add(name);
            if (!checkpoint.TryGet(name, out var t))
            {
                string shown = checkpoint.Format == CheckpointFormat.HuggingFace ? TensorNames.HuggingFace(role, layer, bias, expert, config.Architecture) : name;
                throw new ModelFormatException(checkpoint.Path, $"missing tensor (expected shape [{(rows == 1 ? $"{cols}" : $"{rows}, {cols}")}])", $"tensor '{shown}'");
            }
            bool vector = rows == 1;
            long[] expectedShape = vector ? [cols] : [rows, cols];
            // The shared expert's gate is a Linear(D, 1) in Hugging Face checkpoints: [1, D], read as the vector it is.
            bool sharedGateRow = role == TensorRole.SharedExpertRouter && t.Shape.SequenceEqual(new long[] { 1, cols });
            if (!t.Shape.SequenceEqual(expectedShape) && !sharedGateRow)
                throw new ModelFormatException(t.File, $"shape {t.ShapeText}, expected [{string.Join(", ", expectedShape)}]", $"tensor '{t.SourceName}'");
            if (t.Type is not TensorType sourceType)
                throw new ModelFormatException(t.File, $"type {t.TypeName} is not supported for weights (supported: {string.Join(", ", TensorTypes.All.Where(x => x.Compute).Select(x => x.Name))})", $"tensor '{t.SourceName}'");
            TensorType storage;
            try { storage = vector ? TensorType.F32 : MatrixStorage(options.MatrixType, sourceType, cols); }
            catch (ArgumentException e) { throw new ModelFormatException(t.File, e.Message, $"tensor '{t.SourceName}'"); }
            var slot = new Slot(name, role, layer, bias, storage, rows, cols, expert);
            if (options.ExpertsInPlace && expert >= 0)
            {
                if (storage != sourceType)
                    throw new ArgumentException($"experts served from the file keep their stored type ({sourceType.Name()}); convert the model first (hone convert --type {storage.Name()}) instead of asking for {storage.Name()} at load time");
                slot.External = (nint)t.Pointer;
            }
            slots.Add(slot);
            sources[slot] = t;
        }
        foreach (var t in checkpoint.Tensors)
            if (!expectedNames.Contains(t.Name) && t.Name != "rope_freqs.weight" && !(config.TiedEmbeddings && t.Name == "output.weight"))
                throw new ModelFormatException(t.File, "unexpected tensor for this architecture (a different model family, or a config that does not match the weights)", $"tensor '{t.SourceName}'");

        OutlierFormat.CheckVersion(checkpoint);

        float[]? ropeDivisors = null;
        if (checkpoint.TryGet("rope_freqs.weight", out var rf))
        {
            if (rf.Type != TensorType.F32 || rf.ElementCount != config.RotaryDims / 2)
                throw new ModelFormatException(rf.File, $"expected {config.RotaryDims / 2} f32 values, found {rf.ElementCount} {rf.TypeName}", "tensor 'rope_freqs.weight'");
            ropeDivisors = new ReadOnlySpan<float>(rf.Pointer, (int)rf.ElementCount).ToArray();
        }

        return new LlamaWeights(config, slots, (slot, address) =>
        {
            byte* dst = (byte*)address;
            var src = sources[slot];
            // Damaged outlier blocks are refused whatever CheckFinite says: their slot indices are structure, not values.
            if (OutlierFormat.IsOutlierType(src.Type!.Value)) OutlierFormat.Validate(src.Type.Value, src.Pointer, slot.Rows, slot.Cols, src.File, src.SourceName);
            Convert(src, slot.Type, slot.Rows, slot.Cols, dst);
            if (options.CheckFinite) CheckFinite(slot.Type, dst, slot.Rows, slot.Cols, src);
        }, ropeDivisors, options.ExpertsInPlace ? checkpoint.Path : null);
    }

    /// <summary>A model with N(0, std²) random matrices and unit norms, quantized to <paramref name="matrixType"/>
    /// (benchmarks and tests; deterministic for a seed).</summary>
    public static LlamaWeights CreateRandom(ModelConfig config, TensorType matrixType, int seed, float std = 0.02f, float? embeddingStd = null)
    {
        var slots = Expected(config).Select(e => new Slot(TensorNames.Gguf(e.Role, e.Layer, e.Bias, e.Expert), e.Role, e.Layer, e.Bias,
            e.Rows == 1 ? TensorType.F32 : MatrixStorage(matrixType, TensorType.F32, e.Cols), e.Rows, e.Cols, e.Expert)).ToList();
        return new LlamaWeights(config, slots, (slot, address) =>
        {
            byte* dst = (byte*)address;
            var rng = new Random(StableSeed(seed, slot.Name)); // not HashCode: string hashes differ from process to process
            var row = new float[slot.Cols];
            bool norm = slot.Rows == 1 && !slot.Bias && slot.Role != TensorRole.SharedExpertRouter;
            long rowBytes = slot.Type.Traits().BytesFor(slot.Cols);
            for (int r = 0; r < slot.Rows; r++)
            {
                float scale = slot.Role is TensorRole.TokenEmbedding or TensorRole.Output ? embeddingStd ?? std : std;
                for (int i = 0; i < row.Length; i++) row[i] = norm ? 1f : Gaussian(rng) * scale;
                StoreRow(row, slot.Type, dst + r * rowBytes);
            }
        }, null);
    }

    /// <summary>FNV-1a over the seed and the tensor name: the same initialization in every process.</summary>
    static int StableSeed(int seed, string name)
    {
        uint h = 2166136261;
        foreach (byte b in BitConverter.GetBytes(seed)) h = (h ^ b) * 16777619;
        foreach (char c in name) h = (h ^ c) * 16777619;
        return (int)(h & 0x7FFFFFFF);
    }

    static float Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }

    /// <summary>Write one fp32 row in a storage type.</summary>
    public static void StoreRow(ReadOnlySpan<float> row, TensorType type, byte* dst)
    {
        int n = row.Length;
        switch (type)
        {
            case TensorType.F32: row.CopyTo(new Span<float>(dst, n)); break;
            case TensorType.BF16: NumberConversion.SingleToBFloat16(row, new Span<ushort>(dst, n)); break;
            case TensorType.F16: NumberConversion.SingleToHalf(row, new Span<ushort>(dst, n)); break;
            default: BlockQuantization.QuantizeRow(type, row, new Span<byte>(dst, (int)type.Traits().BytesFor(n))); break;
        }
    }

    static void Convert(CheckpointTensor src, TensorType storage, int rows, int cols, byte* dst)
    {
        var sourceType = src.Type!.Value;
        if (sourceType == storage) { Buffer.MemoryCopy(src.Pointer, dst, src.ByteLength, src.ByteLength); return; }
        long srcRow = sourceType.Traits().BytesFor(cols), dstRow = storage.Traits().BytesFor(cols);
        var row = new float[cols];
        fixed (float* r = row)
            for (int i = 0; i < rows; i++)
            {
                WeightRows.DequantizeSegment(sourceType, src.Pointer + i * srcRow, 0, cols, r);
                StoreRow(row, storage, dst + i * dstRow);
            }
    }

    static void CheckFinite(TensorType type, byte* data, int rows, int cols, CheckpointTensor src)
    {
        long rowBytes = type.Traits().BytesFor(cols);
        var row = new float[cols];
        fixed (float* r = row)
            for (int i = 0; i < rows; i++)
            {
                float* p = r;
                if (type == TensorType.F32) p = (float*)(data + i * rowBytes);
                else WeightRows.DequantizeSegment(type, data + i * rowBytes, 0, cols, r);
                for (int j = 0; j < cols; j++)
                    if (!float.IsFinite(p[j]))
                        throw new ModelFormatException(src.File, $"non-finite value {(float.IsNaN(p[j]) ? "NaN" : p[j] > 0 ? "+inf" : "-inf")} at [{(rows == 1 ? $"{j}" : $"{i}, {j}")}]", $"tensor '{src.SourceName}'");
            }
    }

    /// <summary>The fp32 vector of a role: a norm's weight [D], or with <paramref name="bias"/> a q/k/v bias [out].</summary>
    public float* Vector(TensorRole role, int layer, bool bias) => role switch
    {
        TensorRole.OutputNorm => OutputNorm,
        TensorRole.AttentionNorm => Layers[layer].AttentionNorm,
        TensorRole.FeedForwardNorm => Layers[layer].FeedForwardNorm,
        TensorRole.AttentionQuery when bias => Layers[layer].QueryBias,
        TensorRole.AttentionKey when bias => Layers[layer].KeyBias,
        TensorRole.AttentionValue when bias => Layers[layer].ValueBias,
        TensorRole.SharedExpertRouter => Layers[layer].SharedRouter,
        TensorRole.AttentionQueryNorm => Layers[layer].QueryNorm,
        TensorRole.AttentionKeyNorm => Layers[layer].KeyNorm,
        _ => throw new ArgumentException($"{role} is not a vector"),
    };

    /// <summary>Every matrix, each under its canonical name (for adapters, conversion and inspection).</summary>
    public IEnumerable<WeightMatrix> Matrices()
    {
        yield return TokenEmbedding;
        if (!Config.TiedEmbeddings) yield return Output;
        foreach (var l in Layers)
        {
            yield return l.Query; yield return l.Key; yield return l.Value; yield return l.AttentionOutput;
            if (l.AttentionShortcut != null) { yield return l.AttentionShortcut; yield return l.FeedForwardShortcut!; }
            if (!l.IsSparse) { yield return l.Gate; yield return l.Up; yield return l.Down; continue; }
            yield return l.Router!;
            foreach (var experts in new[] { l.ExpertGate!, l.ExpertUp!, l.ExpertDown! })
                foreach (var m in experts) yield return m;
            if (l.SharedGate != null) { yield return l.SharedGate; yield return l.SharedUp!; yield return l.SharedDown!; }
        }
    }

    public void Dispose() => _arena.Dispose();
}
