namespace Hone.Experts;

/// <summary>
/// Router telemetry gathered while a mixture of experts runs: per sparse layer, how many of the N·k choices went to
/// each expert (its load), the mean probability the router gave each expert, the mean entropy of the routing
/// distribution (nats; ln E when the router cannot tell experts apart, 0 when it is certain) and the load-balancing
/// loss those give (<see cref="RouterLosses.LoadBalancing"/>'s value: k at perfect balance, up to k·E when one expert
/// takes everything).
/// </summary>
public sealed class RoutingStatistics
{
    readonly long[][] _choices;    // [L][E]
    readonly double[][] _probability; // [L][E] sums over rows
    readonly double[] _entropy;    // [L] sums over rows
    readonly long[] _rows;         // [L]
    readonly long[] _total;        // [L] choices made (rows·k under top-k routing)
    readonly long[] _dropped;      // [L] rows no expert took (expert-choice routing)

    public int Experts { get; }
    public int ExpertsPerToken { get; }

    public RoutingStatistics(int layers, int experts, int expertsPerToken)
    {
        Experts = experts; ExpertsPerToken = expertsPerToken;
        _choices = Enumerable.Range(0, layers).Select(_ => new long[experts]).ToArray();
        _probability = Enumerable.Range(0, layers).Select(_ => new double[experts]).ToArray();
        _entropy = new double[layers];
        _rows = new long[layers];
        _total = new long[layers];
        _dropped = new long[layers];
    }

    /// <param name="logits">[T, E] the layer's router logits</param>
    /// <param name="chosen">[T, k] the experts routing chose</param>
    public void Add(int layer, ReadOnlySpan<float> logits, int rows, ReadOnlySpan<int> chosen)
    {
        AddDistribution(layer, logits, rows);
        foreach (int expert in chosen[..(rows * ExpertsPerToken)]) _choices[layer][expert]++;
        _total[layer] += (long)rows * ExpertsPerToken;
    }

    /// <summary>Expert-choice routing: each row's slots [T, E] hold a nonzero weight where that expert took the row;
    /// a row no expert took counts as dropped.</summary>
    /// <param name="weights">[T, E]</param>
    public void AddExpertChoice(int layer, ReadOnlySpan<float> logits, int rows, ReadOnlySpan<float> weights)
    {
        AddDistribution(layer, logits, rows);
        int e = Experts;
        for (int t = 0; t < rows; t++)
        {
            bool any = false;
            for (int j = 0; j < e; j++)
                if (weights[t * e + j] != 0) { _choices[layer][j]++; _total[layer]++; any = true; }
            if (!any) _dropped[layer]++;
        }
    }

    void AddDistribution(int layer, ReadOnlySpan<float> logits, int rows)
    {
        int e = Experts;
        Span<double> p = e <= 1024 ? stackalloc double[e] : new double[e];
        for (int t = 0; t < rows; t++)
        {
            RouterLosses.Softmax(logits.Slice(t * e, e), p);
            double entropy = 0;
            for (int j = 0; j < e; j++)
            {
                _probability[layer][j] += p[j];
                if (p[j] > 0) entropy -= p[j] * Math.Log(p[j]);
            }
            _entropy[layer] += entropy;
        }
        _rows[layer] += rows;
    }

    /// <summary>One layer's summary; null for a layer that routed nothing (a dense layer).</summary>
    public LayerRouting? Layer(int layer)
    {
        long rows = _rows[layer];
        if (rows == 0) return null;
        var load = _choices[layer].Select(c => (double)c / Math.Max(1, _total[layer])).ToArray();
        var meanProbability = _probability[layer].Select(s => s / rows).ToArray();
        double balance = Experts * load.Zip(meanProbability, (f, p) => f * ExpertsPerToken * p).Sum();
        return new LayerRouting(layer, rows, load, meanProbability, _entropy[layer] / rows, Math.Log(Experts), balance, (double)_dropped[layer] / rows);
    }

    public IEnumerable<LayerRouting> Layers() =>
        Enumerable.Range(0, _rows.Length).Select(Layer).OfType<LayerRouting>();
}

/// <param name="Load">[E] each expert's share of the choices (sums to 1)</param>
/// <param name="MeanProbability">[E] the router's mean probability for each expert</param>
/// <param name="Entropy">mean entropy of the routing distribution, nats</param>
/// <param name="MaxEntropy">ln E</param>
/// <param name="BalanceLoss">the load-balancing loss of these rows (k when balanced)</param>
/// <param name="Dropped">expert-choice routing: the share of rows no expert took (they pass the layer's MLP by); 0 under top-k</param>
public sealed record LayerRouting(int Layer, long Tokens, double[] Load, double[] MeanProbability, double Entropy, double MaxEntropy, double BalanceLoss,
    double Dropped = 0);
