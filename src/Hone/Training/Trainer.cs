using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>One logged optimizer step.</summary>
public sealed record TrainingProgress(long Step, long TotalSteps, double Loss, float LearningRate, double GradientNorm,
    double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining, double Epoch);

/// <summary>Where a run reports what it does (the CLI draws a progress bar from it).</summary>
public interface ITrainingReporter
{
    void Info(string message);
    void Progress(TrainingProgress progress);
    void Validation(long step, double loss, bool improved);
    void Checkpoint(string path);
}

/// <summary>What a finished (or interrupted) run did and wrote.</summary>
public sealed record TrainingSummary(long Steps, long TotalSteps, long Tokens, double Seconds, double FinalLoss, double? BestValidationLoss,
    long TrainableParameters, long PeakWorkingSetBytes, bool Interrupted, bool EarlyStopped, string Output, IReadOnlyList<string> Written);

/// <summary>The training data of a run, tokenized: rows for training and (optionally) validation.</summary>
public sealed record TrainingData(TrainingRows Train, TrainingRows? Validation, int SkippedLines, string Description)
{
    /// <summary>Unlearning: the retain set (Train is then the forget set, one example per row).</summary>
    public TrainingRows? Retain { get; init; }
}

/// <summary>
/// The training loop: gradient accumulation over micro-batches (loss normalized by the targets of the whole step),
/// clipping, AdamW with a warm-up schedule, periodic validation with early stopping, checkpoints every N steps and
/// on cancellation (Ctrl-C), exact resume, metrics.jsonl, and the final adapter (PEFT layout) or model.
/// Same seed and threads → bit-identical runs; a resumed run continues exactly where the interrupted one was.
/// </summary>
public static class Trainer
{
    public const string CheckpointFormat = "hone-training-checkpoint";
    public const int CheckpointVersion = 1;

    /// <param name="loadData">tokenizes the data for the model (given the checkpoint) — the Data layer's loader</param>
    public static TrainingSummary Run(TrainOptions o, Func<Checkpoint, TrainOptions, TrainingData> loadData, ITrainingReporter reporter,
        CancellationToken cancel = default)
    {
        // Every check before any work: the options alone, then against the model's config, then the data (read and
        // tokenized before the weights load, so a bad line or template costs no load).
        o.Validate();
        using var checkpoint = Checkpoint.Open(o.Model);
        o.ValidateFor(checkpoint.Config, checkpoint.Path);
        int sharedVocabulary = 0;
        using var teacherCheckpoint = o.Stage == TrainingStage.Distill && o.Teacher != null ? DistillationRun.Check(o, checkpoint, reporter, out sharedVocabulary) : null;
        using var teacherCache = o.Stage == TrainingStage.Distill && o.TeacherCache != null ? CachedDistillationRun.Check(o, checkpoint, reporter) : null;
        string? resumeFrom = ResolveResume(o);
        var data = loadData(checkpoint, o);
        reporter.Info(data.Description);
        if (teacherCache != null) CachedDistillationRun.CheckCoverage(teacherCache, o, data.Train);
        Directory.CreateDirectory(o.Out);
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(o.Threads));
        var storage = o.Method == TrainingMethod.QLora ? TensorTypes.Parse(o.QloraType) : o.UsesAdapters ? (TensorType?)null : TensorType.F32;
        reporter.Info($"loading {o.Model} ({checkpoint.Config.Architecture}, {checkpoint.Config.ParameterCount:N0} parameters)" +
                      (storage is TensorType st && st != TensorType.F32 ? $", base held as {st.Name()}" : ""));
        using var weights = LlamaWeights.Load(checkpoint, new WeightLoadOptions(storage));

