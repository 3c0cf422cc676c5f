using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Synthetic;
using Hone.Evaluation;
using Hone.Evaluation.Report;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;
using Hone.Training;
using Hone.Transforms;

namespace Hone.Workflows;

/// <param name="Model">a base model to specialize instead of pretraining one (directory, .gguf, or a folder holding a .gguf)</param>
/// <param name="Data">domain data instead of the generated e-commerce set: SFT JSONL (messages / Alpaca / ShareGPT), or a
/// CSV with instruction/response columns (the Bitext customer-support layout), or a folder holding one</param>
/// <param name="Scale">multiplies every size and step count (1 = the documented defaults; tests use small values)</param>
/// <param name="General">general text against forgetting (.txt documents separated by blank lines, or JSONL {"text"}):
/// part of it is replayed among the fine-tuning data, the rest held out for general perplexity. Default: the generated
/// general-English corpus (stories, facts, dialogues, reports), which also pretrains the generated base model.</param>
/// <param name="BaseCache">where generated base models are kept and reused (<see cref="BaseModelCache"/>); null builds the
/// base every run</param>
/// <param name="Distill">after the usual stages, distil the LoRA specialist into the base with half its layers, against the
/// same student trained on the hard labels (<see cref="QuickstartExtension"/>; generated default only)</param>
/// <param name="Unlearn">after the usual stages, unlearn a quarter of the store policies from the specialist and measure it
/// against a model that never saw them (<see cref="PolicyUnlearningExperiment"/>; generated default only)</param>
/// <param name="Distillation">the distillation's settings; null: <see cref="DistillationRecipe.Default"/></param>
/// <param name="Unlearning">the unlearning's settings; null: <see cref="UnlearningRecipe.Default"/></param>
public sealed record QuickstartOptions(string Out = "runs/quickstart", string? Model = null, string? Data = null, int Threads = 0,
    ulong Seed = 7, double Scale = 1.0, string? General = null, string? BaseCache = null, bool Distill = false, bool Unlearn = false,
    DistillationRecipe? Distillation = null, UnlearningRecipe? Unlearning = null);

/// <summary>The headline numbers of a quickstart run, before and after fine-tuning.</summary>
public sealed record QuickstartResult(string Report, string Markdown, IReadOnlyDictionary<string, (double? Before, double? After)> Metrics,
    TimeSpan Elapsed, IReadOnlyList<(string Stage, TimeSpan Time)> Stages);

/// <summary>
/// The whole specialization loop in one call: data (generated, or given), a base model (pretrained here from scratch on a
/// generated general corpus, or given), data scoring and filtering by the base model's perplexity, evaluation before,
/// LoRA SFT, evaluation after (domain perplexity, general perplexity for forgetting, a domain task with pass@k and
/// pass^k), and the HTML report.
/// </summary>
public static class Quickstart
{
    /// <summary>Pretraining and fine-tuning sizes at scale 1. Pretraining windows are 512 tokens; the context is 2,048 so
    /// that the agent's conversations (tool results included) fit, the agent fine-tuned on windows of 1,024.</summary>
    public static readonly ModelConfig BaseShape = new()
    {
        Architecture = "llama", VocabSize = 2048, HiddenSize = 128, IntermediateSize = 384, Layers = 4, Heads = 4, KvHeads = 2,
        HeadDim = 32, RotaryDims = 32, RopeTheta = 10000, RmsNormEps = 1e-5f, MaxPositions = 2048, TiedEmbeddings = true,
    };

    /// <summary>Steps of the agent's fine-tuning (2 × 1,024 tokens each).</summary>
    public const int AgentSteps = 1500;

    /// <summary>How the generated base model is built: its shape, pretraining steps of BatchSize × SeqLen tokens, peak
    /// learning rate, the size of the copying corpus in its pretraining mix, and the tokenizer's digit split.</summary>
    /// <param name="CopyFirstSteps">steps on <see cref="CopyCorpus"/> documents alone (<paramref name="CopyFirstBytes"/> of
    /// them) from random weights, before pretraining; 0 = none</param>
    /// <param name="Practice">phases of copying practice after pretraining, in order</param>
    public sealed record BaseRecipe(ModelConfig Shape, int Steps, int SeqLen, float Lr, long CopyCorpusBytes, bool SplitDigits, int BatchSize = 4,
        int CopyFirstSteps = 0, long CopyFirstBytes = 0, IReadOnlyList<PracticePhase>? Practice = null);

    /// <summary>The base model's whole training curve in one file: each phase's records, steps counted on from the
    /// previous phase's last, with the phase's folder name.</summary>
    static void JoinMetrics(IReadOnlyList<string> phases, string outPath)
    {
        var lines = new StringBuilder();
        long offset = 0;
        foreach (var dir in phases)
        {
            long last = 0;
            foreach (var line in File.ReadLines(Path.Combine(dir, "metrics.jsonl")))
            {
                if (JsonNode.Parse(line) is not JsonObject record) continue;
                if (record["step"] is JsonValue v && v.TryGetValue(out long step))
                {
                    record["step"] = step + offset;
                    last = Math.Max(last, step);
                }
                record["phase"] = Path.GetFileName(dir) == "base" ? "practice-last" : Path.GetFileName(dir);
                lines.Append(record.ToJsonString()).Append('\n');
            }
            offset += last;
        }
        AtomicFile.WriteAllText(outPath, lines.ToString());
    }

    /// <summary>One phase of copying practice: <paramref name="Steps"/> of BatchSize × SeqLen tokens at a constant learning
    /// rate on fresh documents of each kind (counts at scale 1; <see cref="PracticeKind.Pretraining"/> and
    /// <see cref="PracticeKind.CopyCorpus"/> count documents of their files).</summary>
    public sealed record PracticePhase(string Name, int Steps, IReadOnlyList<(PracticeKind Kind, int Documents)> Mix, int BatchSize = 16, int SeqLen = 128, float Lr = 2e-3f);

