using System.Globalization;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Synthetic;
using Hone.Training;
using Hone.Transforms;

namespace Hone.Workflows;

/// <summary>One unlearning run of the experiment: an objective (grad-ascent, grad-diff, npo) at a learning rate.</summary>
public sealed record UnlearningArm(string Method, float Lr)
{
    public string Name => $"{Method}-lr{Lr.ToString("0.#####", CultureInfo.InvariantCulture)}";
    public string Label => (Method == "npo" ? "NPO" : Method) + $", lr {Lr.ToString("0.#####", CultureInfo.InvariantCulture)}";
}

/// <summary>How the specialist is unlearned and measured (sizes at full scale; the defaults are the protocol measured in
/// README's "Unlearning": LoRA r 16 on the merged specialist, batch 4 × 128 tokens, at most 150 steps, cosine to a tenth,
/// the retain term on 400 retained conversations, stopping once the forget NLL passes the never-saw model's).</summary>
/// <param name="Arms">the unlearning runs; null: NPO at lr 1e-3 with the retain term (the best trade measured)</param>
/// <param name="Conversations">retained conversations the retain term trains on, and as many others (never trained on by
/// unlearning) that retain perplexity is measured on; also the most items of each evaluation task</param>
/// <param name="ForgetTopics">the policies to forget; null: every fourth (<see cref="PolicyUnlearning.DefaultForgetTopics"/>)</param>
public sealed record UnlearningRecipe(int MaxSteps = 150, int BatchSize = 4, int SeqLen = 128, int LoraR = 16, int LoraAlpha = 32, double NpoBeta = 0.1,
    int EvalEvery = 10, int Conversations = 400, IReadOnlyList<UnlearningArm>? Arms = null, IReadOnlyList<string>? ForgetTopics = null)
{
    public static readonly UnlearningRecipe Default = new();
    public IReadOnlyList<UnlearningArm> ArmsOrDefault => Arms ?? [new UnlearningArm("npo", 1e-3f)];
}

/// <param name="Base">the model the specialist was fine-tuned from</param>
/// <param name="SpecialistAdapter">the specialist's LoRA adapter on <paramref name="Base"/></param>
/// <param name="SpecialistTraining">how the specialist was trained: the never-saw model is trained the same way on the
/// training data without the forget conversations</param>
/// <param name="TrainData">the specialist's training conversations (the policy questions among them)</param>
/// <param name="TaskItems">the policy questions task's items</param>
/// <param name="GeneralTask">a perplexity task of held-out general text (what unlearning costs elsewhere)</param>
/// <param name="Recipe">sizes already scaled by the caller</param>
/// <param name="EvalContext">evaluation window in tokens (0: the model's context)</param>
public sealed record PolicyUnlearningExperimentOptions(string Base, string SpecialistAdapter, TrainOptions SpecialistTraining, string TrainData, string TaskItems,
    string GeneralTask, string Out, UnlearningRecipe Recipe, int Threads = 0, ulong Seed = 7, int EvalContext = 512);

/// <summary>A model of the experiment and where its evaluations are.</summary>
/// <param name="Steps">unlearning steps taken (null for the specialist and the never-saw model)</param>
/// <param name="Results">forget/retain perplexity and pass rate, general perplexity</param>
/// <param name="TruthRatio">the forget set's truth ratio with forget quality against the never-saw model</param>
public sealed record UnlearningModel(string Name, string Label, long? Steps, string Results, string TruthRatio);

public sealed record PolicyUnlearningExperimentResult(PolicyUnlearningFiles Benchmark, int RetainTrained, int RetainMeasured, double ForgetTargetLoss,
    IReadOnlyList<UnlearningModel> Models);

