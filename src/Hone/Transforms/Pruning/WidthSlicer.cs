using Hone.Model;
using Hone.Tensors;
using Hone.Transforms.Merging;

namespace Hone.Transforms.Pruning;

/// <param name="Fraction">the share of the residual stream's dimensions to delete (0.25: D → 0.75·D, rounded to a
/// multiple of <paramref name="Multiple"/>)</param>
/// <param name="Multiple">the new width is a multiple of this (32 keeps it quantizable to Q8_0/Q4_0; 256 to k-quants)</param>
public sealed record WidthSliceOptions(string Model, string Calibration, string Output, double Fraction = 0.25, int Multiple = 32,
    int Context = 512, int MaxTokens = 16384, TensorType? Type = null, int Threads = 0);

/// <param name="Kept">the share of the calibration residuals' energy (sum of squared unit-length rows) the kept
/// directions hold</param>
public sealed record WidthSliceReport(string Output, int WidthBefore, int WidthAfter, long ParametersBefore, long ParametersAfter, double Kept,
    int CalibrationTokens, IReadOnlyList<string> Notes)
{
    public string Protocol => "SliceGPT (Ashkboos et al. 2024) with one rotation for every layer: RMSNorm scales folded into the projections that read " +
                              "them, the residual stream rotated onto the principal directions of its calibration rows (each row at every layer " +
                              "boundary scaled to unit length) and the least-used directions deleted; no shortcut rotations, so the output is an " +
                              "ordinary checkpoint of width D'";
}

/// <summary>
/// Width pruning in the manner of SliceGPT. Every RMSNorm's scale is folded into the matrices that read its output (q,
/// k, v; gate and up, or a mixture's router, experts and shared expert; the head), leaving norms that only divide by
/// the root mean square. An RMSNorm commutes with an orthogonal rotation Q of the residual stream, so rotating the
/// embeddings and every matrix that writes the stream (attention output, down) by Qᵀ and every matrix that reads it by
/// Q leaves the model's function unchanged. With Q the principal directions of the residual stream on calibration text,
/// the last directions carry little: they are deleted, so D shrinks to D' and every matrix that touches the stream
/// with it. SliceGPT's paper rotates each layer by its own Q and adds a shortcut rotation between layers; Hone uses one
/// Q for all layers, which keeps the output an ordinary checkpoint that llama.cpp loads, at some cost in accuracy. The
/// norms then divide by the RMS over D' dimensions; their weights are set to √(D/D'), which restores the scale when the
/// deleted directions carry little of the row. The output head is untied from the embedding (it carries the final norm's
/// folded scale).
/// </summary>
public static unsafe class WidthSlicer
{
    public static WidthSliceReport Slice(WidthSliceOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        if (!(o.Fraction >= 0 && o.Fraction < 1)) throw new ArgumentException($"--fraction {o.Fraction}: delete a share from 0 (rotate only: a check that changes nothing) to below 1 of the dimensions");
        if (o.Multiple < 1) throw new ArgumentException($"--multiple {o.Multiple}: must be at least 1");
        using var checkpoint = Checkpoint.Open(o.Model);
        var c = checkpoint.Config;
        int d = c.HiddenSize;
        int kept = (int)Math.Round(d * (1 - o.Fraction) / o.Multiple) * o.Multiple;
        if (o.Fraction == 0) kept = d;
        if (kept < Math.Min(o.Multiple, d) || kept > d || (kept == d && o.Fraction > 0))
            throw new ArgumentException($"--fraction {o.Fraction} of a width of {d} in multiples of {o.Multiple} leaves {kept} dimensions; choose another fraction or --multiple");
        log($"collecting the residual stream's directions of {o.Model} on {o.Calibration}...");
        var (covariance, tokens) = Covariance(o.Model, o.Calibration, o.Context, o.MaxTokens, o.Threads);
        var (u, s, _) = Svd.Decompose(covariance); // symmetric positive semi-definite: U holds its eigenvectors, S its eigenvalues (descending)
        double total = s.Sum(), keptEnergy = s.Take(kept).Sum();
        var rotation = new float[(long)d * kept]; // Q' [D, D']: the first D' principal directions as columns
        for (int i = 0; i < d; i++)
            for (int j = 0; j < kept; j++) rotation[(long)i * kept + j] = (float)u[i, j];

        var config = c with { HiddenSize = kept, TiedEmbeddings = false };
        using var source = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
        using var output = LlamaWeights.CreateRandom(config, TensorType.F32, 1);
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(o.Threads));
        float normWeight = MathF.Sqrt((float)d / kept);
        var target = output.Matrices().ToDictionary(m => m.Name);
        var from = source.Matrices().ToDictionary(m => m.Name);
        fixed (float* q = rotation)
        {
            foreach (var (role, layer, bias, rows, cols, expert) in LlamaWeights.Expected(config))
            {
                if (rows == 1)
                {
                    float* to = output.Vector(role, layer, bias);
                    switch (role)
                    {
                        case TensorRole.AttentionNorm or TensorRole.FeedForwardNorm or TensorRole.OutputNorm:
                            new Span<float>(to, cols).Fill(normWeight);
                            break;
                        case TensorRole.SharedExpertRouter: // a vector that reads the normed stream: fold, then rotate
                        {
                            float* g = source.Vector(role, layer, false), norm = source.Layers[layer].FeedForwardNorm;
                            for (int j = 0; j < kept; j++)
                            {
                                double sum = 0;
                                for (int i = 0; i < d; i++) sum += (double)g[i] * norm[i] * q[(long)i * kept + j];
                                to[j] = (float)sum;
                            }
                            break;
                        }
                        default: // biases and QK-norms live in head dimensions: unchanged
                            new ReadOnlySpan<float>(source.Vector(role, layer, bias), cols).CopyTo(new Span<float>(to, cols));
                            break;
                    }
                    continue;
                }
                string name = TensorNames.Gguf(role, layer, bias, expert);
                var dst = target[name];
                var src = role == TensorRole.Output && c.TiedEmbeddings ? source.TokenEmbedding : from[name];
                if (Writes(role))
                {
                    // W' [D', in] = Q'ᵀ·W [D, in]
                    Gemm.Multiply(pool, kept, src.Cols, d, q, kept, true, (float*)src.Data, src.Cols, GemmBLayout.KByN, (float*)dst.Data, dst.Cols, false);
                    continue;
                }
                float* fold = FoldedNorm(source, role, layer);
                float[] scaled = new float[(long)src.Rows * d];
                fixed (float* w = scaled)
                {
                    float* values = (float*)src.Data;
                    for (long r = 0; r < src.Rows; r++)
                        for (int i = 0; i < d; i++) w[r * d + i] = values[r * d + i] * (fold == null ? 1f : fold[i]);
                    // W' [out, D'] = (W·diag(g)) [out, D]·Q' [D, D']
                    Gemm.Multiply(pool, src.Rows, kept, d, w, d, false, q, kept, GemmBLayout.KByN, (float*)dst.Data, kept, false);
                }
            }
        }
        var notes = new List<string>
        {
            $"calibration: {tokens:N0} tokens of {Path.GetFileName(o.Calibration)}; the kept {kept} of {d} directions hold {keptEnergy / total:P2} of the residual rows' energy",
        };
        if (c.TiedEmbeddings) notes.Add("the output head is untied from the embedding (it carries the final norm's scale): the head is stored once more");
        ModelConverter.Write(output, checkpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
        return new WidthSliceReport(o.Output, d, kept, c.ParameterCount, config.ParameterCount, keptEnergy / total, tokens, notes);
    }

