namespace Hone.Experts;

/// <summary>
/// Top-k routing of a mixture-of-experts layer, as Mixtral and Qwen2-MoE define it: the router's logits [T, E] → softmax
/// over all E experts (in fp32, as Hugging Face computes it) → the k largest probabilities (ties to the lower expert) →
/// their weights, divided by their sum when <c>normalize</c> (Mixtral; Qwen2-MoE's norm_topk_prob), else the
/// probabilities themselves. Then the rows are grouped by expert so that each expert runs once over all its rows.
/// </summary>
public static class ExpertRouting
{
    /// <param name="logits">[T, E] router logits</param>
    /// <param name="experts">[T, k] out: each row's experts, most probable first</param>
    /// <param name="weights">[T, k] out: each chosen expert's weight</param>
    public static void Route(ReadOnlySpan<float> logits, int rows, int expertCount, int k, bool normalize, Span<int> experts, Span<float> weights)
    {
        if (k < 1 || k > expertCount) throw new ArgumentOutOfRangeException(nameof(k), $"{k} experts per token of {expertCount}");
        Span<float> probabilities = expertCount <= 1024 ? stackalloc float[expertCount] : new float[expertCount];
        Span<bool> taken = expertCount <= 1024 ? stackalloc bool[expertCount] : new bool[expertCount];
        for (int t = 0; t < rows; t++)
        {
            Softmax(logits.Slice(t * expertCount, expertCount), probabilities);
            var chosen = experts.Slice(t * k, k);
            var chosenWeights = weights.Slice(t * k, k);
            float total = 0;
            taken.Clear();
            for (int j = 0; j < k; j++)
            {
                // NaN logits still choose (the lowest free expert) and carry NaN on to the output, where it is caught.
                int best = -1;
                for (int e = 0; e < expertCount; e++)
                    if (!taken[e] && (best < 0 || probabilities[e] > probabilities[best])) best = e;
                chosen[j] = best;
                chosenWeights[j] = probabilities[best];
                total += probabilities[best];
                taken[best] = true;
            }
            if (normalize)
                for (int j = 0; j < k; j++) chosenWeights[j] /= total;
        }
    }

    /// <summary>p = softmax(logits) in fp32, max-subtracted: the probabilities routing ranks and weights experts by (its
    /// backward recomputes them with this too).</summary>
    public static void Softmax(ReadOnlySpan<float> logits, Span<float> p)
    {
        float max = float.NegativeInfinity, sum = 0;
        foreach (float v in logits) max = Math.Max(max, v);
        for (int e = 0; e < logits.Length; e++) sum += p[e] = MathF.Exp(logits[e] - max);
        for (int e = 0; e < logits.Length; e++) p[e] /= sum;
    }

    /// <summary>
    /// Groups the (row, slot) pairs of a routing by expert, rows ascending within each: expert e's pairs are
    /// <paramref name="order"/>[<paramref name="starts"/>[e] .. <paramref name="starts"/>[e + 1]), each the index
    /// row·k + slot into the routing's experts and weights.
    /// </summary>
    /// <param name="experts">[T, k] from <see cref="Route"/></param>
    /// <param name="starts">[E + 1] out</param>
    /// <param name="order">[T·k] out</param>
    /// <param name="weights">[T, k] when given: the slots whose weight is exactly 0 (skipped experts) are left out</param>
    public static void GroupByExpert(ReadOnlySpan<int> experts, int rows, int expertCount, int k, Span<int> starts, Span<int> order,
        ReadOnlySpan<float> weights = default)
    {
        starts[..(expertCount + 1)].Clear();
        int n = rows * k;
        bool filter = !weights.IsEmpty;
        for (int i = 0; i < n; i++) if (!filter || weights[i] != 0) starts[experts[i] + 1]++;
        for (int e = 0; e < expertCount; e++) starts[e + 1] += starts[e];
        Span<int> next = expertCount <= 1024 ? stackalloc int[expertCount] : new int[expertCount];
        starts[..expertCount].CopyTo(next);
        for (int i = 0; i < n; i++) if (!filter || weights[i] != 0) order[next[experts[i]]++] = i;
    }

    /// <summary>
    /// Dynamic expert skipping: of each row's chosen experts after the first (the most probable always runs), those
    /// whose weight is below <paramref name="threshold"/> get weight 0 (and are left out by <see cref="GroupByExpert"/>);
    /// with <paramref name="normalize"/> the kept weights are rescaled to their former sum (1 for Mixtral), so the
    /// skipped share goes to the kept experts. Returns the slots skipped.
    /// </summary>
    /// <param name="weights">[T, k] from <see cref="Route"/>, changed in place</param>
    public static int Skip(Span<float> weights, int rows, int k, float threshold, bool normalize)
    {
        int skipped = 0;
        for (int t = 0; t < rows; t++)
        {
            var w = weights.Slice(t * k, k);
            float before = 0, after = 0;
            for (int j = 0; j < k; j++) before += w[j];
            for (int j = 1; j < k; j++)
                if (w[j] < threshold) { w[j] = 0; skipped++; }
            if (!normalize) continue;
            for (int j = 0; j < k; j++) after += w[j];
            if (after != before) for (int j = 0; j < k; j++) w[j] *= before / after;
        }
        return skipped;
    }
}
