using Hone.Inference;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Pruning;

/// <param name="Keep">experts each sparse layer keeps (at least the experts per token... or fewer, which lowers k too)</param>
/// <param name="Calibration">the text whose routing decides (plain text, tokenized whole)</param>
public sealed record ExpertPruneOptions(string Model, string Calibration, int Keep, string Output, int Context = 512, int MaxTokens = 8192,
    TensorType? Type = null, int Threads = 0);

/// <param name="Kept">per sparse layer: the experts kept (original indices) and the share of the calibration's routed
/// choices they had</param>
public sealed record ExpertPruneReport(string Output, int ExpertsBefore, int ExpertsAfter, int ExpertsPerToken, long ParametersBefore, long ParametersAfter,
    int CalibrationTokens, IReadOnlyList<(int Layer, int[] Kept, double Share)> Kept, IReadOnlyList<string> Notes);

/// <summary>
/// Expert pruning by routing frequency: a calibration text runs through the mixture (<see cref="RoutingProbe"/>), and
/// each sparse layer keeps the <c>Keep</c> experts that received the most routed choices (ties to the lower index),
/// in their order; the others, with their router rows, are removed. The router's softmax then runs over the kept
/// experts only — their probabilities renormalized among themselves — and top-k routing picks among them (k is
/// lowered to Keep when larger). The output is an ordinary Mixtral or Qwen2-MoE checkpoint with fewer experts.
/// </summary>
public static unsafe class ExpertPruner
{
    public static ExpertPruneReport Prune(ExpertPruneOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        using var checkpoint = Checkpoint.Open(o.Model);
        var c = checkpoint.Config;
        if (!c.IsMixtureOfExperts) throw new ArgumentException($"{o.Model} is a dense model ({c.Architecture}): it has no experts to prune");
        if (o.Keep < 1 || o.Keep >= c.Experts) throw new ArgumentException($"--keep {o.Keep}: keep between 1 and {c.Experts - 1} of the {c.Experts} experts");
        if (o.Keep < 2) throw new ArgumentException("--keep 1 leaves no mixture; keep at least 2 experts (or merge the model's experts into a dense one another way)");
        log($"routing {o.Calibration} through {o.Model} ({c.Experts} experts, {c.ExpertsPerToken} per token)...");
        var (statistics, tokens, _) = RoutingProbe.Run(o.Model, o.Calibration, o.Context, o.MaxTokens, o.Threads);
        var kept = new List<(int Layer, int[] Kept, double Share)>();
        var config = c with { Experts = o.Keep, ExpertsPerToken = Math.Min(c.ExpertsPerToken, o.Keep) };
        var notes = new List<string>();
        if (config.ExpertsPerToken < c.ExpertsPerToken) notes.Add($"experts per token lowered from {c.ExpertsPerToken} to {config.ExpertsPerToken} (no more than the experts kept)");
        using var source = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
        using var output = LlamaWeights.CreateRandom(config, TensorType.F32, 1);
        var from = source.Matrices().ToDictionary(m => m.Name);
        foreach (var m in output.Matrices())
            if (from.TryGetValue(m.Name, out var s) && s.Rows == m.Rows && s.Cols == m.Cols && !IsExpertTensor(m.Name)) Copy(s, m);
        foreach (var (role, layer, bias, rows, cols, _) in LlamaWeights.Expected(config))
            if (rows == 1)
                new ReadOnlySpan<float>(source.Vector(role, layer, bias), cols).CopyTo(new Span<float>(output.Vector(role, layer, bias), cols));
        for (int l = 0; l < c.Layers; l++)
        {
            if (!c.IsSparseLayer(l)) continue;
            var routing = statistics.Layer(l) ?? throw new InvalidOperationException($"layer {l} routed nothing");
            var order = Enumerable.Range(0, c.Experts).OrderByDescending(e => routing.Load[e]).ThenBy(e => e).Take(o.Keep).Order().ToArray();
            kept.Add((l, order, order.Sum(e => routing.Load[e])));
            var src = source.Layers[l];
            var dst = output.Layers[l];
            for (int i = 0; i < order.Length; i++)
            {
                int e = order[i];
                Copy(src.ExpertGate![e], dst.ExpertGate![i]);
                Copy(src.ExpertUp![e], dst.ExpertUp![i]);
                Copy(src.ExpertDown![e], dst.ExpertDown![i]);
                Buffer.MemoryCopy(src.Router!.Data + (long)e * src.Router.RowBytes, dst.Router!.Data + (long)i * dst.Router.RowBytes, dst.Router.RowBytes, dst.Router.RowBytes);
            }
        }
        notes.Add($"calibration: {tokens:N0} tokens of {Path.GetFileName(o.Calibration)}; the kept experts had {kept.Average(k => k.Share):P1} of the routed choices on average");
        ModelConverter.Write(output, checkpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
        return new ExpertPruneReport(o.Output, c.Experts, o.Keep, config.ExpertsPerToken, c.ParameterCount, config.ParameterCount, tokens, kept, notes);
    }

    static bool IsExpertTensor(string name) =>
        TensorNames.TryParseGguf(name, out var p) && p.Role is TensorRole.ExpertRouter or TensorRole.ExpertGate or TensorRole.ExpertUp or TensorRole.ExpertDown;

    static void Copy(WeightMatrix from, WeightMatrix to)
    {
        if (from.Rows != to.Rows || from.Cols != to.Cols || from.Type != to.Type) throw new InvalidOperationException($"{from.Name} does not fit {to.Name}");
        Buffer.MemoryCopy(from.Data, to.Data, to.ByteLength, from.ByteLength);
    }
}