/// <summary>
/// Unlearning a quarter of the store policies from the quickstart's specialist, measured against a model that never saw
/// them: the benchmark (<see cref="PolicyUnlearning.Build"/>), the specialist merged, the never-saw model (the
/// specialist's own recipe on the data without the forget conversations), each unlearning arm on the merged specialist,
/// and every model's forget/retain pass rate and answer perplexity, general perplexity, and the forget set's truth ratio
/// with forget quality against the never-saw model. Each step is a stage of <see cref="StageLedger"/>: run again, the
/// finished ones are skipped.
/// </summary>
public static class PolicyUnlearningExperiment
{
    public static PolicyUnlearningExperimentResult Run(PolicyUnlearningExperimentOptions o, StageLedger ledger, ITrainingReporter reporter, Action<string> log,
        CancellationToken cancel = default)
    {
        var r = o.Recipe;
        string root = Path.GetFullPath(o.Out), bench = Path.Combine(root, "bench"), benchReference = Path.Combine(root, "bench-reference");
        string specialist = Path.Combine(root, "specialist"), neverSaw = Path.Combine(root, "never-saw");
        string retainTrain = Path.Combine(bench, "retain-train.jsonl"), retainHeld = Path.Combine(bench, "retain-heldout.jsonl");
        var topics = r.ForgetTopics ?? PolicyUnlearning.DefaultForgetTopics;
        string dataKey = $"{Hash(o.TrainData)} {Hash(o.TaskItems)} {string.Join(",", topics)} {r.Conversations}";

        PolicyUnlearningFiles files = null!;
        var benchResult = ledger.Run("unlearning: the benchmark (forget and retain policies, their questions, truth-ratio items)", dataKey, () =>
        {
            files = PolicyUnlearning.Build(new PolicyUnlearningOptions(o.TrainData, o.TaskItems, bench, topics));
            // The retain term trains on the first retained conversations; retain perplexity is measured on the last, which
            // unlearning never sees.
            var retained = File.ReadLines(Path.Combine(bench, "retain.jsonl")).Where(l => l.Trim().Length > 0).ToList();
            int trained = Math.Min(r.Conversations, retained.Count / 2), measured = Math.Min(r.Conversations, retained.Count - trained);
            AtomicFile.WriteAllText(retainTrain, string.Concat(retained.Take(trained).Select(l => l + "\n")));
            AtomicFile.WriteAllText(retainHeld, string.Concat(retained.Skip(retained.Count - measured).Select(l => l + "\n")));
            AtomicFile.WriteAllText(Path.Combine(bench, "retain_heldout_perplexity.json"), new JsonObject
            {
                ["version"] = 1, ["kind"] = "perplexity", ["data"] = "retain-heldout.jsonl", ["messages_field"] = "messages",
                ["description"] = $"answer perplexity of the last {measured} retained policy conversations (the retain term never trains on them)",
            }.ToJsonString());
            log($"   forget: {string.Join(", ", files.ForgetTopics)} ({files.ForgetConversations} conversations, {files.ForgetQuestions} questions); " +
                $"retain: {files.RetainConversations} conversations ({trained} for the retain term, {measured} measured), {files.RetainQuestions} questions");
            return new JsonObject
            {
                ["forget_topics"] = new JsonArray(files.ForgetTopics.Select(t => (JsonNode?)t).ToArray()), ["forget_conversations"] = files.ForgetConversations,
                ["retain_conversations"] = files.RetainConversations, ["other_conversations"] = files.OtherConversations, ["forget_questions"] = files.ForgetQuestions,
                ["retain_questions"] = files.RetainQuestions, ["retain_trained"] = trained, ["retain_measured"] = measured,
            };
        }, cancel)!;
        files ??= new PolicyUnlearningFiles(benchResult["forget_topics"]!.AsArray().Select(t => (string)t!).ToList(), (int)benchResult["forget_conversations"]!,
            (int)benchResult["retain_conversations"]!, (int)benchResult["other_conversations"]!, (int)benchResult["forget_questions"]!, (int)benchResult["retain_questions"]!, []);
        int retainTrained = (int)benchResult["retain_trained"]!, retainMeasured = (int)benchResult["retain_measured"]!;

        string specialistKey = $"{Hash(Path.Combine(o.SpecialistAdapter, "adapter_model.safetensors"))} {Hash(Path.Combine(o.Base, "model.safetensors"))}";
        ledger.Run("unlearning: the specialist merged (base + LoRA adapter)", specialistKey, () =>
        {
            var merged = AdapterMerger.Merge(new MergeOptions(o.Base, o.SpecialistAdapter, specialist, Threads: o.Threads), log);
            return new JsonObject { ["max_logit_difference"] = merged.MaxLogitDifference };
        }, cancel);

        string neverSawKey = $"{dataKey} {specialistKey} {o.Seed}";
        ledger.Run("unlearning: the never-saw model (the specialist's recipe without the forget policies)", neverSawKey, () =>
        {
            var summary = Trainer.Run(o.SpecialistTraining with { Data = Path.Combine(bench, "train-without-forget.jsonl"), Out = neverSaw }, TrainingDataLoader.Load, reporter, cancel);
            return new JsonObject { ["steps"] = summary.Steps };
        }, cancel);

        var models = new List<UnlearningModel>();
        // What every model is measured on; the never-saw model also writes the forget truth ratios that forget quality compares against.
        List<string> Tasks(bool reference) =>
        [
            Path.Combine(bench, "forget_perplexity.json"), Path.Combine(bench, "retain_heldout_perplexity.json"), Path.Combine(bench, "policies_forget.json"),
            Path.Combine(bench, "policies_retain.json"), o.GeneralTask, .. reference ? [Path.Combine(bench, "truth_ratio_forget.json")] : Array.Empty<string>(),
        ];
        var evalOptions = new EvalOptions(Limit: r.Conversations, Seed: o.Seed);
        UnlearningModel Evaluate(string name, string label, string model, string? adapter, long? steps, string key)
        {
            string results = Path.Combine(root, $"eval-{name}.json"), truth = Path.Combine(root, $"truth-ratio-{name}.json");
            ledger.Run($"unlearning: evaluate {label}", key, () =>
            {
                EvalRunner.Run(model, adapter, Tasks(name == "never-saw"), evalOptions, results, o.Threads, o.EvalContext,
                    (i, n, t) => log($"   [{i + 1}/{n}] {t.Name}"), x => log("     " + Quickstart.Summary(x)), cancel: cancel);
                if (name == "never-saw")
                    PolicyUnlearning.Build(new PolicyUnlearningOptions(o.TrainData, o.TaskItems, benchReference, topics, Reference: results));
                EvalRunner.Run(model, adapter, [Path.Combine(benchReference, "truth_ratio_forget.json")], evalOptions, truth, o.Threads, o.EvalContext,
                    onResult: x => log("     " + Quickstart.Summary(x)), cancel: cancel);
                return null;
            }, cancel);
            return new UnlearningModel(name, label, steps, results, truth);
        }
        var neverSawModel = Evaluate("never-saw", "the never-saw model", o.Base, neverSaw, null, neverSawKey);
        models.Add(Evaluate("specialist", "the specialist", specialist, null, null, $"{specialistKey} {neverSawKey}"));
        models.Add(neverSawModel);
        // Stop once the forget answers are as unlikely as the never-saw model finds them: its mean per-token NLL on the same conversations.
        double target = Math.Log(Value(EvalResults.Read(neverSawModel.Results), "forget_perplexity", "perplexity").Value ?? double.NaN);
        if (!double.IsFinite(target) || target <= 0) throw new InvalidOperationException($"{neverSawModel.Results}: no finite forget perplexity above 1 to stop unlearning at");
        foreach (var arm in r.ArmsOrDefault)
        {
            string dir = Path.Combine(root, arm.Name);
            string armKey = $"{neverSawKey} {arm.Name} {r.MaxSteps} {r.BatchSize} {r.SeqLen} {r.LoraR} {r.LoraAlpha} {r.NpoBeta} {r.EvalEvery}";
            var trained = ledger.Run($"unlearning: {arm.Label} on the specialist", armKey, () =>
            {
                var summary = Trainer.Run(new TrainOptions
                {
                    Model = specialist, Stage = TrainingStage.Unlearn, UnlearnMethod = arm.Method, NpoBeta = r.NpoBeta,
                    Forget = Path.Combine(bench, "forget.jsonl"), Retain = arm.Method == "grad-ascent" ? null : retainTrain, Out = dir,
                    Method = TrainingMethod.Lora, LoraR = r.LoraR, LoraAlpha = r.LoraAlpha, LoraTargets = ["all-linear"], SeqLen = r.SeqLen, BatchSize = r.BatchSize,
                    MaxSteps = r.MaxSteps, Lr = arm.Lr, WarmupSteps = 0, Schedule = LearningRateSchedule.Cosine, MinLrRatio = 0.1f, EvalEvery = r.EvalEvery,
                    SaveEvery = 0, LogEvery = r.EvalEvery, ForgetTargetLoss = target, Threads = o.Threads, Seed = o.Seed,
                }, TrainingDataLoader.Load, reporter, cancel);
                return new JsonObject { ["steps"] = summary.Steps };
            }, cancel)!;
            models.Add(Evaluate(arm.Name, $"unlearned: {arm.Label}", specialist, dir, (long)trained["steps"]!, armKey));
        }
        return new PolicyUnlearningExperimentResult(files, retainTrained, retainMeasured, target, models);
    }

    /// <summary>A metric of a task in results records: value and standard error (null when absent).</summary>
    public static (double? Value, double? StandardError) Value(IReadOnlyList<JsonObject> records, string task, string metric)
    {
        var m = records.FirstOrDefault(x => (string?)x["task"] == task)?["metrics"]?[metric];
        return (m?["value"] is JsonValue v && v.TryGetValue(out double d) ? d : null, m?["stderr"] is JsonValue e && e.TryGetValue(out double se) ? se : null);
    }

    /// <summary>The start of a file's SHA-256: a changed input makes the stages that read it run again (a copied run does not).</summary>
    internal static string Hash(string path)
    {
        if (!File.Exists(path)) return "absent";
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream))[..16];
    }
}
