using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Pruning;

/// <param name="Importance">an importance matrix of this model (hone imatrix, or llama-imatrix's): its per-column sums
/// of squared activations give ‖X_j‖; null prunes by magnitude alone (every ‖X_j‖ taken as 1), the baseline Wanda improves on</param>
/// <param name="Sparsity">unstructured: the share of each row's weights set to zero</param>
/// <param name="Keep">N of an N:M pattern (2 of 2:4), or 0 for unstructured</param>
/// <param name="Group">M of an N:M pattern (4 of 2:4)</param>
public sealed record SparsePruneOptions(string Model, string? Importance, string Output, double Sparsity = 0.5, int Keep = 0, int Group = 0,
    TensorType? Type = null);

/// <param name="Zeroed">weights set to zero, of <paramref name="Prunable"/> in the layers' projections</param>
public sealed record SparsePruneReport(string Output, long Zeroed, long Prunable, long Parameters, string Pattern, IReadOnlyList<string> Notes)
{
    public string Protocol => "Wanda (Sun et al. 2023): each weight scored |W_ij|·‖X_j‖ with ‖X_j‖ from the importance matrix; within each output row " +
                              "the lowest-scoring share is zeroed (unstructured), or in every group of M consecutive inputs all but the N highest (N:M); " +
                              "embedding and output head untouched";
}

/// <summary>
/// Unstructured and N:M pruning by weight magnitude times input activation norm (Wanda). Every projection of the layers
/// (attention, MLPs, experts, routers) is pruned row by row; the embedding and the output head are left whole, as Wanda
/// does. The output keeps its shape with zeros in place: an ordinary checkpoint, smaller only once compressed or run
/// by kernels that skip zeros (Hone's are dense, so it is no faster here).
/// </summary>
public static unsafe class SparsePruner
{
    public static SparsePruneReport Prune(SparsePruneOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        bool structured = o.Keep > 0 || o.Group > 0;
        if (structured && !(o.Keep >= 1 && o.Group > o.Keep))
            throw new ArgumentException($"--pattern {o.Keep}:{o.Group}: keep N of every M inputs with 1 ≤ N < M (2:4, 4:8)");
        if (!structured && !(o.Sparsity > 0 && o.Sparsity < 1))
            throw new ArgumentException($"--sparsity {o.Sparsity}: the share of each row to zero is between 0 and 1");
        var importance = o.Importance == null ? null : ImportanceMatrix.Read(o.Importance);
        using var checkpoint = Checkpoint.Open(o.Model);
        var c = checkpoint.Config;
        using var weights = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
        long zeroed = 0, prunable = 0;
        foreach (var m in weights.Matrices())
        {
            if (m.Name == weights.TokenEmbedding.Name || m.Name == weights.Output.Name) continue;
            if (!TensorNames.TryParseGguf(m.Name, out var parsed)) throw new InvalidOperationException(m.Name);
            if (parsed.Role is TensorRole.AttentionShortcut or TensorRole.FeedForwardShortcut) continue; // a change of basis, not a projection: kept whole
            if (structured && m.Cols % o.Group != 0)
                throw new ArgumentException($"{m.Name} has {m.Cols} inputs, not a multiple of the pattern's group of {o.Group}");
            string stacked = TensorNames.Gguf(parsed.Role, parsed.Layer, parsed.Bias);
            float[] norms;
            if (importance == null) norms = Enumerable.Repeat(1f, m.Cols).ToArray();
            else
            {
                var meanSquares = importance.ColumnWeights(stacked, Math.Max(0, parsed.Expert), m.Cols, o.Importance!)
                    ?? throw new ModelFormatException(o.Importance!, $"has no activations for {stacked}; collect them with hone imatrix on this model", $"tensor '{stacked}'");
                norms = meanSquares.Select(v => MathF.Sqrt(v)).ToArray();
            }
            zeroed += structured ? PruneGroups((float*)m.Data, m.Rows, m.Cols, norms, o.Keep, o.Group) : PruneRows((float*)m.Data, m.Rows, m.Cols, norms, o.Sparsity);
            prunable += (long)m.Rows * m.Cols;
        }
        string pattern = (structured ? $"{o.Keep}:{o.Group}" : $"unstructured {o.Sparsity:P0}") + (importance == null ? ", by magnitude" : "");
        var notes = new List<string> { $"{pattern}: {zeroed:N0} of {prunable:N0} layer weights set to zero ({(double)zeroed / prunable:P1})" };
        ModelConverter.Write(weights, checkpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
        return new SparsePruneReport(o.Output, zeroed, prunable, c.ParameterCount, pattern, notes);
    }

    /// <summary>Zero the ⌊s·cols⌋ lowest-scoring weights of each row of W[rows, cols] (score |W_ij|·norm_j; ties to the
    /// lower column); returns how many.</summary>
    public static long PruneRows(float* w, int rows, int cols, float[] norms, double sparsity)
    {
        int drop = (int)Math.Floor(sparsity * cols);
        var order = new int[cols];
        var scores = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            float* row = w + (long)r * cols;
            for (int j = 0; j < cols; j++) { order[j] = j; scores[j] = MathF.Abs(row[j]) * norms[j]; }
            Array.Sort(scores, order); // ascending; Array.Sort is not stable, so equal scores are put in column order below
            for (int start = 0; start < cols;)
            {
                int end = start + 1;
                while (end < cols && scores[end] == scores[start]) end++;
                Array.Sort(order, start, end - start);
                start = end;
            }
            for (int i = 0; i < drop; i++) row[order[i]] = 0;
        }
        return (long)rows * drop;
    }

    /// <summary>In every group of <paramref name="group"/> consecutive inputs of each row, zero all but the
    /// <paramref name="keep"/> highest-scoring (ties keep the lower column); returns how many.</summary>
    public static long PruneGroups(float* w, int rows, int cols, float[] norms, int keep, int group)
    {
        Span<float> scores = stackalloc float[group];
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < cols; g += group)
            {
                float* part = w + (long)r * cols + g;
                for (int j = 0; j < group; j++) scores[j] = MathF.Abs(part[j]) * norms[g + j];
                // Selection by rank: j is kept when fewer than `keep` others outrank it (higher score, or equal and earlier).
                for (int j = 0; j < group; j++)
                {
                    int above = 0;
                    for (int i = 0; i < group; i++)
                        if (scores[i] > scores[j] || (scores[i] == scores[j] && i < j)) above++;
                    if (above >= keep) part[j] = 0;
                }
            }
        return (long)rows * (cols / group) * (group - keep);
    }
}
