using System.Text.Json.Nodes;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>One micro-batch of whole examples: [B, T] tokens and targets (−1 = not scored), each row's length, and for
/// NPO each row's reference NLL (the starting model's summed NLL of that example's targets).</summary>
public sealed record UnlearningBatch(int[] Tokens, int[] Targets, int[] Lengths, int Batch, int Sequence, double[]? ReferenceNll = null);

/// <summary>What one unlearning step did: its objective, and the forget and retain sets' mean per-token NLL on the
/// step's own rows (before the update).</summary>
public sealed record UnlearningStep(double Objective, double ForgetNll, double? RetainNll);

/// <summary>
/// The unlearning objectives, all as signed per-sequence weights on the ordinary cross-entropy gradient
/// (<see cref="TrainableLlama.SequenceLossWeights"/>). Over one optimizer step with forget sequences f (F target
/// tokens, N sequences, NLL_f summed over each one's answer tokens) and retain sequences r (R target tokens):
/// <list type="bullet">
/// <item>grad-ascent: L = −Σ_f NLL_f / F (the forget set's mean per-token cross-entropy, ascended): weight −1/F.</item>
/// <item>grad-diff: L = −Σ_f NLL_f / F + w·Σ_r NLL_r / R: forget weight −1/F, retain weight w/R. Each step runs its
/// grad_accum forget micro-batches and grad_accum retain micro-batches interleaved (forget, retain, forget, …), the
/// same batch_size each.</item>
/// <item>npo (Zhang et al. 2024): L = (2/β)·(1/N)·Σ_f log(1 + exp(β·(log π_θ(y_f|x_f) − log π_ref(y_f|x_f)))) with
/// log π = −NLL over the answer tokens; ∂L/∂log π_θ(f) = 2σ(β(log π_θ − log π_ref))/N, so each forget sequence's
/// cross-entropy gradient gets weight −2σ(β(NLL_ref − NLL_θ))/N (as β → 0 this is grad-ascent on sequence NLLs with
/// weight −1/N). π_ref is the frozen starting model: its NLLs are computed once, before the first step. With a
/// retain set, + w·Σ_r NLL_r / R as in grad-diff.</item>
/// </list>
/// </summary>
public sealed class UnlearningObjective
{
    public static readonly string[] Methods = ["grad-ascent", "grad-diff", "npo"];

    readonly TrainOptions _o;
    readonly TrainingRows _forget;
    readonly TrainingRows? _retain;     // the retain term's rows (null: no retain term)
    readonly TrainingRows? _retainEval; // the retain set, evaluated at the evaluation points even where the objective has no retain term
    readonly TrainableLlama _model;
    readonly double[]? _referenceNll; // [forget examples] the starting model's summed answer NLL (npo)

    public string Method => _o.UnlearnMethod;

    /// <summary>Sets up the objective for a run; for npo, scores every forget example with the model as it is now
    /// (the starting model, before any step) as π_ref.</summary>
    public UnlearningObjective(TrainOptions o, TrainingData data, TrainableLlama model)
    {
        if (!Methods.Contains(o.UnlearnMethod)) throw new ArgumentException($"unlearn_method: unknown method '{o.UnlearnMethod}'; known: {string.Join(", ", Methods)}");
        _o = o; _forget = data.Train; _model = model;
        _retain = o.RetainWeight > 0 && o.UnlearnMethod != "grad-ascent" ? data.Retain : null;
        _retainEval = data.Retain;
        if (o.UnlearnMethod == "npo") _referenceNll = SequenceNlls(model, _forget, o.BatchSize, o.SeqLen);
    }

    /// <summary>Each example's summed NLL of its targets (double[examples]; examples that make no row stay NaN), in
    /// batches of the run's batch size with the sequence weights reading each row's NLL.</summary>
    public static double[] SequenceNlls(TrainableLlama model, TrainingRows rows, int batchSize, int sequence)
    {
        var nll = new double[rows.ExampleCount];
        Array.Fill(nll, double.NaN);
        var pending = new List<(int Example, int[] Tokens, int[] Targets, int Length)>();
        void Flush()
        {
            if (pending.Count == 0) return;
            var values = ForwardSequenceNll(model, pending.SelectMany(p => p.Tokens).ToArray(), pending.SelectMany(p => p.Targets).ToArray(),
                pending.Select(p => p.Length).ToArray(), pending.Count, sequence);
            for (int i = 0; i < pending.Count; i++) nll[pending[i].Example] = values[i];
            pending.Clear();
        }
        foreach (var row in rows.ExampleRows()) { pending.Add(row); if (pending.Count == batchSize) Flush(); }
        Flush();
        return nll;
    }

