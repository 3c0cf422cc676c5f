using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Evaluation.Report;
using Hone.Formats;
using Hone.Model;
using Hone.Synthetic;
using Hone.Tensors;
using Hone.Training;
using Hone.Transforms.Pruning;

namespace Hone.Workflows;

/// <summary>The distillation comparison's settings at full scale: each student trains all its weights for 200 steps of
/// 4 × 512 packed tokens, lr 1e-3 cosine to a tenth after 10 warm-up steps; the distilled one with α 0.5, T 1, forward
/// KL, the best of the 200-step runs with the LoRA specialist as teacher (docs/performance.md). With that teacher the
/// students end level; README's "Distillation" section shows the win needs a teacher ahead of the labels and more steps.</summary>
/// <param name="CalibrationDocuments">general training documents whose hidden states rank the layers to remove</param>
public sealed record DistillationRecipe(int Steps = 200, double KdRatio = 0.5, double KdTemperature = 1, DistillationDivergence KdLoss = DistillationDivergence.Forward,
    float Lr = 1e-3f, int BatchSize = 4, int SeqLen = 512, int WarmupSteps = 10, int CalibrationDocuments = 2000)
{
    public static readonly DistillationRecipe Default = new();

    public string KdLossName => KdLoss.ToString().ToLowerInvariant();
}

/// <summary>
/// The quickstart's optional stages after the usual ones (<see cref="QuickstartOptions.Distill"/>,
/// <see cref="QuickstartOptions.Unlearn"/>): distillation of the LoRA specialist into a student of half the base's layers,
/// against the same student trained on the hard labels; and unlearning of a quarter of the store policies
/// (<see cref="PolicyUnlearningExperiment"/>). Every stage is recorded in extended/stages.json and skipped when run again
/// with the same settings; the results join quickstart.json ("distillation", "unlearning") and the report.
/// </summary>
internal static class QuickstartExtension
{
    /// <summary>A finished quickstart in <paramref name="root"/>: what the extension reads.</summary>
    public static bool Finished(string root) =>
        new[] { "quickstart.json", "base/model.safetensors", "sft/adapter_model.safetensors", "sft/eval-after.json", "data/domain/train.filtered.jsonl",
                "data/domain/task-policies.jsonl", "data/general/replay.jsonl", "data/general/heldout.txt", "tasks/domain_perplexity.json",
                "tasks/domain_task_policies.json" }
            .All(f => File.Exists(Path.Combine(root, f)));

    public sealed record Output(List<ReportTable> Tables, JsonObject Json, StageLedger Ledger);

    public static Output Run(QuickstartOptions o, string root, Func<int, int, int> s, TrainOptions specialistTraining, ITrainingReporter reporter,
        Action<string> log, CancellationToken cancel)
    {
        string dir = Path.Combine(root, "extended");
        var ledger = new StageLedger(Path.Combine(dir, "stages.json"), log);
        var tables = new List<ReportTable>();
        var json = new JsonObject();
        string generalTask = GeneralDocumentsTask(Path.Combine(root, "data", "general", "heldout.txt"), Path.Combine(dir, "tasks"), s(400, 8));
        if (o.Distill)
        {
            var (table, section) = Distill(o, root, Path.Combine(dir, "distill"), generalTask, s, ledger, reporter, log, cancel);
            tables.Add(table);
            json["distillation"] = section;
        }
        if (o.Unlearn)
        {
            var (table, section) = Unlearn(o, root, Path.Combine(dir, "unlearn"), generalTask, s, specialistTraining, ledger, reporter, log, cancel);
            tables.Add(table);
            json["unlearning"] = section;
        }
        json["extension_seconds"] = Math.Round(ledger.RecordedSeconds, 1);
        return new Output(tables, json, ledger);
    }

    /// <summary>The first <paramref name="count"/> held-out general documents, one per record, as a perplexity task: each
    /// document scored on its own gives a standard error (the quickstart's general_perplexity reads the file as one text).</summary>
    static string GeneralDocumentsTask(string heldOutText, string dir, int count)
    {
        Directory.CreateDirectory(dir);
        var documents = SyntheticFiles.ReadTexts(heldOutText).Where(d => d.Trim().Length > 0).Take(count).ToList();
        if (documents.Count == 0) throw new DataFormatException(heldOutText, 0, "no held-out general documents");
        SyntheticFiles.WriteJsonLines(Path.Combine(dir, "general-heldout.jsonl"), documents.Select(d => new JsonObject { ["text"] = d }));
        string task = Path.Combine(dir, "general_perplexity_documents.json");
        AtomicFile.WriteAllText(task, new JsonObject
        {
            ["version"] = 1, ["kind"] = "perplexity", ["data"] = "general-heldout.jsonl",
            ["description"] = $"the first {documents.Count} held-out documents of the general corpus, each scored on its own",
        }.ToJsonString());
        return task;
    }