        using var model = new TrainableLlama(weights, pool, o.Setup, o.BatchSize, o.SeqLen);
        using var teacher = teacherCheckpoint != null ? DistillationRun.Start(o, teacherCheckpoint, model, pool, sharedVocabulary, reporter) : null;
        using var cachedTeacher = teacherCache != null ? CachedDistillationRun.Start(o, teacherCache, model, reporter) : null;
        var distillation = model.LogitsLoss as IDistillationLoss;
        using var optimizer = new AdamW(model.Parameters, new AdamWOptions(WeightDecay: o.WeightDecay), pool);
        long trainable = model.Parameters.Sum(p => p.Count);
        long rowsPerStep = (long)o.BatchSize * o.GradAccum;
        long totalSteps = TotalSteps(o, data.Train.RowsPerEpoch);
        long warmup = o.WarmupSteps >= 0 ? o.WarmupSteps : (long)Math.Ceiling(o.WarmupRatio * totalSteps);
        reporter.Info($"{o.Method} training of {trainable:N0} parameters ({100.0 * trainable / checkpoint.Config.ParameterCount:F2}%), " +
                      $"{totalSteps} steps of {o.BatchSize}×{o.SeqLen} tokens ×{o.GradAccum}, {data.Train.RowsPerEpoch} rows per epoch, " +
                      $"activations {model.ActivationBytes / (1 << 20)} MiB");

        // Unlearning: its objective replaces the step's loss; npo scores the forget set with the starting model here.
        UnlearningObjective? unlearning = null;
        (double Forget, double? Retain)? unlearningNll = null;
        bool reachedForgetTarget = false;
        if (o.Stage == TrainingStage.Unlearn)
        {
            unlearning = new UnlearningObjective(o, data, model);
            unlearningNll = unlearning.Evaluate();
            reporter.Info($"unlearning with {o.UnlearnMethod}: before the first step the forget set's NLL is {unlearningNll.Value.Forget:F4} per token" +
                          (unlearningNll.Value.Retain is double r0 ? $", the retain set's {r0:F4}" : "") +
                          (o.ForgetTargetLoss > 0 ? $"; stopping once the forget NLL passes {o.ForgetTargetLoss:G4} (checked every {o.EvalEvery} steps)" : ""));
        }

        var state = new RunState();
        if (resumeFrom != null)
        {
            LoadCheckpoint(resumeFrom, o, model, optimizer, state);
            reporter.Info($"resumed from {resumeFrom} at step {state.Step}");
            TruncateMetrics(o.Out, state.Step);
        }