    /// <summary>Roles whose rows are the residual stream (they write it): rotated on the left.</summary>
    static bool Writes(TensorRole role) => role is TensorRole.AttentionOutput or TensorRole.FeedForwardDown or TensorRole.ExpertDown or TensorRole.SharedExpertDown;

    /// <summary>The norm whose output this matrix reads ([D]), to fold into its columns; null for the embedding.</summary>
    static float* FoldedNorm(LlamaWeights w, TensorRole role, int layer) => role switch
    {
        TensorRole.AttentionQuery or TensorRole.AttentionKey or TensorRole.AttentionValue => w.Layers[layer].AttentionNorm,
        TensorRole.FeedForwardGate or TensorRole.FeedForwardUp or TensorRole.ExpertRouter or TensorRole.ExpertGate or TensorRole.ExpertUp
            or TensorRole.SharedExpertGate or TensorRole.SharedExpertUp => w.Layers[layer].FeedForwardNorm,
        TensorRole.Output => w.OutputNorm,
        TensorRole.TokenEmbedding => null,
        _ => throw new NotSupportedException($"{role}: no rule to slice it"),
    };

    /// <summary>Σ x̂x̂ᵀ [D, D] over the calibration rows x at every layer boundary (the stream entering each layer and
    /// leaving the last), each row scaled to unit length: what every norm sees, each row counted once per boundary.</summary>
    public static (double[,] Covariance, int Tokens) Covariance(string model, string calibration, int context, int maxTokens, int threads)
    {
        using var run = new CalibrationRun(model, calibration, context, maxTokens, threads);
        int d = run.Config.HiddenSize;
        var sum = new double[d, d];
        var unit = new float[(long)run.MaxRows * d];  // [T, D] the step's rows at unit length
        var product = new float[(long)d * d];          // [D, D] their Gram matrix
        fixed (float* rows = unit, gram = product)
        {
            float* r = rows, g = gram;
            var pool = run.Pool;
            run.Run((_, x, count, width) =>
            {
                for (int t = 0; t < count; t++)
                {
                    double norm = 0;
                    for (int i = 0; i < width; i++) norm += (double)x[(long)t * width + i] * x[(long)t * width + i];
                    float scale = norm > 0 ? (float)(1 / Math.Sqrt(norm)) : 0;
                    for (int i = 0; i < width; i++) r[(long)t * width + i] = x[(long)t * width + i] * scale;
                }
                Gemm.Multiply(pool, width, width, count, r, width, true, r, width, GemmBLayout.KByN, g, width, false);
                for (int i = 0; i < width; i++)
                    for (int j = 0; j < width; j++) sum[i, j] += g[(long)i * width + j];
            });
        }
        return (sum, run.Tokens);
    }
}