    // ---- distillation ----------------------------------------------------------------------------

    static (ReportTable, JsonObject) Distill(QuickstartOptions o, string root, string dir, string generalTask, Func<int, int, int> s, StageLedger ledger,
        ITrainingReporter reporter, Action<string> log, CancellationToken cancel)
    {
        var recipe = o.Distillation ?? DistillationRecipe.Default;
        string baseModel = Path.Combine(root, "base"), adapter = Path.Combine(root, "sft");
        string studentInit = Path.Combine(dir, "student-init"), calibration = Path.Combine(dir, "general.txt");
        int steps = s(recipe.Steps, 6), documents = s(recipe.CalibrationDocuments, 50);
        string baseKey = PolicyUnlearningExperiment.Hash(Path.Combine(baseModel, "model.safetensors"));
        int layers = ModelConfig.FromHuggingFaceJson(Path.Combine(baseModel, "config.json")).Layers;

        string pruneKey = $"{baseKey} {documents}";
        var pruned = ledger.Run("distillation: the student (the base with half its layers removed)", pruneKey, () =>
        {
            Directory.CreateDirectory(dir);
            var texts = SyntheticFiles.ReadTexts(Path.Combine(root, "data", "general", "train.jsonl")).Take(documents);
            AtomicFile.WriteAllText(calibration, string.Join("\n\n", texts));
            var report = LayerPruner.Prune(new LayerPruneOptions(baseModel, calibration, studentInit, Remove: layers / 2, Threads: o.Threads), log);
            return new JsonObject
            {
                ["parameters_before"] = report.ParametersBefore, ["parameters_after"] = report.ParametersAfter, ["layers_before"] = report.LayersBefore,
                ["layers_after"] = report.LayersAfter, ["removed"] = new JsonArray(report.Removed.Select(l => (JsonNode?)l).ToArray()),
                ["calibration_tokens"] = report.CalibrationTokens,
            };
        }, cancel)!;

        TrainOptions Student(string outDir) => new()
        {
            Model = studentInit, Data = Path.Combine(root, "data", "domain", "train.filtered.jsonl"), ReplayData = Path.Combine(root, "data", "general", "replay.jsonl"),
            Out = outDir, Method = TrainingMethod.Full, Stage = TrainingStage.Sft, MaxSteps = steps, BatchSize = recipe.BatchSize, SeqLen = recipe.SeqLen,
            Packing = true, Lr = recipe.Lr, WarmupSteps = s(recipe.WarmupSteps, 1), Schedule = LearningRateSchedule.Cosine, MinLrRatio = 0.1f,
            ValSplit = 0, EvalEvery = 0, SaveEvery = 0, Threads = o.Threads, Seed = o.Seed, LogEvery = s(25, 1),
        };
        string sftDir = Path.Combine(dir, "student-sft"), distillDir = Path.Combine(dir, "student-distill");
        string sftKey = $"{pruneKey} {steps} {recipe.Lr} {recipe.BatchSize} {recipe.SeqLen} {recipe.WarmupSteps} {o.Seed}";
        string distillKey = $"{sftKey} {recipe.KdRatio} {recipe.KdTemperature} {recipe.KdLossName} {PolicyUnlearningExperiment.Hash(Path.Combine(adapter, "adapter_model.safetensors"))}";
        ledger.Run("distillation: the student trained on the hard labels (sft)", sftKey, () =>
            new JsonObject { ["steps"] = Trainer.Run(Student(sftDir), TrainingDataLoader.Load, reporter, cancel).Steps }, cancel);
        ledger.Run("distillation: the student distilled from base + LoRA specialist", distillKey, () =>
            new JsonObject
            {
                ["steps"] = Trainer.Run(Student(distillDir) with
                {
                    Stage = TrainingStage.Distill, Teacher = baseModel, TeacherAdapter = adapter, KdRatio = recipe.KdRatio, KdTemperature = recipe.KdTemperature,
                    KdLoss = recipe.KdLoss,
                }, TrainingDataLoader.Load, reporter, cancel).Steps,
            }, cancel);

        string[] tasks = [Path.Combine(root, "tasks", "domain_perplexity.json"), Path.Combine(root, "tasks", "domain_task_policies.json"), generalTask];
        var evalOptions = new EvalOptions(Seed: o.Seed);
        string Evaluate(string name, string label, string model, string? modelAdapter, string key)
        {
            string results = Path.Combine(dir, $"eval-{name}.json");
            ledger.Run($"distillation: evaluate {label}", key, () =>
            {
                EvalRunner.Run(model, modelAdapter, tasks, evalOptions, results, o.Threads, Quickstart.DefaultBase.SeqLen,
                    (i, n, t) => log($"   [{i + 1}/{n}] {t.Name}"), r => log("     " + Quickstart.Summary(r)), cancel: cancel);
                return null;
            }, cancel);
            return results;
        }
        string alpha = Num(recipe.KdRatio), temperature = Num(recipe.KdTemperature);
        long teacherParameters = (long)pruned["parameters_before"]!, studentParameters = (long)pruned["parameters_after"]!;
        int studentLayers = (int)pruned["layers_after"]!;
        var rows = new List<(string Label, long Parameters, int Layers, string Training, string Results)>
        {
            ("teacher: base + LoRA specialist", teacherParameters, layers, "the quickstart's", Evaluate("teacher", "the teacher (base + LoRA specialist)", baseModel, adapter,
                $"{baseKey} {PolicyUnlearningExperiment.Hash(Path.Combine(adapter, "adapter_model.safetensors"))} {o.Seed}")),
            ($"student before training (base, {layers - studentLayers} layers removed)", studentParameters, studentLayers, "-",
                Evaluate("student-init", "the student before training", studentInit, null, pruneKey + $" {o.Seed}")),
            ("student, sft (hard labels)", studentParameters, studentLayers, $"{steps} steps", Evaluate("student-sft", "the student trained on the hard labels", sftDir, null, sftKey)),
            ($"student, distill α {alpha}, T {temperature}, {recipe.KdLossName}", studentParameters, studentLayers, $"{steps} steps",
                Evaluate("student-distill", "the distilled student", distillDir, null, distillKey)),
        };

        var metrics = new (string Task, string Metric, string Column)[]
        {
            ("domain_perplexity", "perplexity", "domain perplexity"), ("domain_task_policies", "pass@1", "policy pass@1"),
            ("domain_task_policies", "pass@4", "policy pass@4"), ("general_perplexity_documents", "perplexity", "general perplexity"),
        };
        var first = EvalResults.Read(rows[0].Results);
        int Items(string task) => first.FirstOrDefault(r => (string?)r["task"] == task)?["n"] is JsonValue v && v.TryGetValue(out int n) ? n : 0;
        var removed = pruned["removed"]!.AsArray().Select(l => (int)l!).ToList();
        string kd = recipe.KdLoss switch
        {
            DistillationDivergence.Forward => "KL(teacher ‖ student)",
            DistillationDivergence.Reverse => "KL(student ‖ teacher)",
            _ => "½ (KL(teacher ‖ student) + KL(student ‖ teacher))",
        };
        string note =
            $"The teacher is the quickstart's base with its LoRA specialist. The student is the base with {removed.Count} of its {layers} layers removed " +
            $"(block influence on {(long)pruned["calibration_tokens"]!:N0} tokens of the first {documents:N0} general training documents: layer{(removed.Count > 1 ? "s" : "")} " +
            $"{string.Join(" and ", removed)}). Both students train all their weights for {steps} steps of {recipe.BatchSize} × {recipe.SeqLen} packed tokens on the " +
            $"filtered domain data with the replay text, lr {Num(recipe.Lr)} cosine to a tenth, seed {o.Seed}: sft on the targets' cross-entropy; distill on " +
            $"(1 − α)·cross-entropy + α·T²·{kd}, α {alpha}, T {temperature}. Evaluation with seed {o.Seed}, 512-token windows, exact precision: domain perplexity " +
            $"over the answer tokens of {Items("domain_perplexity")} held-out conversations; policy questions: {Items("domain_task_policies")} held-out questions " +
            $"answered 4 times each (T 0.6, top-p 0.95, 48 tokens), the policy's fact verbatim; general perplexity over the first {Items("general_perplexity_documents")} " +
            "held-out general documents, each on its own. ± one standard error.";
        var models = new JsonArray();
        var tableRows = new List<ReportTableRow>();
        foreach (var row in rows)
        {
            var records = EvalResults.Read(row.Results);
            var values = metrics.Select(m => PolicyUnlearningExperiment.Value(records, m.Task, m.Metric)).ToList();
            tableRows.Add(new ReportTableRow(row.Label, [ReportCell.Of(row.Parameters.ToString("N0", CultureInfo.InvariantCulture)), ReportCell.Of(row.Layers.ToString(CultureInfo.InvariantCulture)),
                ReportCell.Of(row.Training), .. values.Select(v => new ReportCell(v.Value, v.StandardError))]));
            models.Add(new JsonObject
            {
                ["model"] = row.Label, ["parameters"] = row.Parameters, ["layers"] = row.Layers, ["training"] = row.Training,
                ["results"] = Path.GetRelativePath(root, row.Results),
                ["metrics"] = new JsonObject(metrics.Select((m, i) => KeyValuePair.Create($"{m.Task} {m.Metric}",
                    (JsonNode?)new JsonObject { ["value"] = values[i].Value, ["stderr"] = values[i].StandardError }))),
            });
        }
        var table = new ReportTable("Distillation: the specialist taught to a student half its depth", note,
            ["parameters", "layers", "training", .. metrics.Select(m => m.Column)], tableRows);
        return (table, new JsonObject
        {
            ["protocol"] = note, ["models"] = models,
            ["settings"] = new JsonObject
            {
                ["steps"] = steps, ["batch"] = recipe.BatchSize, ["seq_len"] = recipe.SeqLen, ["lr"] = recipe.Lr, ["kd_ratio"] = recipe.KdRatio,
                ["kd_temperature"] = recipe.KdTemperature, ["kd_loss"] = recipe.KdLossName, ["removed_layers"] = pruned["removed"]!.DeepClone(),
            },
        });
    }