    /// <summary>
    /// The embedded default's base: 2,000 steps on the copying corpus, the 900 pretraining steps, then seven phases of
    /// copying practice (18,100 steps of 16 × 128 tokens): letter runs of varied length until copying by content forms
    /// (the plateau breaks after 1,000–2,500 steps, and only on a base that already reads), then ever wider mixes that
    /// carry it to digits, arbitrary vocabulary pieces, names, ids and e-mails, general text, and the tool-call markup.
    /// About 29 minutes on 2 cores, once: the base is cached. Measured in docs/performance.md (2026-12-05 late night and
    /// 2026-12-06 morning).
    /// </summary>
    public static readonly BaseRecipe DefaultBase = new(BaseShape, 900, 512, 3e-3f, 0, false, CopyFirstSteps: 2000, CopyFirstBytes: 12_000_000, Practice:
    [
        new("letter runs", 4000, [(PracticeKind.Letters, 120_000), (PracticeKind.Pretraining, 16_000)]),
        new("letters, digits and forms", 2000,
            [(PracticeKind.Letters, 40_000), (PracticeKind.Digits, 25_000), (PracticeKind.CopyCorpus, 25_000), (PracticeKind.Pretraining, 16_000)]),
        new("vocabulary pieces said twice", 4000,
            [(PracticeKind.VocabularyPairs, 50_000), (PracticeKind.Letters, 20_000), (PracticeKind.CopyCorpus, 15_000), (PracticeKind.Pretraining, 16_000)]),
        new("more vocabulary pieces", 3000,
            [(PracticeKind.VocabularyPairs, 60_000), (PracticeKind.Letters, 15_000), (PracticeKind.CopyCorpus, 6_000), (PracticeKind.Pretraining, 24_000)]),
        new("names, ids, e-mails and passages", 2500,
            [(PracticeKind.ValueRuns, 25_000), (PracticeKind.RepeatedPassages, 14_000), (PracticeKind.VocabularyRuns, 14_000), (PracticeKind.Letters, 5_000),
             (PracticeKind.CopyCorpus, 4_000), (PracticeKind.Pretraining, 18_000)]),
        new("tool-call markup", 600, [(PracticeKind.CallMarkup, 12_000), (PracticeKind.ValueRuns, 10_000), (PracticeKind.Pretraining, 16_000)]),
        new("all of it", 2000,
            [(PracticeKind.CallMarkup, 12_000), (PracticeKind.ValueRuns, 15_000), (PracticeKind.RepeatedPassages, 9_000), (PracticeKind.VocabularyRuns, 9_000),
             (PracticeKind.Letters, 3_000), (PracticeKind.CopyCorpus, 2_600), (PracticeKind.Pretraining, 11_000)]),
    ]);