        var metricsPath = Path.Combine(o.Out, "metrics.jsonl");
        using var metrics = new StreamWriter(new FileStream(metricsPath, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
        var tokens = new int[o.BatchSize * o.SeqLen];
        var targets = new int[o.BatchSize * o.SeqLen];
        var lengths = new int[o.BatchSize];
        var config = checkpoint.Config;
        RoutingStatistics NewRouting() => new(config.Layers, model.RoutingExperts, model.RoutingTopK);
        if (config.IsMixtureOfExperts)
        {
            model.Routing = NewRouting();
            reporter.Info($"mixture of experts: {config.Experts} experts, " +
                          (o.ExpertChoiceCapacity > 0 ? $"expert-choice routing (capacity factor {o.ExpertChoiceCapacity:G4}; generation routes top {config.ExpertsPerToken})" : $"{config.ExpertsPerToken} per token") +
                          $"; router_aux_loss_coef {model.RouterAuxLossCoef:G4}, " +
                          $"router_z_loss_coef {model.RouterZLossCoef:G4}" + (o.UsesAdapters ? "; " + AdaptedParts(model) : ""));
        }
        if (model.Mixture is { } mixture)
        {
            model.Routing = NewRouting();
            reporter.Info($"LoRA mixture of {mixture.Experts.Count} experts ({string.Join(", ", mixture.Experts.Select(e => e.Name))}), {mixture.TopK} per token, " +
                          $"a router per layer; training the routers{(o.LoraExpertsTrain ? " and the experts" : " (experts frozen)")}; " +
                          $"router_aux_loss_coef {model.RouterAuxLossCoef:G4}, router_z_loss_coef {model.RouterZLossCoef:G4}");
        }
        if (unlearningNll is { } before)
            metrics.WriteLine(new JsonObject { ["step"] = 0, ["forget_nll"] = Math.Round(before.Forget, 6), ["retain_nll"] = before.Retain is double r ? Math.Round(r, 6) : null }.ToJsonString());
        var clock = Stopwatch.StartNew();
        long tokensThisRun = 0, peak = Environment.WorkingSet;
        double lastLoss = double.NaN;
        bool interrupted = false, earlyStopped = false;
        var written = new List<string>();
        while (state.Step < totalSteps)
        {
            if (cancel.IsCancellationRequested) { interrupted = true; break; }
            var stepClock = Stopwatch.StartNew();
            // Count the targets of the whole step first so every micro-batch is normalized the same way.
            long firstRow = state.RowsConsumed;
            long targetCount = 0;
            model.ZeroGradients();
            distillation?.ResetSums();
            double lossSum = 0, balanceSum = 0, zSum = 0;
            UnlearningStep? unlearned = unlearning?.Step(state.Step, firstRow);
            if (unlearned != null) lossSum = unlearned.Objective;
            else for (long r = 0; r < rowsPerStep; r++) targetCount += data.Train.Row(firstRow + r).Targets.Count(t => t >= 0);
            for (int micro = 0; micro < (unlearned != null ? 0 : o.GradAccum); micro++)
            {
                for (int b = 0; b < o.BatchSize; b++)
                {
                    var row = data.Train.RowWithLength(firstRow + (long)micro * o.BatchSize + b);
                    row.Tokens.CopyTo(tokens, b * o.SeqLen);
                    row.Targets.CopyTo(targets, b * o.SeqLen);
                    lengths[b] = row.Length;
                }
                model.Step = state.Step * o.GradAccum + micro;
                lossSum += model.ForwardBackward(tokens, targets, o.BatchSize, o.SeqLen, 1f / Math.Max(1, targetCount), 1f / o.GradAccum, lengths);
                balanceSum += model.LastBalanceLoss; zSum += model.LastZLoss;
            }
            state.RowsConsumed += rowsPerStep;
            double gradNorm = optimizer.ClipGradients(o.MaxGradNorm);
            if (!double.IsFinite(lossSum) || !double.IsFinite(gradNorm))
                throw new InvalidOperationException($"step {state.Step + 1}: the loss or gradient became non-finite (loss {lossSum}, gradient norm {gradNorm}); lower the learning rate");
            float lr = LearningRate.At(o.Schedule, o.Lr, state.Step, warmup, totalSteps, o.MinLrRatio);
            optimizer.Update(lr);
            model.AfterStep();
            state.Step++;
            lastLoss = unlearned?.Objective ?? lossSum / Math.Max(1, targetCount);
            long stepTokens = rowsPerStep * o.SeqLen;
            tokensThisRun += stepTokens;
            peak = Math.Max(peak, Environment.WorkingSet);
            double tokensPerSecond = stepTokens / stepClock.Elapsed.TotalSeconds;
            var remaining = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / Math.Max(1, state.Step - state.StartStep) * (totalSteps - state.Step));
            double epoch = (double)state.RowsConsumed / data.Train.RowsPerEpoch;
            if (state.Step % Math.Max(1, o.LogEvery) == 0 || state.Step == totalSteps)
            {
                var line = new JsonObject
                {
                    ["step"] = state.Step, ["loss"] = Math.Round(lastLoss, 6), ["lr"] = lr, ["grad_norm"] = Math.Round(gradNorm, 6),
                    ["tokens_per_s"] = Math.Round(tokensPerSecond, 1), ["epoch"] = Math.Round(epoch, 4), ["elapsed_s"] = Math.Round(clock.Elapsed.TotalSeconds, 3),
                };
                if (unlearned != null)
                {
                    line["forget_nll"] = Math.Round(unlearned.ForgetNll, 6);
                    if (unlearned.RetainNll is double retainNll) line["retain_nll"] = Math.Round(retainNll, 6);
                }
                if (distillation != null)
                {
                    // Both terms of the distillation loss, per target position, before their weights.
                    line["ce_loss"] = Math.Round(distillation.Sums.CrossEntropy / Math.Max(1, targetCount), 6);
                    line["kd_loss"] = Math.Round(distillation.Sums.Divergence / Math.Max(1, targetCount), 6);
                }
                if (model.Routing is { } routing)
                {
                    // The router losses of this step's micro-batches (before their coefficients), and the routing of
                    // every counted token since the last logged step.
                    line["router_aux_loss"] = Math.Round(balanceSum / o.GradAccum, 6);
                    line["router_z_loss"] = Math.Round(zSum / o.GradAccum, 6);
                    line["routing"] = RoutingJson(routing);
                    model.Routing = NewRouting();
                }
                metrics.WriteLine(line.ToJsonString());
                reporter.Progress(new TrainingProgress(state.Step, totalSteps, lastLoss, lr, gradNorm, tokensPerSecond, clock.Elapsed, remaining, epoch));
            }
            if (unlearning != null && o.EvalEvery > 0 && (state.Step % o.EvalEvery == 0 || state.Step == totalSteps))
            {
                var nll = unlearning.Evaluate();
                unlearningNll = nll;
                metrics.WriteLine(new JsonObject { ["step"] = state.Step, ["forget_nll"] = Math.Round(nll.Forget, 6), ["retain_nll"] = nll.Retain is double r ? Math.Round(r, 6) : null }.ToJsonString());
                reporter.Info($"step {state.Step}: forget NLL {nll.Forget:F4} per token" + (nll.Retain is double rr ? $", retain NLL {rr:F4}" : ""));
                if (o.ForgetTargetLoss > 0 && nll.Forget > o.ForgetTargetLoss)
                {
                    reporter.Info($"the forget set's NLL {nll.Forget:F4} passed forget_target_loss {o.ForgetTargetLoss:G4}: stopping");
                    reachedForgetTarget = earlyStopped = true;
                    break;
                }
            }
            if (data.Validation != null && o.EvalEvery > 0 && (state.Step % o.EvalEvery == 0 || state.Step == totalSteps))
            {
                double val = ValidationLoss(model, data.Validation, o);
                bool improved = state.BestValidation == null || val < state.BestValidation;
                if (improved) { state.BestValidation = val; state.EvalsWithoutImprovement = 0; } else state.EvalsWithoutImprovement++;
                metrics.WriteLine(new JsonObject { ["step"] = state.Step, ["val_loss"] = Math.Round(val, 6) }.ToJsonString());
                reporter.Validation(state.Step, val, improved);
                if (o.EarlyStoppingPatience > 0 && state.EvalsWithoutImprovement >= o.EarlyStoppingPatience)
                {
                    reporter.Info($"early stopping: no validation improvement in {o.EarlyStoppingPatience} evaluations");
                    earlyStopped = true;
                    break;
                }
            }
            if (o.SaveEvery > 0 && state.Step % o.SaveEvery == 0 && state.Step < totalSteps)
                reporter.Checkpoint(SaveCheckpoint(o, model, optimizer, state));
        }
        if (interrupted || (state.Step < totalSteps && !earlyStopped))
        {
            var path = SaveCheckpoint(o, model, optimizer, state);
            reporter.Checkpoint(path);
            written.Add(path);
        }
        else written.AddRange(SaveOutputs(o, checkpoint, model));
        var summary = new TrainingSummary(state.Step, totalSteps, tokensThisRun, clock.Elapsed.TotalSeconds, lastLoss, state.BestValidation, trainable,
            peak, interrupted, earlyStopped, o.Out, written);
        var summaryJson = SummaryJson(summary, o);
        if (unlearning != null) summaryJson["unlearning"] = unlearning.SummaryJson(unlearningNll?.Forget, unlearningNll?.Retain, reachedForgetTarget);
        AtomicFile.WriteAllText(Path.Combine(o.Out, "train_summary.json"), summaryJson.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return summary;
    }

    /// <summary>The optimizer steps of a run: max_steps, or the epochs over rows of batch_size × grad_accum rows.</summary>
    public static long TotalSteps(TrainOptions o, long rowsPerEpoch) =>
        o.MaxSteps > 0 ? o.MaxSteps : Math.Max(1, (long)Math.Ceiling(o.Epochs * rowsPerEpoch / ((long)o.BatchSize * o.GradAccum)));

    /// <param name="o">the run's options: its stage and method are recorded, so a report can tell pretraining from
    /// fine-tuning and plot their losses apart</param>
    public static JsonObject SummaryJson(TrainingSummary s, TrainOptions o)
    {
        var json = SummaryJson(s);
        json["stage"] = o.Stage.ToString().ToLowerInvariant();
        json["method"] = o.Method.ToString().ToLowerInvariant();
        return json;
    }

    public static JsonObject SummaryJson(TrainingSummary s) => new()
    {
        ["steps"] = s.Steps, ["total_steps"] = s.TotalSteps, ["tokens"] = s.Tokens, ["seconds"] = Math.Round(s.Seconds, 3),
        ["final_loss"] = double.IsFinite(s.FinalLoss) ? Math.Round(s.FinalLoss, 6) : null, ["best_val_loss"] = s.BestValidationLoss,
        ["trainable_parameters"] = s.TrainableParameters, ["peak_working_set_bytes"] = s.PeakWorkingSetBytes,
        ["interrupted"] = s.Interrupted, ["early_stopped"] = s.EarlyStopped, ["output"] = s.Output,
        ["written"] = new JsonArray(s.Written.Select(w => (JsonNode)w).ToArray()),
    };

    /// <summary>Per sparse layer: each expert's share of the routed choices, the mean routing entropy (nats) against
    /// ln E, and the load-balancing loss of these tokens (k when balanced).</summary>
    public static JsonArray RoutingJson(RoutingStatistics routing) => new(routing.Layers().Select(r => (JsonNode)new JsonObject
    {
        ["layer"] = r.Layer, ["tokens"] = r.Tokens,
        ["load"] = new JsonArray(r.Load.Select(v => (JsonNode)Math.Round(v, 4)).ToArray()),
        ["entropy"] = Math.Round(r.Entropy, 4), ["max_entropy"] = Math.Round(r.MaxEntropy, 4), ["balance_loss"] = Math.Round(r.BalanceLoss, 4),
        ["dropped"] = Math.Round(r.Dropped, 4),
    }).ToArray());

    static double ValidationLoss(TrainableLlama model, TrainingRows rows, TrainOptions o)
    {
        double nll = 0;
        long count = 0;
        var batch = new List<(int[] Tokens, int[] Targets, int Length)>();
        var routing = model.Routing;
        model.Routing = null; // validation rows stay out of the training telemetry
        var logitsLoss = model.LogitsLoss;
        model.LogitsLoss = null; // validation loss is the plain cross-entropy, comparable across stages
        void Flush()
        {
            if (batch.Count == 0) return;
            var tokens = batch.SelectMany(r => r.Tokens).ToArray();
            var targets = batch.SelectMany(r => r.Targets).ToArray();
            nll += model.Forward(tokens, targets, batch.Count, o.SeqLen, batch.Select(r => r.Length).ToArray());
            count += targets.Count(t => t >= 0);
            batch.Clear();
        }
        foreach (var row in rows.InOrder()) { batch.Add(row); if (batch.Count == o.BatchSize) Flush(); }
        Flush();
        model.Routing = routing;
        model.LogitsLoss = logitsLoss;
        return nll / Math.Max(1, count);
    }

    sealed class RunState
    {
        public long Step, StartStep, RowsConsumed;
        public double? BestValidation;
        public int EvalsWithoutImprovement;
    }

    // ---- outputs --------------------------------------------------------------------------------

    /// <summary>Which parts of a mixture of experts carry adapters, for the run's log.</summary>
    static string AdaptedParts(TrainableLlama model)
    {
        var words = model.Adapters.Keys.Select(t => TensorNames.TryParseGguf(t, out var p) ? AdapterSettings.MixtureParts.Contains(TrainingPlan.TargetWord(p.Role)) ? TrainingPlan.TargetWord(p.Role) : null : null)
            .OfType<string>().Distinct().OrderBy(w => Array.IndexOf(AdapterSettings.MixtureParts, w)).ToList();
        return words.Count == 0
            ? "adapters sit on attention (and dense layers' MLPs), the experts and routers stay frozen (add experts,router to the LoRA targets to adapt them)"
            : $"adapters also sit on the {string.Join(" and ", words)} ({model.Adapters.Count} adapted projections)";
    }

    static IEnumerable<string> SaveOutputs(TrainOptions o, Checkpoint checkpoint, TrainableLlama model)
    {
        if (model.Mixture is { } mixture)
        {
            mixture.Save(o.Out, Path.GetFullPath(o.Model));
            yield return Path.Combine(o.Out, LoraMixture.ConfigFile);
            yield return Path.Combine(o.Out, LoraMixture.RouterFile);
            foreach (var e in mixture.Experts) yield return Path.Combine(o.Out, "experts", e.Name);
        }
        else if (model.AdapterKind is { } kind)
        {
            var s = o.AdapterSettings;
            // A mixture of experts' module names are ambiguous as PEFT suffixes (a Qwen-MoE's gate_proj is every expert's
            // too): its adapters are saved with targets that match exactly the adapted modules.
            string architecture = model.Weights.Config.Architecture;
            var targets = model.Weights.Config.IsMixtureOfExperts
                ? PeftTargets.Exactly(model.Adapters.Keys.Select(t => PeftAdapter.ModuleName(t, architecture)))
                : PeftTargets.Of(s.ResolvedTargets);
            PeftAdapter.Save(o.Out, model.Adapters.Values, new PeftAdapterConfig(s.Rank, s.Alpha, s.Dropout,
                targets, s.RsLora, kind, Path.GetFullPath(o.Model)), architecture);
            yield return Path.Combine(o.Out, "adapter_config.json");
            yield return Path.Combine(o.Out, "adapter_model.safetensors");
        }
        else
        {
            Transforms.ModelConverter.Write(model.Weights, checkpoint, o.Out, TensorType.F32, new List<string>());
            yield return Path.Combine(o.Out, "model.safetensors");
            yield return Path.Combine(o.Out, "config.json");
        }
    }

    // ---- checkpoints ----------------------------------------------------------------------------

    static string CheckpointRoot(TrainOptions o) => Path.Combine(o.Out, "checkpoints");

    /// <summary>The options that must match for a resume to continue the same trajectory.</summary>
    static string Fingerprint(TrainOptions o) => string.Join("|", new object?[]
    {
        o.Method, o.Stage, o.BatchSize, o.GradAccum, o.SeqLen, o.LoraR, o.LoraAlpha, o.LoraDropout, string.Join(",", o.LoraTargets),
        o.UseRslora, o.Seed, o.Lr, o.Schedule, o.WarmupSteps, o.WarmupRatio, o.MaxSteps, o.Epochs, o.WeightDecay, o.MaxGradNorm,
        o.Packing, o.TrainOnPrompt, o.QloraType, o.FreezeTrainableLayers, string.Join(",", o.FreezeTrainableModules), o.RouterAuxLossCoef, o.RouterZLossCoef,
        string.Join(",", o.LoraExperts), o.LoraExpertsTopK, o.LoraExpertsTrain, o.ExpertChoiceCapacity,
    }.Select(v => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture))) + (o.AdapterKind is string kind ? "|" + kind : "")
        + (o.Stage == TrainingStage.Distill ? FormattableString.Invariant($"|{(o.Teacher != null ? Path.GetFullPath(o.Teacher) : "")}|{o.TeacherAdapter}|{o.KdRatio}|{o.KdTemperature}|{o.KdLoss}") : "")
        + (o.TeacherCache != null ? "|cache:" + Path.GetFullPath(o.TeacherCache) : "");

