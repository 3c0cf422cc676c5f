using Hone.Model;
using Hone.Tensors;
using Hone.Transforms.Pruning;

namespace Hone.Transforms;

/// <summary>
/// The input Hessians GPTQ needs, H = 2·Σ x·xᵀ / N over the calibration tokens, one per distinct projection input of a
/// layer: attn_q, attn_k and attn_v share the attention norm's output (one H, kept under attn_q), ffn_gate and ffn_up
/// the MLP norm's output (kept under ffn_gate), attn_output and ffn_down have their own. Sums are float64. Hessians are
/// [in, in] doubles, so a wide model's do not all fit in memory: they are computed for as many consecutive layers as
/// <see cref="MemoryBudget"/> holds, with one calibration pass per group of layers, as the converter asks for them.
/// </summary>
internal sealed class HessianSource : IDisposable
{
    /// <summary>Largest input width accepted (a Hessian of 65536 inputs is 32 GiB).</summary>
    public const int MaxInputs = 32768;

    readonly string _model, _text;
    readonly int _context, _tokens, _threads;
    readonly long _budget;
    readonly ModelConfig _config;
    readonly Action<string> _log;
    CalibrationRun? _run;
    Dictionary<string, double[]> _current = new(StringComparer.Ordinal);
    int _first = -1, _last = -1;

    /// <summary>Calibration passes run so far.</summary>
    public int Passes { get; private set; }
    /// <summary>Tokens per calibration pass.</summary>
    public int Tokens => _run?.Tokens ?? 0;
    public long MemoryBudget => _budget;

    public HessianSource(string model, ModelConfig config, string text, int context, int tokens, int threads, long memoryBudget, Action<string> log)
    {
        if (config.Experts > 0)
            throw new ArgumentException("--gptq: mixture-of-experts models are not supported yet (each expert would need its own Hessian over its routed tokens); quantize without --gptq");
        if (context < 2) throw new ArgumentException($"--gptq-ctx must be at least 2, found {context}");
        if (tokens < 1) throw new ArgumentException($"--gptq-tokens must be at least 1, found {tokens}");
        if (!File.Exists(text)) throw new FileNotFoundException($"{text}: calibration text not found", text);
        (_model, _config, _text, _context, _tokens, _threads, _budget, _log) = (model, config, text, context, tokens, threads, memoryBudget, log);
        long layer = LayerBytes(config);
        if (layer > memoryBudget)
            throw new ArgumentException($"--gptq: one layer's Hessians need {layer / (1 << 20)} MiB (inputs {string.Join(", ", Inputs(config).Select(i => i.Width).Distinct())} wide, float64), more than the {memoryBudget / (1 << 20)} MiB allowed");
    }

    /// <summary>The tensor whose Hessian serves <paramref name="role"/> (the first projection reading the same input),
    /// or null for tensors GPTQ does not quantize (embeddings, the output head, norms).</summary>
    public static TensorRole? Owner(TensorRole role) => role switch
    {
        TensorRole.AttentionQuery or TensorRole.AttentionKey or TensorRole.AttentionValue => TensorRole.AttentionQuery,
        TensorRole.AttentionOutput => TensorRole.AttentionOutput,
        TensorRole.FeedForwardGate or TensorRole.FeedForwardUp => TensorRole.FeedForwardGate,
        TensorRole.FeedForwardDown => TensorRole.FeedForwardDown,
        _ => null,
    };

    static IEnumerable<(TensorRole Role, int Width)> Inputs(ModelConfig c) =>
        [(TensorRole.AttentionQuery, c.HiddenSize), (TensorRole.AttentionOutput, c.QueryDim), (TensorRole.FeedForwardGate, c.HiddenSize), (TensorRole.FeedForwardDown, c.IntermediateSize)];

    /// <summary>Bytes of one layer's Hessians (checked).</summary>
    public static long LayerBytes(ModelConfig c)
    {
        long total = 0;
        foreach (var (_, width) in Inputs(c))
        {
            if (width > MaxInputs) throw new ArgumentException($"--gptq: an input {width} wide needs a Hessian of {(double)width * width * 8 / (1L << 30):F0} GiB; at most {MaxInputs} inputs are supported");
            total = checked(total + (long)width * width * sizeof(double));
        }
        return total;
    }

