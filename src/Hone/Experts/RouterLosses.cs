namespace Hone.Experts;

/// <summary>
/// The auxiliary losses of mixture-of-experts training, over the router logits of N rows (every sparse layer's tokens
/// together, as Hugging Face concatenates them), with their gradients:
/// <list type="bullet">
/// <item>load balancing, Hugging Face's load_balancing_loss_func (Switch Transformer's loss with top-k): with p the
/// softmax of each row, f_e the share of the N·k choices that went to expert e (counted per top-k slot and summed, so
/// Σ f = k) and P_e the mean of p_e over the rows, L = E · Σ_e f_e · P_e. The choices carry no gradient:
/// ∂L/∂z_nj = (E / N) · p_nj · (f_j − Σ_e f_e p_ne). Perfect balance gives k.</item>
/// <item>router z-loss (ST-MoE): L = mean over rows of logsumexp(z_n)², ∂L/∂z_nj = (2 / N) · lse_n · p_nj; it keeps the
/// logits small.</item>
/// </list>
/// Each is multiplied by its coefficient (router_aux_loss_coef, router_z_loss_coef) before it joins the loss.
/// </summary>
public static class RouterLosses
{
    /// <param name="logits">[N, E] router logits</param>
    /// <param name="gradient">[N, E]: when not empty, scale · ∂L/∂logits is added to it</param>
    public static double LoadBalancing(ReadOnlySpan<float> logits, int rows, int experts, int k, Span<float> gradient = default, float scale = 1)
    {
        Check(logits, rows, experts, gradient);
        if (k < 1 || k > experts) throw new ArgumentOutOfRangeException(nameof(k), $"{k} experts per token of {experts}");
        // No allocation per call (it runs every training step): per-expert sums live on the stack, each row's softmax is
        // recomputed where the gradient needs it.
        Span<double> share = experts <= 512 ? stackalloc double[experts] : new double[experts];          // f_e
        Span<double> meanProbability = experts <= 512 ? stackalloc double[experts] : new double[experts]; // P_e
        Span<double> p = experts <= 512 ? stackalloc double[experts] : new double[experts];
        Span<int> chosen = k <= 256 ? stackalloc int[k] : new int[k];
        Span<float> chosenWeights = k <= 256 ? stackalloc float[k] : new float[k];
        share.Clear(); meanProbability.Clear();
        for (int n = 0; n < rows; n++)
        {
            var row = logits.Slice(n * experts, experts);
            Softmax(row, p);
            for (int e = 0; e < experts; e++) meanProbability[e] += p[e] / rows;
            // The same choices as inference makes (fp32 softmax, ties to the lower expert).
            ExpertRouting.Route(row, 1, experts, k, false, chosen, chosenWeights);
            foreach (int e in chosen) share[e] += 1.0 / rows;
        }
        double loss = 0;
        for (int e = 0; e < experts; e++) loss += share[e] * meanProbability[e];
        loss *= experts;
        if (!gradient.IsEmpty)
            for (int n = 0; n < rows; n++)
            {
                Softmax(logits.Slice(n * experts, experts), p);
                double mixed = 0;
                for (int e = 0; e < experts; e++) mixed += share[e] * p[e];
                for (int j = 0; j < experts; j++)
                    gradient[n * experts + j] += (float)(scale * experts / (double)rows * p[j] * (share[j] - mixed));
            }
        return loss;
    }

    /// <param name="logits">[N, E] router logits</param>
    /// <param name="gradient">[N, E]: when not empty, scale · ∂L/∂logits is added to it</param>
    public static double ZLoss(ReadOnlySpan<float> logits, int rows, int experts, Span<float> gradient = default, float scale = 1)
    {
        Check(logits, rows, experts, gradient);
        Span<double> p = experts <= 512 ? stackalloc double[experts] : new double[experts];
        double loss = 0;
        for (int n = 0; n < rows; n++)
        {
            double lse = Softmax(logits.Slice(n * experts, experts), p);
            loss += lse * lse / rows;
            if (gradient.IsEmpty) continue;
            for (int j = 0; j < experts; j++) gradient[n * experts + j] += (float)(scale * 2.0 / rows * lse * p[j]);
        }
        return loss;
    }

    /// <summary>p = softmax(logits) in double; returns logsumexp(logits).</summary>
    internal static double Softmax(ReadOnlySpan<float> logits, Span<double> p)
    {
        double max = double.NegativeInfinity;
        foreach (float v in logits) max = Math.Max(max, v);
        double sum = 0;
        for (int e = 0; e < logits.Length; e++) sum += p[e] = Math.Exp(logits[e] - max);
        for (int e = 0; e < logits.Length; e++) p[e] /= sum;
        return max + Math.Log(sum);
    }

    static void Check(ReadOnlySpan<float> logits, int rows, int experts, Span<float> gradient)
    {
        if (rows < 1 || experts < 1 || logits.Length < (long)rows * experts)
            throw new ArgumentException($"router logits hold {logits.Length} values, not {rows} rows × {experts} experts");
        if (!gradient.IsEmpty && gradient.Length < (long)rows * experts)
            throw new ArgumentException($"the gradient holds {gradient.Length} values, needs {rows} × {experts}");
    }
}