    static unsafe string SaveCheckpoint(TrainOptions o, TrainableLlama model, AdamW optimizer, RunState state)
    {
        var root = CheckpointRoot(o);
        Directory.CreateDirectory(root);
        string name = $"step-{state.Step:D8}";
        string final = Path.Combine(root, name);
        string temp = Path.Combine(root, $".{name}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        var writer = new SafetensorsWriter();
        writer.SetMetadata("format", CheckpointFormat);
        for (int i = 0; i < model.Parameters.Count; i++)
        {
            var p = model.Parameters[i];
            long n = p.Count;
            nint value = (nint)p.Value, m = (nint)optimizer.FirstMoment(i), v = (nint)optimizer.SecondMoment(i);
            writer.Add(new SafetensorsWriter.Tensor("param/" + p.Name, TensorType.F32, [n], s => s.Write(new ReadOnlySpan<byte>((void*)value, (int)(n * 4)))));
            writer.Add(new SafetensorsWriter.Tensor("adam_m/" + p.Name, TensorType.F32, [n], s => s.Write(new ReadOnlySpan<byte>((void*)m, (int)(n * 4)))));
            writer.Add(new SafetensorsWriter.Tensor("adam_v/" + p.Name, TensorType.F32, [n], s => s.Write(new ReadOnlySpan<byte>((void*)v, (int)(n * 4)))));
        }
        writer.Write(Path.Combine(temp, "state.safetensors"));
        var json = new JsonObject
        {
            ["format"] = CheckpointFormat, ["version"] = CheckpointVersion, ["step"] = state.Step, ["rows_consumed"] = state.RowsConsumed,
            ["optimizer_step"] = optimizer.Step, ["best_val_loss"] = state.BestValidation, ["evals_without_improvement"] = state.EvalsWithoutImprovement,
            ["fingerprint"] = Fingerprint(o), ["model"] = Path.GetFullPath(o.Model),
        };
        AtomicFile.WriteAllText(Path.Combine(temp, "trainer_state.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(final)) Directory.Delete(final, true);
        Directory.Move(temp, final);
        foreach (var old in Directory.GetDirectories(root, "step-*").Order(StringComparer.Ordinal).SkipLast(o.KeepCheckpoints))
            Directory.Delete(old, true);
        return final;
    }

    static string? ResolveResume(TrainOptions o)
    {
        if (o.Resume == null) return null;
        if (o.Resume != "auto")
        {
            if (!File.Exists(Path.Combine(o.Resume, "trainer_state.json")))
                throw new ModelFormatException(o.Resume, "not a training checkpoint (trainer_state.json is missing)");
            return o.Resume;
        }
        var root = CheckpointRoot(o);
        if (!Directory.Exists(root)) return null;
        return Directory.GetDirectories(root, "step-*").Order(StringComparer.Ordinal).LastOrDefault();
    }

    static unsafe void LoadCheckpoint(string dir, TrainOptions o, TrainableLlama model, AdamW optimizer, RunState state)
    {
        var statePath = Path.Combine(dir, "trainer_state.json");
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(statePath)) as JsonObject ?? throw new ModelFormatException(statePath, "not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException(statePath, $"not valid JSON: {e.Message}"); }
        if (json["format"]?.GetValue<string>() != CheckpointFormat) throw new ModelFormatException(statePath, "not a Hone training checkpoint", "format");
        int version = json["version"]?.GetValue<int>() ?? 0;
        if (version != CheckpointVersion) throw new ModelFormatException(statePath, $"checkpoint version {version} is not supported (expected {CheckpointVersion})", "version");
        if (json["fingerprint"]?.GetValue<string>() != Fingerprint(o))
            throw new ModelFormatException(statePath, "the checkpoint was made with different training options (method, batch, lr, seed, ...); resume with the same options or start a new output directory", "fingerprint");
        state.Step = state.StartStep = json["step"]!.GetValue<long>();
        state.RowsConsumed = json["rows_consumed"]!.GetValue<long>();
        state.BestValidation = json["best_val_loss"]?.GetValue<double>();
        state.EvalsWithoutImprovement = json["evals_without_improvement"]?.GetValue<int>() ?? 0;
        optimizer.Step = json["optimizer_step"]!.GetValue<long>();
        using var st = SafetensorsFile.Open(Path.Combine(dir, "state.safetensors"));
        for (int i = 0; i < model.Parameters.Count; i++)
        {
            var p = model.Parameters[i];
            Restore(st, "param/" + p.Name, p.Value, p.Count);
            Restore(st, "adam_m/" + p.Name, optimizer.FirstMoment(i), p.Count);
            Restore(st, "adam_v/" + p.Name, optimizer.SecondMoment(i), p.Count);
        }
        model.AfterStep();
    }

    static unsafe void Restore(SafetensorsFile st, string name, float* destination, long count)
    {
        if (!st.TryGetTensor(name, out var t)) throw new ModelFormatException(st.Path, "missing from the checkpoint", $"tensor '{name}'");
        if (t.ElementCount != count || t.Type != TensorType.F32)
            throw new ModelFormatException(st.Path, $"holds {t.ElementCount} {t.DType} values, expected {count} F32", $"tensor '{name}'");
        Buffer.MemoryCopy(st.TensorData(t), destination, count * 4, count * 4);
    }

    /// <summary>Keep the metrics of steps up to the resumed one, so the file reads as one uninterrupted run.</summary>
    static void TruncateMetrics(string outDir, long step)
    {
        var path = Path.Combine(outDir, "metrics.jsonl");
        if (!File.Exists(path)) return;
        var kept = File.ReadAllLines(path).Where(line =>
        {
            try { return JsonNode.Parse(line)?["step"]?.GetValue<long>() <= step; }
            catch (JsonException) { return false; }
        }).ToList();
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }
}
