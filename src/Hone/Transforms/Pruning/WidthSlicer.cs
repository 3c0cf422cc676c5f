using Hone.Model;
using Hone.Tensors;
using Hone.Transforms.Merging;

namespace Hone.Transforms.Pruning;

/// <param name="Fraction">the share of the residual stream's dimensions to delete (0.25: D → 0.75·D, rounded to a
/// multiple of <paramref name="Multiple"/>)</param>
/// <param name="Multiple">the new width is a multiple of this (32 keeps it quantizable to Q8_0/Q4_0; 256 to k-quants)</param>
/// <param name="Rotation">one rotation for every layer (an ordinary checkpoint) or one per block boundary with residual
/// shortcuts (<see cref="WidthRotation"/>)</param>
public sealed record WidthSliceOptions(string Model, string Calibration, string Output, double Fraction = 0.25, int Multiple = 32,
    int Context = 512, int MaxTokens = 16384, TensorType? Type = null, int Threads = 0, WidthRotation Rotation = WidthRotation.Single);

/// <summary>How many rotations width slicing uses.</summary>
public enum WidthRotation
{
    /// <summary>One Q for the whole residual stream: the output is an ordinary checkpoint (llama.cpp loads it).</summary>
    Single,
    /// <summary>SliceGPT proper: a Q_b at every block boundary b (2L + 1 of them: before each attention and each MLP
    /// block, and after the last layer), each the principal directions of the already-sliced model's stream there, and
    /// a shortcut Q_{b+1}'ᵀQ_b' [D', D'] on every residual connection; only Hone runs the output.</summary>
    PerLayer,
}

/// <param name="Kept">the share of the calibration residuals' energy (sum of squared unit-length rows) the kept
/// directions hold</param>
public sealed record WidthSliceReport(string Output, int WidthBefore, int WidthAfter, long ParametersBefore, long ParametersAfter, double Kept,
    int CalibrationTokens, IReadOnlyList<string> Notes, WidthRotation Rotation = WidthRotation.Single)
{
    public string Protocol => Rotation == WidthRotation.Single
        ? "SliceGPT (Ashkboos et al. 2024) with one rotation for every layer: RMSNorm scales folded into the projections that read " +
          "them, the residual stream rotated onto the principal directions of its calibration rows (each row at every layer " +
          "boundary scaled to unit length) and the least-used directions deleted; no shortcut rotations, so the output is an " +
          "ordinary checkpoint of width D'"
        : "SliceGPT (Ashkboos et al. 2024) with a rotation per block boundary: RMSNorm scales folded into the projections that read " +
          "them; at each of the 2L + 1 boundaries (before every attention and MLP block, after the last layer), in order, the " +
          "principal directions of the calibration rows (each scaled to unit length) of the model already sliced before that " +
          "boundary; each block reads in its boundary's basis and writes in the next one's, and a shortcut Q_{b+1}'ᵀQ_b' [D', D'] " +
          "turns the residual between them (Hone's extension of the checkpoint: llama.cpp cannot load it)";
    /// <summary>Kept is the mean over the boundaries with per-layer rotations.</summary>
    public string KeptMeaning => Rotation == WidthRotation.Single ? "of all boundaries' rows" : "mean over the boundaries";
}