    public static QuickstartResult Run(QuickstartOptions o, Action<string> log, CancellationToken cancel = default)
    {
        var total = Stopwatch.StartNew();
        var stages = new List<(string, TimeSpan)>();
        string root = Path.GetFullPath(o.Out);
        Directory.CreateDirectory(root);
        int S(int full, int minimum) => Math.Max(minimum, (int)Math.Round(full * o.Scale));
        T Stage<T>(string name, Func<T> body)
        {
            cancel.ThrowIfCancellationRequested();
            log($"== {name}");
            var clock = Stopwatch.StartNew();
            var result = body();
            stages.Add((name, clock.Elapsed));
            log($"   ({clock.Elapsed.TotalSeconds:F1} s)");
            return result;
        }
        var trainReporter = new LogReporter(log);
        bool extend = o.Distill || o.Unlearn;
        if (extend && (o.Model != null || o.Data != null))
            throw new ArgumentException("distillation and unlearning (--distill, --unlearn) run on the generated default: leave out --model and --data");
        // The extension reads a finished quickstart: one already in the folder is used as it is (its stages are not run again).
        if (extend && QuickstartExtension.Finished(root))
        {
            log($"== the quickstart's stages: finished earlier in {root} (quickstart.json), reused");
            return Extend(o, root, S, trainReporter, total, stages, log, cancel);
        }

        // ---- data -------------------------------------------------------------------------------
        string dataDir = Path.Combine(root, "data");
        if (o.General != null && o.Model == null)
            throw new ArgumentException("general text replaces the generated corpus only for a given model (--model): the generated base model is pretrained on the generated corpus");
        string generalSource = o.General == null
            ? "the generated general-English corpus (stories, facts, dialogues, reports; no e-commerce words)"
            : $"documents of {Path.GetFullPath(o.General)}";
        var general = Stage("general corpus", () =>
        {
            var docs = o.General == null ? GeneralCorpus.Generate(o.Seed, (long)(4_000_000 * o.Scale)) : GivenGeneral(o.General);
            var files = SyntheticFiles.WriteGeneral(docs, Path.Combine(dataDir, "general"));
            log($"   {generalSource}: {files.TrainDocuments:N0} documents ({files.TrainBytes / 1e6:F1} MB) " +
                $"{(o.Model == null ? "for pretraining" : "to replay from")}, {files.HeldOutDocuments:N0} held out");
            return files;
        });
        var domain = Stage(o.Data == null ? "e-commerce customer-service data" : "domain data", () =>
            o.Data == null ? GeneratedDomain(o, S, Path.Combine(dataDir, "domain"), log) : ImportedDomain(o, DataPath.Resolve(o.Data, DataPath.RecordExtensions), Path.Combine(dataDir, "domain"), log));

        // The agent benchmark runs on the generated default: a store, its tasks, and the oracle's conversations to learn from.
        bool agentBenchmark = o.Model == null && o.Data == null;
        var agent = agentBenchmark
            ? Stage("agent benchmark: store, tasks and the oracle's conversations", () => QuickstartAgent.Prepare(Path.Combine(dataDir, "agent"), o.Seed, o.Threads <= 0 ? Environment.ProcessorCount : o.Threads, S, log, cancel))
            : null;

        // ---- base model -------------------------------------------------------------------------
        string baseModel;
        string baseRun = Path.Combine(root, "base");
        if (o.Model == null)
        {
            string init = Path.Combine(root, "base-init");
            var recipe = DefaultBase;
            int steps = S(recipe.Steps, 8);
            // General text, shop web text and (with a copying corpus in the recipe) text that rewards copying from context.
            string pretrainData = general.Train;
            if (domain.Records != null || recipe.CopyCorpusBytes > 0)
            {
                pretrainData = Path.Combine(dataDir, "pretrain.jsonl");
                string copy = "";
                if (recipe.CopyCorpusBytes > 0)
                {
                    string copyPath = Path.Combine(dataDir, "copy.jsonl");
                    var copyDocuments = CopyCorpus.Generate(o.Seed, (long)(recipe.CopyCorpusBytes * o.Scale));
                    SyntheticFiles.WriteJsonLines(copyPath, copyDocuments.Select(d => new JsonObject { ["text"] = d }));
                    copy = File.ReadAllText(copyPath);
                    log($"   copying corpus: {copyDocuments.Count:N0} documents ({copy.Length / 1e6:F1} MB) that state ids, e-mails, codes and amounts and repeat them later");
                }
                AtomicFile.WriteAllText(pretrainData, File.ReadAllText(general.Train) + (domain.Records is string records ? File.ReadAllText(records) : "") + copy);
            }
            string recipeText = new JsonObject
            {
                ["shape"] = JsonSerializer.SerializeToNode(recipe.Shape), ["steps"] = steps, ["batch"] = recipe.BatchSize, ["seq_len"] = recipe.SeqLen,
                ["lr"] = recipe.Lr, ["warmup"] = S(20, 1), ["vocab"] = S(2048, 512), ["split_digits"] = recipe.SplitDigits, ["seed"] = o.Seed,
                ["scale"] = o.Scale, ["threads"] = o.Threads, ["copy_first_steps"] = recipe.CopyFirstSteps, ["copy_first_bytes"] = recipe.CopyFirstBytes,
                ["practice"] = new JsonArray((recipe.Practice ?? []).Select(p => (JsonNode?)new JsonObject
                {
                    ["name"] = p.Name, ["steps"] = p.Steps, ["batch"] = p.BatchSize, ["seq_len"] = p.SeqLen, ["lr"] = p.Lr,
                    ["mix"] = new JsonObject(p.Mix.Select(m => KeyValuePair.Create(m.Kind.ToString(), (JsonNode?)m.Documents))),
                }).ToArray()),
            }.ToJsonString();
            string? cacheKey = o.BaseCache == null ? null : BaseModelCache.Key(recipeText, [general.Train, domain.Train, pretrainData]);
            var cacheFolders = new Dictionary<string, string> { ["base"] = baseRun, ["base-init"] = init };
            bool cached = cacheKey != null && BaseModelCache.TryRestore(o.BaseCache!, cacheKey, cacheFolders, log);
            if (cached)
                Stage("base model from the cache", () =>
                {
                    log($"   {Path.Combine(o.BaseCache!, "quickstart-base", cacheKey!)}: built earlier from the same recipe, data and code (hashes checked)");
                    return 0;
                });
            else
            {
                Stage("tokenizer", () =>
                {
                    // Trained on the general corpus and the domain's training text, as a tokenizer trained on broad data would be.
                    var texts = SyntheticFiles.ReadTexts(general.Train).Concat(SyntheticFiles.ReadTexts(domain.Train));
                    var vocabulary = BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: S(2048, 512),
                        Numbers: recipe.SplitDigits ? NumberSplit.Digits : NumberSplit.Runs), init);
                    var tokenizer = Tokenizer.FromHuggingFaceDirectory(init);
                    log($"   byte-level BPE{(recipe.SplitDigits ? ", one token per digit" : "")}, {tokenizer.VocabSize:N0} tokens, chat template with <|user|>/<|assistant|> turns");
                    return vocabulary;
                });
                {
                    var tokenizer = Tokenizer.FromHuggingFaceDirectory(init);
                    var shape = recipe.Shape with { VocabSize = tokenizer.VocabSize, BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId };
                    using var weights = LlamaWeights.CreateRandom(shape, TensorType.F32, (int)o.Seed, std: 0.02f);
                    ModelConverter.Write(weights, null, init, TensorType.F32, new List<string>());
                }
                string stagesDir = Path.Combine(root, "base-stages");
                string from = init;
                // The copying corpus and the pretraining corpus train alike: full weights, cosine to a tenth of the peak.
                TrainOptions Pretraining(string model, string data, string outDir, int maxSteps, int logEvery) => new()
                {
                    Model = model, Data = data, Out = outDir, Method = TrainingMethod.Full, Stage = TrainingStage.Cpt,
                    MaxSteps = maxSteps, BatchSize = recipe.BatchSize, SeqLen = recipe.SeqLen, Lr = recipe.Lr, WarmupSteps = S(20, 1),
                    Schedule = LearningRateSchedule.Cosine, MinLrRatio = 0.1f, WeightDecay = 0.01f, ValSplit = 0.01, EvalEvery = Math.Max(4, maxSteps / 4),
                    SaveEvery = 0, Threads = o.Threads, Seed = o.Seed, LogEvery = logEvery,
                };
                var trained = new List<string>(); // every training's output, in order, for the joined curve
                if (recipe.CopyFirstSteps > 0)
                    from = Stage("copying corpus first: forms, tables, JSON tool results and e-mails whose ids recur", () =>
                    {
                        string copyFirst = Path.Combine(dataDir, "copy-first.jsonl");
                        var documents = CopyCorpus.Generate(o.Seed ^ 0xC0F1, (long)(recipe.CopyFirstBytes * o.Scale));
                        SyntheticFiles.WriteJsonLines(copyFirst, documents.Select(d => new JsonObject { ["text"] = d }));
                        log($"   {documents.Count:N0} documents that state ids, e-mails, codes and amounts and repeat them later");
                        string outDir = Path.Combine(stagesDir, "copy-first");
                        Trainer.Run(Pretraining(init, copyFirst, outDir, S(recipe.CopyFirstSteps, 4), S(100, 1)), TrainingDataLoader.Load, trainReporter, cancel);
                        return outDir;
                    });
                if (from != init) trained.Add(from);
                var practice = recipe.Practice ?? [];
                string pretrained = practice.Count > 0 ? Path.Combine(stagesDir, "pretrained") : baseRun;
                Stage("pretraining on the general corpus and shop web text", () =>
                    Trainer.Run(Pretraining(from, pretrainData, pretrained, steps, S(25, 1)), TrainingDataLoader.Load, trainReporter, cancel));
                trained.Add(pretrained);
                from = pretrained;
                for (int p = 0; p < practice.Count; p++)
                {
                    var phase = practice[p];
                    string outDir = p == practice.Count - 1 ? baseRun : Path.Combine(stagesDir, $"practice-{p + 1}");
                    string phaseFrom = from;
                    Stage($"copying practice {p + 1}/{practice.Count}: {phase.Name}", () =>
                        RunPractice(phase, p, phaseFrom, outDir, pretrainData, general.Train, Path.Combine(dataDir, $"practice-{p + 1}.jsonl"), o, S, trainReporter, log, cancel));
                    from = outDir;
                    trained.Add(outDir);
                }
                // A training stage stopped by Ctrl-C or SIGTERM returns with its checkpoint; such a base is never cached.
                cancel.ThrowIfCancellationRequested();
                if (trained.Count > 1) JoinMetrics(trained, Path.Combine(baseRun, "metrics.jsonl"));
                if (Directory.Exists(stagesDir)) Directory.Delete(stagesDir, recursive: true);
                if (cacheKey != null) BaseModelCache.Store(o.BaseCache!, cacheKey, recipeText, cacheFolders, log);
            }
            baseModel = baseRun;
        }
        else
        {
            baseModel = Checkpoint.ResolvePath(o.Model);
            Directory.CreateDirectory(baseRun);
        }

        // ---- scoring and filtering --------------------------------------------------------------
        string sftRun = Path.Combine(root, "sft");
        Directory.CreateDirectory(sftRun);
        var filtered = Stage("score and filter the domain data by base-model perplexity", () =>
        {
            var scored = Path.Combine(dataDir, "domain", "train.scored.jsonl");
            var score = DataScore.Run(new DataScoreOptions(domain.Train, baseModel, scored, Threads: o.Threads), cancel: cancel);
            var kept = Path.Combine(dataDir, "domain", "train.filtered.jsonl");
            var filter = DataFilter.Run(new DataFilterOptions(scored, kept, KeepQuantiles: (0.02, 0.98), Threads: o.Threads), cancel: cancel);
            var values = File.ReadLines(scored).Select(l => JsonNode.Parse(l)?["ppl"]).OfType<JsonValue>()
                .Select(v => v.TryGetValue(out double d) ? d : double.NaN).Where(double.IsFinite).ToList();
            var band = filter.QuantileBounds;
            File.WriteAllText(Path.Combine(sftRun, "corpus_ppl.json"), RunReport.CorpusJson(new CorpusScores("domain training data", values,
                band?.Low, band?.High, score.Protocol)).ToJsonString());
            log($"   perplexity under the base model: whole set {score.Perplexity:F1}; kept {filter.Kept:N0} of {filter.Records:N0} (2nd–98th percentile)");
            return kept;
        });

        // ---- evaluation before ------------------------------------------------------------------
        var tasks = WriteTasks(Path.Combine(root, "tasks"), general.HeldOut, generalSource, domain, S);
        var evalOptions = new EvalOptions(Seed: o.Seed);
        Stage("evaluate the base model", () =>
            EvalRunner.Run(baseModel, null, tasks, evalOptions, Path.Combine(sftRun, "eval-before.json"), o.Threads, EvalContext(o),
                (i, n, t) => log($"   [{i + 1}/{n}] {t.Name}"), r => log("     " + Summary(r)), cancel: cancel));
        if (agent != null)
            Stage("agent benchmark: the base model as the agent", () =>
            {
                QuickstartAgent.Append(Path.Combine(sftRun, "eval-before.json"), QuickstartAgent.Evaluate(baseModel, "base model", agent, o.Seed, o.Threads, S,
                    Path.Combine(sftRun, "agent-before.trajectories.jsonl"), log, cancel));
                return 0;
            });

        // ---- fine-tuning ------------------------------------------------------------------------
        Stage("LoRA supervised fine-tuning on the filtered domain data", () =>
        {
            // Replay: general text mixed into fine-tuning holds forgetting down (generated base: general perplexity ×1.4
            // instead of ×30 at this size) for little domain cost. For the generated base it is a slice of the model's
            // own pretraining text; for a given model, whose pretraining data is not at hand, the general text above.
            string replay = Path.Combine(dataDir, "general", "replay.jsonl");
            AtomicFile.WriteAllText(replay, string.Concat(File.ReadLines(general.Train).Take(S(400, 8)).Select(l => l + "\n")));
            log($"   replaying {Math.Min(S(400, 8), general.TrainDocuments)} documents of {generalSource} against forgetting");
            return Trainer.Run(SpecialistTraining(o, S, baseModel, filtered, domain.HeldOut, replay, sftRun, domain.SftSteps, domain.LearningRate),
                TrainingDataLoader.Load, trainReporter, cancel);
        });

        // ---- evaluation after and report --------------------------------------------------------
        Stage("evaluate base + adapter", () =>
            EvalRunner.Run(baseModel, sftRun, tasks, evalOptions, Path.Combine(sftRun, "eval-after.json"), o.Threads, EvalContext(o),
                (i, n, t) => log($"   [{i + 1}/{n}] {t.Name}"), r => log("     " + Summary(r)), cancel: cancel));
        string agentRun = Path.Combine(root, "agent-sft");
        if (agent != null)
        {
            // The agent is its own model: a copy of the base fine-tuned in all its weights on the oracle's conversations,
            // every token a target (the customers' words and the tool results it must copy from as well as its own turns).
            // A LoRA adapter on the same data moves this 1M-parameter base far less (docs/performance.md, 2026-12-06
            // morning), and mixed into the domain adapter's data the conversations cost its answers. Windows of 1,024: an
            // order's details carry a conversation past 512, and a model never trained beyond 512 writes junk there.
            Stage("fine-tuning of the agent on the oracle's conversations (all weights)", () => Trainer.Run(new TrainOptions
            {
                Model = baseModel, Data = agent.Trajectories, Out = agentRun, Method = TrainingMethod.Full, Stage = TrainingStage.Sft, TrainOnPrompt = true,
                MaxSteps = S(AgentSteps, 6), BatchSize = 2, SeqLen = 1024, Lr = 2e-3f, WarmupSteps = S(20, 1), Schedule = LearningRateSchedule.Constant,
                WeightDecay = 0.01f, EvalEvery = S(AgentSteps / 3, 3), ValSplit = 0.01, SaveEvery = 0, Threads = o.Threads, Seed = o.Seed, LogEvery = S(50, 1),
                Packing = true,
            }, TrainingDataLoader.Load, trainReporter, cancel));
            Stage("agent benchmark: the fine-tuned agent", () =>
            {
                QuickstartAgent.Append(Path.Combine(sftRun, "eval-after.json"), QuickstartAgent.Evaluate(agentRun, "fine-tuned agent", agent, o.Seed, o.Threads, S,
                    Path.Combine(agentRun, "agent-after.trajectories.jsonl"), log, cancel));
                return 0;
            });
        }
        var report = Stage("report", () => RunReport.Write(ReportFor(o, root, null)));

        var metrics = Metrics(sftRun);
        var summary = new JsonObject
        {
            ["report"] = report.HtmlPath, ["elapsed_seconds"] = Math.Round(total.Elapsed.TotalSeconds, 1), ["general_text"] = generalSource,
            ["stages"] = new JsonObject(stages.Select(s => KeyValuePair.Create(s.Item1, (JsonNode?)Math.Round(s.Item2.TotalSeconds, 1)))),
            ["metrics"] = new JsonObject(metrics.Select(m => KeyValuePair.Create(m.Key, (JsonNode?)new JsonObject { ["before"] = m.Value.Item1, ["after"] = m.Value.Item2 }))),
        };
        AtomicFile.WriteAllText(Path.Combine(root, "quickstart.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (extend) return Extend(o, root, S, trainReporter, total, stages, log, cancel);
        return new QuickstartResult(report.HtmlPath, report.MarkdownPath, metrics, total.Elapsed, stages);
    }

    /// <summary>The LoRA specialist's fine-tuning (and the never-saw model's of unlearning, on other data).</summary>
    static TrainOptions SpecialistTraining(QuickstartOptions o, Func<int, int, int> s, string baseModel, string data, string valData, string replay, string outDir,
        int steps, float lr) => new()
    {
        ReplayData = replay,
        Model = baseModel, Data = data, ValData = valData, Out = outDir, Method = TrainingMethod.Lora, Stage = TrainingStage.Sft,
        MaxSteps = s(steps, 6), BatchSize = 4, SeqLen = 512, Lr = lr, LoraR = 16, LoraAlpha = 32,
        LoraTargets = ["all-linear"], WarmupSteps = s(10, 1), Schedule = LearningRateSchedule.Cosine, MinLrRatio = 0.1f,
        EvalEvery = s(steps / 4, 3), SaveEvery = 0, Threads = o.Threads, Seed = o.Seed, LogEvery = s(10, 1), Packing = true,
    };

    /// <summary>The generated default's fine-tuning length and learning rate.</summary>
    const int GeneratedSftSteps = 500;
    const float GeneratedSftLr = 2e-3f;

    static ReportOptions ReportFor(QuickstartOptions o, string root, IReadOnlyList<ReportTable>? tables)
    {
        string baseRun = Path.Combine(root, "base"), sftRun = Path.Combine(root, "sft"), agentRun = Path.Combine(root, "agent-sft");
        bool agent = o.Model == null && o.Data == null;
        return new ReportOptions(o.Model == null ? agent ? [baseRun, sftRun, agentRun] : [baseRun, sftRun] : [sftRun], Path.Combine(root, "report.html"),
            o.Model == null ? "Hone quickstart: a customer-service specialist" : $"Hone quickstart: {Path.GetFileName(o.Model.TrimEnd('/'))}", Tables: tables);
    }

    static Dictionary<string, (double? Before, double? After)> Metrics(string sftRun)
    {
        var before = EvalResults.Read(Path.Combine(sftRun, "eval-before.json"));
        var after = EvalResults.Read(Path.Combine(sftRun, "eval-after.json"));
        var metrics = new Dictionary<string, (double? Before, double? After)>();
        foreach (var row in ResultsComparison.Compare([before, after]))
            metrics[$"{row.Task} {row.Metric}"] = (row.Values[0]?.Value, row.Values[1]?.Value);
        return metrics;
    }

    /// <summary>The optional stages on a finished quickstart: their results join quickstart.json and the report.</summary>
    static QuickstartResult Extend(QuickstartOptions o, string root, Func<int, int, int> s, ITrainingReporter reporter, Stopwatch total,
        List<(string, TimeSpan)> stages, Action<string> log, CancellationToken cancel)
    {
        string dataDir = Path.Combine(root, "data");
        var specialist = SpecialistTraining(o, s, Path.Combine(root, "base"), Path.Combine(dataDir, "domain", "train.filtered.jsonl"),
            Path.Combine(dataDir, "domain", "heldout.jsonl"), Path.Combine(dataDir, "general", "replay.jsonl"), Path.Combine(root, "sft"), GeneratedSftSteps, GeneratedSftLr);
        var extension = QuickstartExtension.Run(o, root, s, specialist, reporter, log, cancel);
        stages.AddRange(extension.Ledger.Stages.Select(x => (x.Stage, x.Time)));
        log("== report");
        var report = RunReport.Write(ReportFor(o, root, extension.Tables));
        string summaryPath = Path.Combine(root, "quickstart.json");
        var summary = JsonNode.Parse(File.ReadAllText(summaryPath)) as JsonObject ?? throw new FormatException($"{summaryPath}: not a JSON object");
        foreach (var (key, value) in extension.Json) summary[key] = value?.DeepClone();
        summary["report"] = report.HtmlPath;
        summary["extension_stages"] = new JsonObject(extension.Ledger.Stages.Select(x => KeyValuePair.Create(x.Stage, (JsonNode?)Math.Round(x.Time.TotalSeconds, 1))));
        AtomicFile.WriteAllText(summaryPath, summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new QuickstartResult(report.HtmlPath, report.MarkdownPath, Metrics(Path.Combine(root, "sft")), total.Elapsed, stages);
    }

    /// <summary>One phase of copying practice: its mix written fresh (shuffled, kinds interleaved) and trained on at a
    /// constant learning rate. At the tests' small scales the batch shrinks with the steps.</summary>
    static TrainingSummary RunPractice(PracticePhase phase, int index, string from, string outDir, string pretrainData, string generalTrain, string dataPath,
        QuickstartOptions o, Func<int, int, int> s, ITrainingReporter reporter, Action<string> log, CancellationToken cancel)
    {
        var random = new Xoshiro256(o.Seed * 0x9E3779B97F4A7C15UL + (ulong)index + 1);
        var pieces = CopyPractice.Pieces(Tokenizer.FromHuggingFaceDirectory(from));
        var general = SyntheticFiles.ReadTexts(generalTrain).ToList();
        List<string>? pretraining = null;
        var documents = new List<string>();
        var counts = new List<string>();
        foreach (var (kind, full) in phase.Mix)
        {
            int n = s(full, 8);
            switch (kind)
            {
                case PracticeKind.Pretraining:
                    pretraining ??= SyntheticFiles.ReadTexts(pretrainData).ToList();
                    for (int i = 0; i < n; i++) documents.Add(pretraining[(i + index * 7919) % pretraining.Count]);
                    break;
                case PracticeKind.CopyCorpus:
                    var copy = CopyCorpus.Generate(o.Seed + 1_000 + (ulong)index, (long)n * 700);
                    for (int i = 0; i < n; i++) documents.Add(copy[i % copy.Count]);
                    break;
                default:
                    for (int i = 0; i < n; i++) documents.Add(CopyPractice.Document(kind, random, pieces, general));
                    break;
            }
            counts.Add($"{n:N0} {kind}");
        }
        for (int i = documents.Count - 1; i > 0; i--) { int j = random.NextInt(i + 1); (documents[i], documents[j]) = (documents[j], documents[i]); }
        SyntheticFiles.WriteJsonLines(dataPath, documents.Select(d => new JsonObject { ["text"] = d }));
        log($"   {string.Join(", ", counts)} documents");
        int steps = s(phase.Steps, 2);
        int batch = o.Scale >= 0.25 ? phase.BatchSize : Math.Max(2, phase.BatchSize / 4);
        var summary = Trainer.Run(new TrainOptions
        {
            Model = from, Data = dataPath, Out = outDir, Method = TrainingMethod.Full, Stage = TrainingStage.Cpt,
            MaxSteps = steps, BatchSize = batch, SeqLen = phase.SeqLen, Lr = phase.Lr, WarmupSteps = s(20, 1),
            Schedule = LearningRateSchedule.Constant, WeightDecay = 0.01f, ValSplit = 0.01, EvalEvery = Math.Max(2, steps / 4),
            SaveEvery = 0, Threads = o.Threads, Seed = o.Seed, LogEvery = s(250, 1),
        }, TrainingDataLoader.Load, reporter, cancel);
        File.Delete(dataPath);
        return summary;
    }

    /// <summary>The generated base is evaluated in the 512-token windows it was pretrained on (its context of 2,048 is for the
    /// agent's conversations, which fine-tuning teaches it); a given model in its own context.</summary>
    static int EvalContext(QuickstartOptions o) => o.Model == null ? DefaultBase.SeqLen : 0;

    internal static string Summary(TaskResult r) => $"{r.Task}: " + string.Join(", ", r.Metrics.Select(m =>
        $"{m.Name} {m.Value.ToString("0.####", CultureInfo.InvariantCulture)}{(m.StandardError is double se ? " ± " + se.ToString("0.####", CultureInfo.InvariantCulture) : "")}"));

    // ---- domain data ----------------------------------------------------------------------------

    /// <summary>The domain files and how to fine-tune on them.</summary>
    /// <param name="Records">generated mode: the training orders' records as plain documents, part of the pretraining web
    /// text (a general model has seen receipts and shop policies, not customer-service dialogues)</param>
    /// <param name="Tasks">sampled domain tasks: name, task items, what passing means, tokens to generate</param>
    sealed record DomainData(string Train, string HeldOut, string HeldOutText, IReadOnlyList<DomainTask> Tasks, int SftSteps, float LearningRate,
        string? Records = null);

    sealed record DomainTask(string Name, string Items, string Description, int MaxTokens);

    static DomainData GeneratedDomain(QuickstartOptions o, Func<int, int, int> s, string dir, Action<string> log)
    {
        var data = EcommerceDataset.Generate(o.Seed, s(1500, 60));
        // Store-policy questions: knowledge the prompt does not hold, so only fine-tuning can teach it.
        var faq = PolicyFaq.Generate(o.Seed, s(3000, 36));
        string train = Path.Combine(dir, SyntheticFiles.TrainFile), heldOut = Path.Combine(dir, SyntheticFiles.HeldOutFile);
        string heldOutText = Path.Combine(dir, SyntheticFiles.HeldOutTextFile);
        JsonObject Record(EcommerceConversation c) => new() { ["messages"] = SyntheticFiles.Messages(c.Messages) };
        SyntheticFiles.WriteJsonLines(train, data.Train.Select(Record).Concat(faq.Train));
        SyntheticFiles.WriteJsonLines(heldOut, data.HeldOut.Select(Record).Concat(faq.HeldOut));
        SyntheticFiles.WriteDocuments(heldOutText, data.HeldOut.Select(c => c.PlainText)
            .Concat(faq.HeldOut.Select(c => string.Join("\n", c["messages"]!.AsArray().Select(m => (string?)m!["content"])))));
        // Web text for pretraining: order records with their confirmation e-mails, for the training orders and as many
        // other orders (held-out orders never appear).
        string records = Path.Combine(dir, "records.jsonl");
        var other = EcommerceDataset.Generate(o.Seed + 1_000_003, s(4500, 60));
        var random = new Xoshiro256(o.Seed + 17);
        SyntheticFiles.WriteJsonLines(records, data.Train.Concat(other.Train).Select(c => new JsonObject { ["text"] = OrderDocuments.Write(c.Facts, random) }));
        log($"   {data.Train.Count:N0} order conversations for training, {data.HeldOut.Count:N0} held out; " +
            $"{data.AnswersRejected} of {data.AnswersWritten} generated answers rejected by the fact checker");
        log($"   {faq.Train.Count:N0} store-policy conversations for training ({PolicyFaq.Topics.Length} policies), {faq.HeldOut.Count:N0} held out with new wordings");
        string policyItems = Path.Combine(dir, "task-policies.jsonl");
        SyntheticFiles.WriteJsonLines(policyItems, faq.TaskItems.Take(s(96, 12)));
        // Order questions: answer a held-out customer from their order record; pass when every fact is stated, the claim
        // fits the order's situation and nothing contradicts it.
        string orderItems = Path.Combine(dir, "task-orders.jsonl");
        SyntheticFiles.WriteJsonLines(orderItems, data.Evaluation.Take(s(60, 8)).Select(i => i.ToJson()));
        return new DomainData(train, heldOut, heldOutText,
        [
            new("domain_task_policies", policyItems, "answer held-out questions about the store's policies (the policy's fact must appear verbatim)", 48),
            new("domain_task_orders", orderItems, "answer held-out customers from their order record (every fact verbatim, the right claim, no contradiction)", 100),
        ], GeneratedSftSteps, GeneratedSftLr, records);
    }

    static DomainData ImportedDomain(QuickstartOptions o, string path, string dir, Action<string> log)
    {
        Directory.CreateDirectory(dir);
        var conversations = new List<(JsonArray Messages, string? Intent)>();
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            List<List<string>> rows;
            using (var reader = TextFile.Open(path)) rows = Csv.Rows(reader, path).Select(r => r.Cells).ToList();
            if (rows.Count < 2) throw new DataFormatException(path, 1, "the CSV has no data rows");
            var header = rows[0].Select(h => h.Trim().ToLowerInvariant()).ToList();
            int prompt = FirstColumn(header, "instruction", "question", "prompt", "input", "query");
            int answer = FirstColumn(header, "response", "answer", "output", "completion");
            if (prompt < 0 || answer < 0)
                throw new DataFormatException(path, 1, $"expected instruction/response (or question/answer) columns, found {string.Join(", ", header)}");
            int intent = header.IndexOf("intent");
            foreach (var row in rows.Skip(1))
                if (row.Count > Math.Max(prompt, answer) && row[prompt].Trim().Length > 0 && row[answer].Trim().Length > 0)
                    conversations.Add((new JsonArray(
                        (JsonNode)new JsonObject { ["role"] = "user", ["content"] = row[prompt].Trim() },
                        (JsonNode)new JsonObject { ["role"] = "assistant", ["content"] = row[answer].Trim() }), intent >= 0 && row.Count > intent ? row[intent].Trim() : null));
        }
        else
            foreach (var (line, record, error) in RecordFile.Records(path, textDocuments: false))
            {
                if (error != null) throw new DataFormatException(path, line, error);
                conversations.Add((ChatConversation.ToMessages(record!, path, line), record!["intent"] is JsonValue v && v.TryGetValue(out string? it) ? it : null));
            }
        // Seeded split: 90% train, 10% held out (both shrunk by --scale below 1; at least 20 held out when there are 40).
        var order = Enumerable.Range(0, conversations.Count).ToArray();
        var rng = new Xoshiro256(o.Seed);
        for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
        int held = Math.Max(Math.Min(20, conversations.Count / 2), (int)Math.Round(conversations.Count / 10.0 * Math.Min(1, o.Scale)));
        int trainCount = Math.Min(conversations.Count - held, (int)Math.Round(conversations.Count * Math.Min(1, o.Scale)));
        var heldOut = order.Take(held).Select(i => conversations[i]).ToList();
        var train = order.Skip(held).Take(trainCount).Select(i => conversations[i]).ToList();
        string trainPath = Path.Combine(dir, "train.jsonl"), heldPath = Path.Combine(dir, "heldout.jsonl"), textPath = Path.Combine(dir, "heldout.txt");
        SyntheticFiles.WriteJsonLines(trainPath, train.Select(c => new JsonObject { ["messages"] = c.Messages.DeepClone() }));
        SyntheticFiles.WriteJsonLines(heldPath, heldOut.Select(c => new JsonObject { ["messages"] = c.Messages.DeepClone() }));
        SyntheticFiles.WriteDocuments(textPath, heldOut.Select(c => string.Join("\n", c.Messages.Select(m => (string?)m!["content"] ?? ""))));
        // Task: answer held-out requests on topic — the reply must name the request's intent (its words, as a regex).
        var tasks = new List<DomainTask>();
        string description = "none: the data has no intent labels to check answers against";
        var labelled = heldOut.Where(c => c.Intent is { Length: > 0 }).Take(Math.Max(8, (int)(60 * Math.Min(1, o.Scale * 4)))).ToList();
        if (labelled.Count > 0)
        {
            string task = Path.Combine(dir, "task.jsonl");
            SyntheticFiles.WriteJsonLines(task, labelled.Select(c => new JsonObject
            {
                ["intent"] = c.Intent,
                ["prompt_messages"] = new JsonArray(c.Messages.Take(c.Messages.Count - 1).Select(m => m!.DeepClone()).ToArray()),
                ["expected"] = new JsonObject { ["contains"] = new JsonArray(), ["regex"] = IntentRegex(c.Intent!) },
            }));
            description = "answer held-out requests on topic: the reply must use a word of the request's intent label";
            tasks.Add(new("domain_task", task, description, 100));
        }
        log($"   {train.Count:N0} training conversations, {heldOut.Count:N0} held out from {path}; domain task: {description}");
        return new DomainData(trainPath, heldPath, textPath, tasks, (int)Math.Min(400, Math.Max(60, train.Count / 8)), 2e-3f);
    }

    static int FirstColumn(List<string> header, params string[] names)
    {
        foreach (var n in names) { int i = header.IndexOf(n); if (i >= 0) return i; }
        return -1;
    }

    /// <summary>"cancel_order" → (?i)\b(cancel|order)…: words of the label (4+ letters, stems of 5+ letter words).</summary>
    static string IntentRegex(string intent)
    {
        var words = intent.ToLowerInvariant().Split(['_', '-', ' '], StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w.Length >= 4 && w is not ("check" or "with" or "from" or "know" or "about" or "information"))
            .Select(w => w.Length >= 6 ? w[..^2] : w).Distinct().ToList();
        if (words.Count == 0) words.Add(intent.ToLowerInvariant());
        return "(?i)\\b(" + string.Join("|", words.Select(System.Text.RegularExpressions.Regex.Escape)) + ")";
    }

    // ---- tasks ----------------------------------------------------------------------------------

    static List<string> WriteTasks(string dir, string generalHeldOut, string generalSource, DomainData domain, Func<int, int, int> s)
    {
        Directory.CreateDirectory(dir);
        var tasks = new List<string>();
        void Write(string name, JsonObject spec)
        {
            var path = Path.Combine(dir, name + ".json");
            spec["version"] = 1;
            spec["name"] = name;
            File.WriteAllText(path, spec.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            tasks.Add(path);
        }
        // Domain perplexity as fine-tuning sees it: the held-out answers given their conversations (chat template).
        Write("domain_perplexity", new JsonObject { ["kind"] = "perplexity", ["data"] = domain.HeldOut, ["messages_field"] = "messages" });
        // The same conversations as plain text: what a base model reads best, and what chat tuning may trade away.
        Write("domain_text_perplexity", new JsonObject { ["kind"] = "perplexity", ["data"] = domain.HeldOutText });
        Write("general_perplexity", new JsonObject
        {
            ["description"] = $"held-out documents of {generalSource}: what fine-tuning costs elsewhere (forgetting)",
            ["kind"] = "perplexity", ["data"] = generalHeldOut,
        });
        if (domain.Records != null)
        {
            // Copying from context, for the base model as it is: the value that a context leads up to again among three
            // fresh values of the same shape (chance 0.25).
            string probe = Path.Combine(dir, "copy_probe.jsonl");
            SyntheticFiles.WriteJsonLines(probe, CopyCorpus.Probe(7, s(120, 12)).Select(p => new JsonObject
            {
                ["question"] = p.Question, ["choices"] = new JsonArray(p.Choices.Select(c => (JsonNode?)c).ToArray()), ["answer"] = p.Answer,
            }));
            Write("copy_probe", new JsonObject
            {
                ["description"] = "copying from context: the value a context repeats, against three fresh values of its shape (chance 0.25)",
                ["kind"] = "multiple_choice", ["data"] = probe, ["format"] = "cloze", ["prompt"] = "{question}",
            });
        }
        foreach (var task in domain.Tasks)
            Write(task.Name, new JsonObject
            {
                ["description"] = task.Description,
                ["kind"] = "sampled", ["data"] = task.Items, ["chat"] = true, ["messages_field"] = "prompt_messages",
                ["target_field"] = "expected", ["checker"] = new JsonObject { ["type"] = "facts" },
                ["n"] = 4, ["k"] = new JsonArray(1, 2, 4), ["max_tokens"] = task.MaxTokens,
                ["sampling"] = new JsonObject { ["temperature"] = 0.6, ["top_p"] = 0.95 },
            });
        return tasks;
    }

    /// <summary>General documents from a file: a .txt file's blank-line separated documents, or JSONL "text" fields.</summary>
    static List<string> GivenGeneral(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: general text file not found", path);
        var docs = SyntheticFiles.ReadTexts(path).Where(d => d.Trim().Length > 0).ToList();
        if (docs.Count < 2) throw new DataFormatException(path, 0, $"general text needs at least 2 documents (blank-line separated in a .txt file, or JSONL {{\"text\"}} records), found {docs.Count}");
        return docs;
    }

    sealed class LogReporter(Action<string> log) : ITrainingReporter
    {
        public void Info(string message) => log("   " + message);
        public void Progress(TrainingProgress p) =>
            log($"   step {p.Step}/{p.TotalSteps}  loss {p.Loss:F3}  lr {p.LearningRate:E1}  {p.TokensPerSecond:F0} tok/s  ETA {Clock(p.Remaining)}");
        public void Validation(long step, double loss, bool improved) => log($"   step {step}: validation loss {loss:F3}{(improved ? " (best)" : "")}");
        public void Checkpoint(string path) => log($"   checkpoint {path}");
    }

    /// <summary>m:ss, or h:mm:ss from an hour on (a busy machine can stretch a stage that far).</summary>
    static string Clock(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}" : $"{t.Minutes:D2}:{t.Seconds:D2}";
}