    /// <summary>Each row's summed NLL, forward only: one row at a time, as <see cref="TrainableLlama.Forward"/> sums a batch.</summary>
    public static double[] ForwardSequenceNll(TrainableLlama model, int[] tokens, int[] targets, int[] lengths, int batch, int sequence)
    {
        var nll = new double[batch];
        for (int b = 0; b < batch; b++)
            nll[b] = model.Forward(tokens.AsSpan(b * sequence, sequence), targets.AsSpan(b * sequence, sequence), 1, sequence, lengths.AsSpan(b, 1));
        return nll;
    }

    // ---- the objective, per sequence ------------------------------------------------------------------

    /// <summary>One forget sequence's share of the objective and ∂L/∂NLL (its weight on the cross-entropy gradient).</summary>
    /// <param name="nll">its summed NLL under the current weights</param>
    /// <param name="referenceNll">npo: its summed NLL under the starting model</param>
    /// <param name="forgetTargets">F, the step's forget target tokens (grad-ascent, grad-diff)</param>
    /// <param name="forgetSequences">N, the step's forget sequences (npo)</param>
    public static (double Term, double Weight) ForgetSequence(string method, double nll, double referenceNll, double beta, long forgetTargets, int forgetSequences)
    {
        if (method == "npo")
        {
            double x = beta * (referenceNll - nll); // β(log π_θ − log π_ref)
            return (2 / beta * Softplus(x) / forgetSequences, -2 * Sigmoid(x) / forgetSequences);
        }
        return (-nll / forgetTargets, -1.0 / forgetTargets);
    }

    /// <summary>One retain sequence's share: w·NLL/R and its weight w/R.</summary>
    public static (double Term, double Weight) RetainSequence(double nll, double retainWeight, long retainTargets) =>
        (retainWeight * nll / retainTargets, retainWeight / retainTargets);

    /// <summary>log(1 + eˣ) without overflow.</summary>
    public static double Softplus(double x) => x > 0 ? x + Math.Log(1 + Math.Exp(-x)) : Math.Log(1 + Math.Exp(x));

    public static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    // ---- one step ----------------------------------------------------------------------------------

    /// <summary>
    /// Forward and backward over one optimizer step's micro-batches: accumulates ∂L/∂θ into the model's gradients (call
    /// <see cref="TrainableLlama.ZeroGradients"/> first) and returns L. Forget and retain micro-batches run interleaved.
    /// </summary>
    public static UnlearningStep ForwardBackward(TrainableLlama model, string method, IReadOnlyList<UnlearningBatch> forget, IReadOnlyList<UnlearningBatch> retain,
        double beta, double retainWeight)
    {
        long forgetTargets = forget.Sum(b => (long)b.Targets.Count(t => t >= 0)), retainTargets = retain.Sum(b => (long)b.Targets.Count(t => t >= 0));
        int forgetSequences = forget.Sum(b => b.Batch);
        if (forgetTargets == 0) throw new ArgumentException("the forget micro-batches have no target token");
        if (method == "npo" && forget.Any(b => b.ReferenceNll == null)) throw new ArgumentException("npo needs each forget row's reference NLL");
        float auxScale = 1f / Math.Max(1, forget.Count + retain.Count);
        double objective = 0, forgetNll = 0, retainNll = 0;
        long dropoutStep = model.Step; // each micro-batch its own dropout masks, as the trainer numbers them
        try
        {
            for (int m = 0; m < Math.Max(forget.Count, retain.Count); m++)
            {
                if (m < forget.Count)
                {
                    var b = forget[m];
                    model.SequenceLossWeights = nll =>
                    {
                        var w = new float[nll.Length];
                        for (int i = 0; i < nll.Length; i++)
                        {
                            var (term, weight) = ForgetSequence(method, nll[i], b.ReferenceNll?[i] ?? 0, beta, forgetTargets, forgetSequences);
                            objective += term;
                            w[i] = (float)weight;
                        }
                        return w;
                    };
                    model.Step = dropoutStep++;
                    forgetNll += model.ForwardBackward(b.Tokens, b.Targets, b.Batch, b.Sequence, 1f, auxScale, b.Lengths);
                }
                if (m < retain.Count)
                {
                    var b = retain[m];
                    model.SequenceLossWeights = null;
                    model.Step = dropoutStep++;
                    double nll = model.ForwardBackward(b.Tokens, b.Targets, b.Batch, b.Sequence, (float)(retainWeight / retainTargets), auxScale, b.Lengths);
                    objective += RetainSequence(nll, retainWeight, retainTargets).Term;
                    retainNll += nll;
                }
            }
        }
        finally { model.SequenceLossWeights = null; }
        return new UnlearningStep(objective, forgetNll / forgetTargets, retain.Count > 0 ? retainNll / Math.Max(1, retainTargets) : null);
    }