    /// <summary>H[cols, cols] for the projection <paramref name="role"/> of <paramref name="layer"/>, or null when GPTQ
    /// does not apply to it; runs a calibration pass for the next group of layers when needed.</summary>
    public double[]? For(TensorRole role, int layer)
    {
        if (Owner(role) is not TensorRole owner || layer < 0) return null;
        if (layer < _first || layer > _last) Compute(layer);
        return _current.GetValueOrDefault(TensorNames.Gguf(owner, layer));
    }

    void Compute(int first)
    {
        long perLayer = LayerBytes(_config);
        int count = (int)Math.Max(1, Math.Min(_config.Layers - first, _budget / perLayer));
        _current = new Dictionary<string, double[]>(StringComparer.Ordinal); // drop the previous group first
        _run ??= new CalibrationRun(_model, _text, _context, _tokens, _threads);
        var collector = new HessianCollector(first, first + count - 1);
        _log($"gptq: calibration pass for the Hessians of layers {first}..{first + count - 1} ({_run.Tokens} tokens, {count * perLayer / (1 << 20)} MiB)");
        _run.Run(collector);
        Passes++;
        _current = collector.Finish();
        (_first, _last) = (first, first + count - 1);
    }

    public void Dispose() => _run?.Dispose();
}

/// <summary>
/// Accumulates Σ x·xᵀ (float64, upper triangle) of every distinct projection input of layers
/// <paramref name="first"/>..<paramref name="last"/> (see <see cref="HessianSource"/>); <see cref="Finish"/> gives
/// H = 2·Σ x·xᵀ / N, whole and symmetric.
/// </summary>
internal sealed unsafe class HessianCollector(int first, int last) : IActivationObserver
{
    readonly Dictionary<string, (double[] Sum, long Rows)> _sums = new(StringComparer.Ordinal);

    public void Observe(WeightMatrix weight, float* x, int rows, int ldx)
    {
        if (rows <= 0 || !TensorNames.TryParseGguf(weight.Name, out var part) || part.Layer < first || part.Layer > last || part.Expert >= 0) return;
        // The other readers of a shared input see the same rows right after its owner: count them once.
        if (HessianSource.Owner(part.Role) != part.Role) return;
        int n = weight.Cols;
        string key = TensorNames.Gguf(part.Role, part.Layer);
        if (!_sums.TryGetValue(key, out var entry)) entry = (new double[checked((long)n * n)], 0);
        Accumulate(entry.Sum, n, x, rows, ldx);
        _sums[key] = (entry.Sum, entry.Rows + rows);
    }

    /// <summary>sum[i, j] += Σ_r x[r,i]·x[r,j] for j ≥ i.</summary>
    internal static void Accumulate(double[] sum, int n, float* x, int rows, int ldx)
    {
        var values = new double[(long)rows * n]; // X[rows, n] in double, so the products are exact before summing
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++) values[(long)r * n + j] = x[(long)r * ldx + j];
        Parallel.For(0, n, i =>
        {
            long offset = (long)i * n;
            for (int r = 0; r < rows; r++)
            {
                long row = (long)r * n;
                double xi = values[row + i];
                if (xi == 0) continue;
                for (int j = i; j < n; j++) sum[offset + j] += xi * values[row + j];
            }
        });
    }

    /// <summary>The Hessians collected, keyed by the owning tensor's name ("blk.3.attn_q").</summary>
    public Dictionary<string, double[]> Finish()
    {
        var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
        foreach (var (key, (sum, count)) in _sums)
        {
            int n = (int)Math.Round(Math.Sqrt(sum.Length));
            Symmetrize(sum, n, 2.0 / count);
            result[key] = sum;
        }
        return result;
    }

    /// <summary>Scales the upper triangle by <paramref name="scale"/> and mirrors it onto the lower.</summary>
    internal static void Symmetrize(double[] sum, int n, double scale)
    {
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
            {
                double v = sum[(long)i * n + j] * scale;
                sum[(long)i * n + j] = v;
                sum[(long)j * n + i] = v;
            }
    }
}