    // ---- unlearning ------------------------------------------------------------------------------

    static (ReportTable, JsonObject) Unlearn(QuickstartOptions o, string root, string dir, string generalTask, Func<int, int, int> s, TrainOptions specialistTraining,
        StageLedger ledger, ITrainingReporter reporter, Action<string> log, CancellationToken cancel)
    {
        var full = o.Unlearning ?? UnlearningRecipe.Default;
        var recipe = full with { MaxSteps = s(full.MaxSteps, 6), EvalEvery = s(full.EvalEvery, 2), Conversations = s(full.Conversations, 8) };
        var result = PolicyUnlearningExperiment.Run(new PolicyUnlearningExperimentOptions(Path.Combine(root, "base"), Path.Combine(root, "sft"), specialistTraining,
            Path.Combine(root, "data", "domain", "train.filtered.jsonl"), Path.Combine(root, "data", "domain", "task-policies.jsonl"), generalTask, dir, recipe,
            o.Threads, o.Seed, Quickstart.DefaultBase.SeqLen), ledger, reporter, log, cancel);

        var metrics = new (string Task, string Metric, string Column)[]
        {
            ("policies_forget", "pass@1", "forget pass@1"), ("policies_retain", "pass@1", "retain pass@1"), ("forget_perplexity", "perplexity", "forget perplexity"),
            ("retain_heldout_perplexity", "perplexity", "retain perplexity"), ("general_perplexity_documents", "perplexity", "general perplexity"),
        };
        var models = new JsonArray();
        var rows = new List<ReportTableRow>();
        int forgetItems = 0, retainItems = 0, truthItems = 0, forgetScored = 0, generalScored = 0;
        foreach (var m in result.Models)
        {
            var records = EvalResults.Read(m.Results);
            var truth = EvalResults.Read(m.TruthRatio);
            int N(IReadOnlyList<JsonObject> r, string task) => r.FirstOrDefault(x => (string?)x["task"] == task)?["n"] is JsonValue v && v.TryGetValue(out int n) ? n : 0;
            forgetItems = N(records, "policies_forget"); retainItems = N(records, "policies_retain"); truthItems = N(truth, "truth_ratio_forget");
            forgetScored = N(records, "forget_perplexity"); generalScored = N(records, "general_perplexity_documents");
            var values = metrics.Select(x => PolicyUnlearningExperiment.Value(records, x.Task, x.Metric)).ToList();
            var ratio = PolicyUnlearningExperiment.Value(truth, "truth_ratio_forget", "truth_ratio");
            var quality = PolicyUnlearningExperiment.Value(truth, "truth_ratio_forget", "forget_quality");
            var distance = PolicyUnlearningExperiment.Value(truth, "truth_ratio_forget", "ks_statistic");
            string qualityText = quality.Value is double p ? $"{p.ToString("G2", CultureInfo.InvariantCulture)} (D {Num(distance.Value ?? double.NaN, "0.00")})" : "–";
            rows.Add(new ReportTableRow(m.Label, [ReportCell.Of(m.Steps?.ToString(CultureInfo.InvariantCulture) ?? "-"), .. values.Select(v => new ReportCell(v.Value, v.StandardError)),
                new ReportCell(ratio.Value, ratio.StandardError), ReportCell.Of(qualityText)]));
            var json = new JsonObject(metrics.Select((x, i) => KeyValuePair.Create($"{x.Task} {x.Metric}",
                (JsonNode?)new JsonObject { ["value"] = values[i].Value, ["stderr"] = values[i].StandardError })));
            json["truth_ratio_forget truth_ratio"] = new JsonObject { ["value"] = ratio.Value, ["stderr"] = ratio.StandardError };
            json["truth_ratio_forget forget_quality"] = new JsonObject { ["value"] = quality.Value, ["ks_statistic"] = distance.Value };
            models.Add(new JsonObject
            {
                ["model"] = m.Label, ["steps"] = m.Steps, ["results"] = Path.GetRelativePath(root, m.Results), ["truth_ratio_results"] = Path.GetRelativePath(root, m.TruthRatio),
                ["metrics"] = json,
            });
        }
        var b = result.Benchmark;
        string arms = string.Join("; ", recipe.ArmsOrDefault.Select(a => a.Label));
        string note =
            $"Forget set: the {b.ForgetConversations} training conversations of {string.Join(", ", b.ForgetTopics)} (every fourth store policy); retain set: the other " +
            $"policies' {b.RetainConversations}. The specialist is the base with the quickstart's LoRA adapter, merged. The never-saw model is the specialist's own " +
            $"recipe (LoRA SFT with replay, seed {o.Seed}) on the training data without the forget conversations. Unlearning ({arms}; NPO β {Num(recipe.NpoBeta)}) " +
            $"trains a LoRA r {recipe.LoraR} adapter on the merged specialist, batch {recipe.BatchSize} × {recipe.SeqLen} tokens, cosine to a tenth, with the retain " +
            $"term on the first {result.RetainTrained} retained conversations, for at most {recipe.MaxSteps} steps, stopping at the first check (every " +
            $"{recipe.EvalEvery} steps) where the forget set's mean per-token NLL passes {Num(result.ForgetTargetLoss, "0.00")}, the never-saw model's. Pass@1: 4 samples " +
            $"at T 0.6 (top-p 0.95, 48 tokens) of {forgetItems} forget and {retainItems} retain held-out questions, the policy's fact verbatim. Perplexity over " +
            $"answer tokens: forget, the first {forgetScored} forget conversations; retain, the last {result.RetainMeasured} retained conversations (never trained on by " +
            $"unlearning); general, the first {generalScored} held-out general documents, each on its own; 512-token windows, seed {o.Seed}. Truth ratio (TOFU) over " +
            $"{truthItems} forget items (the true fact against three wrong ones in the same wording; near 1: cannot tell them apart); forget quality: the " +
            "Kolmogorov–Smirnov p-value between a model's ratios and the never-saw model's (high: indistinguishable), with the distance D. ± one standard error.";
        var table = new ReportTable("Unlearning: a quarter of the store policies", note,
            ["steps", .. metrics.Select(m => m.Column), "truth ratio (forget)", "forget quality (KS p)"], rows);
        return (table, new JsonObject
        {
            ["protocol"] = note, ["models"] = models, ["forget_target_loss"] = result.ForgetTargetLoss,
            ["settings"] = new JsonObject
            {
                ["forget_topics"] = new JsonArray(b.ForgetTopics.Select(t => (JsonNode?)t).ToArray()), ["max_steps"] = recipe.MaxSteps, ["batch"] = recipe.BatchSize,
                ["seq_len"] = recipe.SeqLen, ["lora_r"] = recipe.LoraR, ["npo_beta"] = recipe.NpoBeta, ["eval_every"] = recipe.EvalEvery,
                ["arms"] = new JsonArray(recipe.ArmsOrDefault.Select(a => (JsonNode?)new JsonObject { ["method"] = a.Method, ["lr"] = a.Lr }).ToArray()),
            },
        });
    }

    static string Num(double v, string format = "0.####") => v.ToString(format, CultureInfo.InvariantCulture);
}