    /// <summary>The objective without gradients (finite-difference checks): the same sums, from forward-only NLLs.</summary>
    public static double Value(TrainableLlama model, string method, IReadOnlyList<UnlearningBatch> forget, IReadOnlyList<UnlearningBatch> retain,
        double beta, double retainWeight)
    {
        long forgetTargets = forget.Sum(b => (long)b.Targets.Count(t => t >= 0)), retainTargets = retain.Sum(b => (long)b.Targets.Count(t => t >= 0));
        int forgetSequences = forget.Sum(b => b.Batch);
        double objective = 0;
        foreach (var b in forget)
        {
            var nll = ForwardSequenceNll(model, b.Tokens, b.Targets, b.Lengths, b.Batch, b.Sequence);
            for (int i = 0; i < b.Batch; i++) objective += ForgetSequence(method, nll[i], b.ReferenceNll?[i] ?? 0, beta, forgetTargets, forgetSequences).Term;
        }
        foreach (var b in retain)
            objective += RetainSequence(model.Forward(b.Tokens, b.Targets, b.Batch, b.Sequence, b.Lengths), retainWeight, retainTargets).Term;
        return objective;
    }

    /// <summary>Step <paramref name="step"/>'s micro-batches from the forget and retain row streams (rows firstRow …
    /// firstRow + batch·grad_accum − 1 of each; the retain stream cycles through its own epochs), forward and backward.</summary>
    public UnlearningStep Step(long step, long firstRow)
    {
        var forget = new List<UnlearningBatch>();
        var retain = new List<UnlearningBatch>();
        for (int m = 0; m < _o.GradAccum; m++)
        {
            long first = firstRow + (long)m * _o.BatchSize;
            forget.Add(Batch(_forget, first, _referenceNll));
            if (_retain != null) retain.Add(Batch(_retain, first, null));
        }
        _model.Step = step * _o.GradAccum * (_retain != null ? 2 : 1);
        return ForwardBackward(_model, _o.UnlearnMethod, forget, retain, _o.NpoBeta, _o.RetainWeight);
    }

    UnlearningBatch Batch(TrainingRows rows, long first, double[]? referenceNll)
    {
        int b = _o.BatchSize, t = _o.SeqLen;
        var tokens = new int[b * t];
        var targets = new int[b * t];
        var lengths = new int[b];
        double[]? reference = referenceNll != null ? new double[b] : null;
        for (int i = 0; i < b; i++)
        {
            var row = rows.RowWithLength(first + i);
            row.Tokens.CopyTo(tokens, i * t);
            row.Targets.CopyTo(targets, i * t);
            lengths[i] = row.Length;
            if (reference != null) reference[i] = referenceNll![rows.ExampleOf(first + i)];
        }
        return new UnlearningBatch(tokens, targets, lengths, b, t, reference);
    }

    /// <summary>The forget and retain sets' mean per-token NLL over all their rows (the evaluation points' numbers;
    /// the run stops once the forget one passes forget_target_loss). grad-ascent evaluates a given retain set without
    /// training on it.</summary>
    public (double Forget, double? Retain) Evaluate() =>
        (MeanNll(_model, _forget, _o.BatchSize, _o.SeqLen), _retainEval != null ? MeanNll(_model, _retainEval, _o.BatchSize, _o.SeqLen) : null);

    static double MeanNll(TrainableLlama model, TrainingRows rows, int batchSize, int sequence)
    {
        double nll = 0;
        long count = 0;
        var pending = new List<(int[] Tokens, int[] Targets, int Length)>();
        void Flush()
        {
            if (pending.Count == 0) return;
            var targets = pending.SelectMany(p => p.Targets).ToArray();
            nll += model.Forward(pending.SelectMany(p => p.Tokens).ToArray(), targets, pending.Count, sequence, pending.Select(p => p.Length).ToArray());
            count += targets.Count(t => t >= 0);
            pending.Clear();
        }
        foreach (var row in rows.InOrder()) { pending.Add(row); if (pending.Count == batchSize) Flush(); }
        Flush();
        return nll / Math.Max(1, count);
    }

    /// <summary>The settings the run's summary records.</summary>
    public JsonObject SummaryJson(double? lastForgetNll, double? lastRetainNll, bool reachedTarget) => new()
    {
        ["method"] = _o.UnlearnMethod,
        ["npo_beta"] = _o.UnlearnMethod == "npo" ? _o.NpoBeta : null,
        ["retain_weight"] = _retain != null ? _o.RetainWeight : null,
        ["forget_target_loss"] = _o.ForgetTargetLoss > 0 ? _o.ForgetTargetLoss : null,
        ["forget_nll"] = lastForgetNll, ["retain_nll"] = lastRetainNll, ["reached_forget_target"] = reachedTarget,
        ["reference"] = _o.UnlearnMethod == "npo" ? "the starting model's NLL of each forget example, computed once before the first step" : null,
    };
}