/// <summary>
/// Width pruning in the manner of SliceGPT. Every RMSNorm's scale is folded into the matrices that read its output (q,
/// k, v; gate and up, or a mixture's router, experts and shared expert; the head), leaving norms that only divide by
/// the root mean square. An RMSNorm commutes with an orthogonal rotation Q of the residual stream, so rotating the
/// embeddings and every matrix that writes the stream (attention output, down) by Qᵀ and every matrix that reads it by
/// Q leaves the model's function unchanged. With Q the principal directions of the residual stream on calibration text,
/// the last directions carry little: they are deleted, so D shrinks to D' and every matrix that touches the stream
/// with it. SliceGPT's paper rotates each block by its own Q and adds a shortcut rotation on each residual connection;
/// by default Hone uses one Q for all layers, which keeps the output an ordinary checkpoint that llama.cpp loads, at
/// some cost in accuracy; <see cref="WidthRotation.PerLayer"/> does as the paper (the output carries shortcut tensors
/// that only Hone runs). The
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
        if (c.ResidualShortcuts)
            throw new NotSupportedException($"{o.Model} is already sliced with per-layer rotations (it has residual shortcuts): slice the original model again instead");
        int d = c.HiddenSize;
        int kept = (int)Math.Round(d * (1 - o.Fraction) / o.Multiple) * o.Multiple;
        if (o.Fraction == 0) kept = d;
        if (kept < Math.Min(o.Multiple, d) || kept > d || (kept == d && o.Fraction > 0))
            throw new ArgumentException($"--fraction {o.Fraction} of a width of {d} in multiples of {o.Multiple} leaves {kept} dimensions; choose another fraction or --multiple");
        bool perLayer = o.Rotation == WidthRotation.PerLayer;
        log($"collecting the residual stream's directions of {o.Model} on {o.Calibration}{(perLayer ? $", boundary by boundary ({2 * c.Layers + 1} boundaries)" : "")}...");
        var (rotations, keptShares, tokens) = perLayer
            ? PerBoundaryRotations(o.Model, o.Calibration, o.Context, o.MaxTokens, o.Threads, kept, log)
            : SingleRotation(o.Model, o.Calibration, o.Context, o.MaxTokens, o.Threads, kept);
        double keptEnergy = keptShares.Average();

        var config = c with { HiddenSize = kept, TiedEmbeddings = false, ResidualShortcuts = perLayer };
        using var source = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
        using var output = LlamaWeights.CreateRandom(config, TensorType.F32, 1);
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(o.Threads));
        float normWeight = MathF.Sqrt((float)d / kept);
        var target = output.Matrices().ToDictionary(m => m.Name);
        var from = source.Matrices().ToDictionary(m => m.Name);
        int layers = c.Layers;
        // Q' [D, D'] of a boundary: 2l before layer l's attention, 2l + 1 before its MLP, 2L after the last layer.
        float[] Rotation(int boundary) => rotations[perLayer ? boundary : 0];
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
                        fixed (float* q = Rotation(2 * layer + 1))
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
            if (role is TensorRole.AttentionShortcut or TensorRole.FeedForwardShortcut)
            {
                // S [D', D'] = Q_{b+1}'ᵀ·Q_b': the residual in the block's input basis, expressed in its output basis.
                int b = 2 * layer + (role == TensorRole.AttentionShortcut ? 0 : 1);
                fixed (float* into = Rotation(b + 1), outOf = Rotation(b))
                    Gemm.Multiply(pool, kept, kept, d, into, kept, true, outOf, kept, GemmBLayout.KByN, (float*)dst.Data, kept, false);
                continue;
            }
            var src = role == TensorRole.Output && c.TiedEmbeddings ? source.TokenEmbedding : from[name];
            if (Writes(role))
            {
                // W' [D', in] = Q_{b+1}'ᵀ·W [D, in]: the block writes in the basis of the boundary after it
                fixed (float* q = Rotation(WriteBoundary(role, layer)))
                    Gemm.Multiply(pool, kept, src.Cols, d, q, kept, true, (float*)src.Data, src.Cols, GemmBLayout.KByN, (float*)dst.Data, dst.Cols, false);
                continue;
            }
            float* fold = FoldedNorm(source, role, layer);
            float[] scaled = new float[(long)src.Rows * d];
            fixed (float* w = scaled)
            fixed (float* q = Rotation(ReadBoundary(role, layer, layers)))
            {
                float* values = (float*)src.Data;
                for (long r = 0; r < src.Rows; r++)
                    for (int i = 0; i < d; i++) w[r * d + i] = values[r * d + i] * (fold == null ? 1f : fold[i]);
                // W' [out, D'] = (W·diag(g)) [out, D]·Q_b' [D, D']
                Gemm.Multiply(pool, src.Rows, kept, d, w, d, false, q, kept, GemmBLayout.KByN, (float*)dst.Data, kept, false);
            }
        }
        var notes = new List<string>
        {
            perLayer
                ? $"calibration: {tokens:N0} tokens of {Path.GetFileName(o.Calibration)}, run once per boundary; the kept {kept} of {d} directions hold {keptShares.Min():P2} to {keptShares.Max():P2} (mean {keptEnergy:P2}) of the rows' energy at the {keptShares.Length} boundaries"
                : $"calibration: {tokens:N0} tokens of {Path.GetFileName(o.Calibration)}; the kept {kept} of {d} directions hold {keptEnergy:P2} of the residual rows' energy",
        };
        if (c.TiedEmbeddings) notes.Add("the output head is untied from the embedding (it carries the final norm's scale): the head is stored once more");
        if (perLayer) notes.Add($"residual shortcuts: 2 × {layers} matrices [{kept}, {kept}] (model.layers.N.attn_shortcut / mlp_shortcut; GGUF blk.N.attn_shortcut / ffn_shortcut); only Hone runs this model, llama.cpp cannot load it");
        ModelConverter.Write(output, checkpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
        return new WidthSliceReport(o.Output, d, kept, c.ParameterCount, config.ParameterCount, keptEnergy, tokens, notes, o.Rotation);
    }

    /// <summary>The boundary whose basis a block that reads the stream reads in.</summary>
    static int ReadBoundary(TensorRole role, int layer, int layers) => role switch
    {
        TensorRole.TokenEmbedding => 0, // the embedding's rows are the stream entering layer 0
        TensorRole.Output => 2 * layers,
        TensorRole.AttentionQuery or TensorRole.AttentionKey or TensorRole.AttentionValue => 2 * layer,
        _ => 2 * layer + 1,
    };

    /// <summary>The boundary after a block that writes the stream (attention output: before the MLP; down: the next layer).</summary>
    static int WriteBoundary(TensorRole role, int layer) => role == TensorRole.AttentionOutput ? 2 * layer + 1 : 2 * layer + 2;

    /// <summary>The first <paramref name="kept"/> eigenvectors of a covariance as Q' [D, D'] (columns), with the share
    /// of the trace their eigenvalues hold.</summary>
    static (float[] Rotation, double Kept) Principal(double[,] covariance, int kept)
    {
        int d = covariance.GetLength(0);
        var (u, s, _) = Svd.Decompose(covariance); // symmetric positive semi-definite: U holds its eigenvectors, S its eigenvalues (descending)
        var rotation = new float[(long)d * kept];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < kept; j++) rotation[(long)i * kept + j] = (float)u[i, j];
        double total = s.Sum();
        return (rotation, total > 0 ? s.Take(kept).Sum() / total : 1);
    }

    static (float[][] Rotations, double[] Kept, int Tokens) SingleRotation(string model, string calibration, int context, int maxTokens, int threads, int kept)
    {
        var (covariance, tokens) = Covariance(model, calibration, context, maxTokens, threads);
        var (rotation, share) = Principal(covariance, kept);
        return ([rotation], [share], tokens);
    }

    /// <summary>
    /// One Q_b' [D, D'] per block boundary, found in order: for boundary b the calibration text runs through the
    /// original model with the stream projected onto each earlier boundary's kept directions (x ← x·Q'·Q'ᵀ), which is
    /// the already-sliced model's stream in the original coordinates — its RMSNorms see the same rows, since a norm over
    /// D' dimensions weighted √(D/D') equals a norm over D of the projected row — and the step stops at b.
    /// </summary>
    static (float[][] Rotations, double[] Kept, int Tokens) PerBoundaryRotations(string model, string calibration, int context, int maxTokens,
        int threads, int kept, Action<string> log)
    {
        using var run = new CalibrationRun(model, calibration, context, maxTokens, threads);
        int d = run.Config.HiddenSize, boundaries = 2 * run.Config.Layers + 1;
        var rotations = new float[boundaries][];
        var shares = new double[boundaries];
        var unit = new float[(long)run.MaxRows * d];     // [T, D] the step's rows at unit length
        var product = new float[(long)d * d];             // [D, D] their Gram matrix
        var coordinates = new float[(long)run.MaxRows * kept]; // [T, D'] rows in a kept basis
        var pool = run.Pool;
        for (int b = 0; b < boundaries; b++)
        {
            var sum = new double[d, d];
            int current = b;
            fixed (float* rows = unit, gram = product, z = coordinates)
            {
                float* r = rows, g = gram, zc = z;
                run.Run((boundary, x, count, width) =>
                {
                    if (boundary < current)
                    {
                        fixed (float* q = rotations[boundary])
                        {
                            // z [T, D'] = x·Q', then x [T, D] = z·Q'ᵀ
                            Gemm.Multiply(pool, count, kept, width, x, width, false, q, kept, GemmBLayout.KByN, zc, kept, false);
                            Gemm.Multiply(pool, count, width, kept, zc, kept, false, q, kept, GemmBLayout.NByK, x, width, false);
                        }
                        return true;
                    }
                    UnitGram(pool, x, count, width, r, g, sum);
                    return false;
                });
            }
            (rotations[b], shares[b]) = Principal(sum, kept);
            log($"  boundary {b} of {boundaries}: the kept directions hold {shares[b]:P2} of the rows' energy");
        }
        return (rotations, shares, run.Tokens);
    }

    /// <summary>Adds Σ x̂x̂ᵀ of the rows x [T, D], each scaled to unit length, to <paramref name="sum"/> [D, D].</summary>
    static void UnitGram(WorkerPool pool, float* x, int count, int width, float* r, float* g, double[,] sum)
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
            run.Run((_, x, count, width) => UnitGram(pool, x, count, width, r, g, sum));
        }
        return (sum, run.Tokens);
    }
}
