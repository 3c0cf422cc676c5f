using Hone.Formats;
using Hone.Tensors;

namespace Hone.Training;

public sealed partial record TrainOptions
{
    /// <summary>
    /// Every training option, declared once: recipe key, flag and aliases, LLaMA-Factory's name (and values) where it
    /// has the same meaning, description and limits. The CLI builds `hone train`'s options from this table, recipes bind
    /// their keys through it (<see cref="TrainRecipe"/>), and <see cref="Validate"/> checks every limit in it.
    /// Defaults are the record's own initial values.
    /// </summary>
    public static IReadOnlyList<SettingSpec<TrainOptions>> Settings { get; } =
    [
        PathSetting("model", o => o.Model, (o, v) => o with { Model = v! }, "base model: a Hugging Face directory, a .gguf file, or a folder holding one .gguf",
            lf: "model_name_or_path", aliases: ["-m"]),
        PathSetting("data", o => o.Data, (o, v) => o with { Data = v! },
            "training data: JSONL, a .json array or CSV (messages / Alpaca / ShareGPT / instruction-response columns for sft; {\"text\"} or .txt for cpt), or a folder holding one such file",
            lf: "dataset", aliases: ["-d"]),
        PathSetting("val_data", o => o.ValData, (o, v) => o with { ValData = v }, "validation data (default: hold out val_split of the training data)",
            lf: "eval_dataset", nullable: true),
        PathSetting("replay_data", o => o.ReplayData, (o, v) => o with { ReplayData = v },
            "sft: plain documents (text or JSONL {\"text\"}) mixed into training with every token a target, against forgetting; not used for validation", nullable: true),
        PathSetting("out", o => o.Out, (o, v) => o with { Out = v! }, "output directory: adapter (PEFT layout) or model, metrics.jsonl, checkpoints/",
            lf: "output_dir", aliases: ["-o"]),
        ChoiceSetting("method", o => o.Method, (o, v) => o with { Method = v }, "full | freeze | lora | dora | qlora", lf: "finetuning_type"),
        ChoiceSetting("stage", o => o.Stage, (o, v) => o with { Stage = v },
            "cpt (raw text, packed) | sft (conversations, loss on assistant tokens) | distill (sft's data and targets; the loss mixes in a --teacher's distribution, or a --teacher-cache's: see --kd-ratio) | unlearn (make the model forget --forget's answers, see unlearn_method)",
            lf: "stage", lfValues: new() { ["pt"] = "cpt" }),
        RealSetting("epochs", o => o.Epochs, (o, v) => o with { Epochs = v }, "passes over the data", 0, 1e6, lf: "num_train_epochs"),
        IntSetting("max_steps", o => o.MaxSteps, (o, v) => o with { MaxSteps = v }, "optimizer steps (0 = from epochs; overrides epochs)", 0, int.MaxValue,
            lf: "max_steps", lfValues: new() { ["-1"] = "0" }),
        RealSetting("lr", o => o.Lr, (o, v) => o with { Lr = (float)v }, "peak learning rate", 0, 1, minExclusive: true, lf: "learning_rate", aliases: ["--learning-rate"]),
        IntSetting("batch_size", o => o.BatchSize, (o, v) => o with { BatchSize = v }, "sequences per micro-batch", 1, 65536,
            lf: "per_device_train_batch_size", aliases: ["-b"]),
        IntSetting("grad_accum", o => o.GradAccum, (o, v) => o with { GradAccum = v }, "micro-batches per optimizer step", 1, 65536, lf: "gradient_accumulation_steps"),
        IntSetting("seq_len", o => o.SeqLen, (o, v) => o with { SeqLen = v }, "tokens per sequence (at most the model's context)", 2, 1 << 20, lf: "cutoff_len"),
        IntSetting("lora_r", o => o.LoraR, (o, v) => o with { LoraR = v }, "LoRA rank", 1, Gemm.MaxFusedRank,
            reason: "the largest rank the fused LoRA GEMM kernels take", lf: "lora_rank", aliases: ["--lora-rank"]),
        RealSetting("lora_alpha", o => o.LoraAlpha, (o, v) => o with { LoraAlpha = (float)v }, "LoRA alpha (scale alpha/r, or alpha/√r with use_rslora)",
            0, 1e6, minExclusive: true, lf: "lora_alpha"),
        RealSetting("lora_dropout", o => o.LoraDropout, (o, v) => o with { LoraDropout = (float)v }, "dropout on the adapter input", 0, 1, maxExclusive: true, lf: "lora_dropout"),
        ListSetting("lora_targets", o => o.LoraTargets, (o, v) => o with { LoraTargets = v },
            "comma-separated modules (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear",
            lf: "lora_target", lfValues: new() { ["all"] = "all-linear" }, aliases: ["--lora-target"]),
        BoolSetting("use_rslora", o => o.UseRslora, (o, v) => o with { UseRslora = v }, "rank-stabilized scaling alpha/√r", lf: "use_rslora"),
        new()
        {
            Key = "adapter_kind", Kind = SettingKind.Choice, Choices = Hone.Model.AdapterKinds.All.Where(k => !k.Composite).Select(k => k.Name).ToArray(), Nullable = true,
            Description = "the adapter lora and qlora train (a registered kind; default lora, dora with method dora)",
            Get = o => o.AdapterKind, Set = (o, v) => o with { AdapterKind = (string?)v },
        },
        new()
        {
            Key = "qlora_type", Kind = SettingKind.Choice, Choices = ["q8_0", "q4_0", "q4_k"],
            Description = "storage of the frozen base with method qlora (q4_k needs layer widths that are multiples of 256)",
            Get = o => o.QloraType, Set = (o, v) => o with { QloraType = (string)v! },
        },
        IntSetting("freeze_trainable_layers", o => o.FreezeTrainableLayers, (o, v) => o with { FreezeTrainableLayers = v },
            "freeze: train the last N layers (the first N if negative; at most the model's layers)", -65536, 65536, lf: "freeze_trainable_layers"),
        ListSetting("freeze_trainable_modules", o => o.FreezeTrainableModules, (o, v) => o with { FreezeTrainableModules = v },
            "freeze: comma-separated modules to train in those layers (q_proj … down_proj, self_attn, mlp, norm; all = every one)",
            lf: "freeze_trainable_modules"),
        ListSetting("freeze_extra_modules", o => o.FreezeExtraModules, (o, v) => o with { FreezeExtraModules = v },
            "freeze: also train embed_tokens, lm_head, norm", lf: "freeze_extra_modules"),
        new()
        {
            Key = "seed", Kind = SettingKind.Unsigned, Description = "random seed (same seed and threads: bit-identical run)", LlamaFactoryKey = "seed",
            Get = o => o.Seed, Set = (o, v) => o with { Seed = (ulong)v! },
        },
        IntSetting("threads", o => o.Threads, (o, v) => o with { Threads = v }, "worker threads (0 = one per core)", 0, MaxThreads,
            reason: "0 = one per core", aliases: ["-t"]),
        IntSetting("save_every", o => o.SaveEvery, (o, v) => o with { SaveEvery = v }, "checkpoint every N steps (0 = only on interruption)", 0, int.MaxValue, lf: "save_steps"),
        IntSetting("keep_checkpoints", o => o.KeepCheckpoints, (o, v) => o with { KeepCheckpoints = v }, "checkpoints kept", 1, 10_000, lf: "save_total_limit"),
        new()
        {
            Key = "resume", Kind = SettingKind.Text, Nullable = true,
            Description = "continue from the latest checkpoint in out (\"auto\", the value when the flag has none) or from a checkpoint directory",
            LlamaFactoryKey = "resume_from_checkpoint", LlamaFactoryValues = new Dictionary<string, string> { ["true"] = "auto", ["false"] = "null" },
            Get = o => o.Resume, Set = (o, v) => o with { Resume = (string?)v },
        },
        IntSetting("eval_every", o => o.EvalEvery, (o, v) => o with { EvalEvery = v }, "validation loss every N steps (0 = never)", 0, int.MaxValue, lf: "eval_steps"),
        RealSetting("val_split", o => o.ValSplit, (o, v) => o with { ValSplit = v }, "fraction held out for validation without val_data (0 = none)", 0, 1,
            maxExclusive: true, lf: "val_size"),
        IntSetting("early_stopping_patience", o => o.EarlyStoppingPatience, (o, v) => o with { EarlyStoppingPatience = v },
            "stop after N validations without improvement (0 = never)", 0, 1_000_000, flag: "--early-stopping", aliases: ["--early-stopping-patience"]),
        IntSetting("warmup_steps", o => o.WarmupSteps, (o, v) => o with { WarmupSteps = v }, "linear warm-up steps (-1 = warmup_ratio of the steps)", -1, int.MaxValue,
            lf: "warmup_steps"),
        RealSetting("warmup_ratio", o => o.WarmupRatio, (o, v) => o with { WarmupRatio = v }, "warm-up as a fraction of the steps, when warmup_steps is -1", 0, 1,
            lf: "warmup_ratio"),
        ChoiceSetting("schedule", o => o.Schedule, (o, v) => o with { Schedule = v }, "cosine | linear | constant (after the warm-up)",
            lf: "lr_scheduler_type", lfValues: new() { ["constant_with_warmup"] = "constant" }),
        RealSetting("min_lr_ratio", o => o.MinLrRatio, (o, v) => o with { MinLrRatio = (float)v }, "the schedule decays to this fraction of lr", 0, 1),
        RealSetting("weight_decay", o => o.WeightDecay, (o, v) => o with { WeightDecay = (float)v }, "AdamW decoupled weight decay", 0, 1, lf: "weight_decay"),
        RealSetting("max_grad_norm", o => o.MaxGradNorm, (o, v) => o with { MaxGradNorm = (float)v }, "clip the global gradient norm (0 = off)", 0, 1e6, lf: "max_grad_norm"),
        BoolSetting("packing", o => o.Packing, (o, v) => o with { Packing = v }, "pack examples into full windows (default: on for cpt, off for sft)", lf: "packing",
            unset: o => o with { Packing = null }),
        BoolSetting("train_on_prompt", o => o.TrainOnPrompt, (o, v) => o with { TrainOnPrompt = v }, "sft: compute the loss on prompt tokens too", lf: "train_on_prompt"),
        BoolSetting("skip_bad_lines", o => o.SkipBadLines, (o, v) => o with { SkipBadLines = v }, "skip malformed records (counted in the summary) instead of stopping"),
        BoolSetting("checkpoint_activations", o => o.CheckpointActivations, (o, v) => o with { CheckpointActivations = v },
            "keep only each layer's input and recompute the rest in backward (less memory, ~30% more compute)", lf: "gradient_checkpointing"),
        IntSetting("log_every", o => o.LogEvery, (o, v) => o with { LogEvery = v }, "log metrics every N steps", 1, int.MaxValue, lf: "logging_steps"),
        PathSetting("template", o => o.Template, (o, v) => o with { Template = v },
            "a Jinja chat template file instead of the model's, or a chat format name (llama3, qwen, chatml, mistral, gemma, phi …) that the model's own template must be",
            lf: "template", nullable: true),
        new()
        {
            Key = "router_aux_loss_coef", Kind = SettingKind.Real, Nullable = true, Min = 0, Max = 1e6,
            Description = "mixture of experts: weight of the load-balancing loss (Hugging Face's definition, over every sparse layer's tokens; default: the model's router_aux_loss_coef; 0 = off). Always computed and logged",
            LlamaFactoryKey = "moe_aux_loss_coef",
            Get = o => o.RouterAuxLossCoef, Set = (o, v) => o with { RouterAuxLossCoef = v == null ? null : Convert.ToDouble(v) },
        },
        RealSetting("router_z_loss_coef", o => o.RouterZLossCoef, (o, v) => o with { RouterZLossCoef = v },
            "mixture of experts: weight of the router z-loss (ST-MoE: mean squared logsumexp of the router logits; 0 = off)", 0, 1e6),
        ListSetting("lora_experts", o => o.LoraExperts, (o, v) => o with { LoraExperts = v },
            "train a mixture of these LoRA adapters (comma-separated PEFT directories of this base model) with a learned top-k router per layer on the attention norm's output; saved as a mixture directory (each expert a plain PEFT adapter plus router.safetensors)"),
        IntSetting("lora_experts_top_k", o => o.LoraExpertsTopK, (o, v) => o with { LoraExpertsTopK = v }, "lora_experts: experts each token uses (softmax over the chosen)", 1, 64),
        BoolSetting("lora_experts_train", o => o.LoraExpertsTrain, (o, v) => o with { LoraExpertsTrain = v },
            "lora_experts: train the experts with the routers (MixLoRA); default only the routers, the experts frozen (X-LoRA)"),
        RealSetting("expert_choice_capacity", o => o.ExpertChoiceCapacity, (o, v) => o with { ExpertChoiceCapacity = v },
            "mixture of experts: 0 = each token takes its top k experts; c > 0 = expert-choice routing (Zhou et al. 2022): each expert takes the ⌈N·c/E⌉ rows of the micro-batch that score highest for it. It sees later positions of the batch, so it is a training-time router: generation and evaluation route top-k", 0, 4096),
        PathSetting("forget", o => o.Forget, (o, v) => o with { Forget = v },
            "unlearn: the forget set, conversations as for sft (one example per row; the loss on the assistant tokens is pushed up)", nullable: true),
        PathSetting("retain", o => o.Retain, (o, v) => o with { Retain = v },
            "unlearn: the retain set, conversations as for sft, trained normally (needed by grad-diff; adds the retain term to npo; grad-ascent only evaluates it at the evaluation points)", nullable: true),
        new()
        {
            Key = "unlearn_method", Kind = SettingKind.Choice, Choices = UnlearningObjective.Methods,
            Description = "unlearn: grad-ascent (minimize −CE on the forget set) | grad-diff (−CE(forget) + retain_weight·CE(retain); each step runs its forget and retain micro-batches interleaved) | " +
                          "npo (Zhang et al. 2024: (2/β)·mean log(1 + (π/π_ref)^β) over forget examples, π the answer's likelihood, π_ref the starting model's, computed once before training; + the retain term when --retain is given)",
            Get = o => o.UnlearnMethod, Set = (o, v) => o with { UnlearnMethod = (string)v! },
        },
        RealSetting("npo_beta", o => o.NpoBeta, (o, v) => o with { NpoBeta = v }, "unlearn npo: the inverse temperature β", 0, 1000, minExclusive: true),
        RealSetting("retain_weight", o => o.RetainWeight, (o, v) => o with { RetainWeight = v }, "unlearn: weight of the retain set's mean per-token cross-entropy", 0, 1e6),
        RealSetting("forget_target_loss", o => o.ForgetTargetLoss, (o, v) => o with { ForgetTargetLoss = v },
            "unlearn: stop at an evaluation point (every eval_every steps) once the forget set's mean per-token NLL is above this (0 = run max_steps)", 0, 1e6),
        PathSetting("teacher", o => o.Teacher, (o, v) => o with { Teacher = v },
            "distill: the teacher model (Hugging Face directory or .gguf) run without gradients over every micro-batch; it must have the student's tokenizer (if only the vocabulary size differs and the shared ids' tokens agree, the logits are sliced to the shared ids)",
            nullable: true),
        PathSetting("teacher_adapter", o => o.TeacherAdapter, (o, v) => o with { TeacherAdapter = v }, "distill: a PEFT adapter applied to the teacher", nullable: true),
        IntSetting("teacher_threads", o => o.TeacherThreads, (o, v) => o with { TeacherThreads = v },
            "distill: worker threads of the live teacher's own pool (0 = it shares the trainer's threads); the teacher runs before the student's forward in each step, so this bounds its share of the machine", 0, MaxThreads),
        PathSetting("teacher_cache", o => o.TeacherCache, (o, v) => o with { TeacherCache = v },
            "distill: instead of --teacher, the teacher's top-K tokens per target position from a file made by `hone distill cache` with this run's data settings; " +
            "the divergence is then taken over the K ids plus one bucket for the rest of the vocabulary, and kd_temperature must be the cache's",
            nullable: true),
        RealSetting("kd_ratio", o => o.KdRatio, (o, v) => o with { KdRatio = v },
            "distill: weight α of the distillation term; loss per target position = (1 − α)·cross-entropy + α·T²·KL (1 = the teacher only)", 0, 1),
        RealSetting("kd_temperature", o => o.KdTemperature, (o, v) => o with { KdTemperature = v },
            "distill: temperature T of both softmaxes in the distillation term (the T² factor keeps its gradient's scale)", 0, 100, minExclusive: true),
        ChoiceSetting("kd_loss", o => o.KdLoss, (o, v) => o with { KdLoss = v },
            "distill: forward = KL(p_teacher ‖ p_student) (Hinton; mass-covering) | reverse = KL(p_student ‖ p_teacher) (mode-seeking) | symmetric = their mean; p = softmax(logits/T) over the target positions of cross-entropy"),
        IntSetting("max_samples", o => o.MaxSamples, (o, v) => o with { MaxSamples = v }, "use only the first N training records (0 = all)", 0, int.MaxValue,
            lf: "max_samples"),
    ];

    /// <summary>The most worker threads a run may ask for: far above any core count Hone runs on, and low enough that
    /// a mistyped number cannot try to start millions of threads.</summary>
    public const int MaxThreads = 1024;

    /// <summary>The setting with this recipe key, flag (with or without dashes) or LLaMA-Factory key.</summary>
    public static SettingSpec<TrainOptions>? Setting(string name) =>
        Settings.FirstOrDefault(s => s.Key == name || s.Flag == name || s.FlagAliases.Contains(name));

    static SettingSpec<TrainOptions> PathSetting(string key, Func<TrainOptions, string?> get, Func<TrainOptions, string?, TrainOptions> set, string description,
        string? lf = null, string[]? aliases = null, bool nullable = false) => new()
    {
        Key = key, Kind = SettingKind.Path, Description = description, LlamaFactoryKey = lf, FlagAliases = aliases ?? [], Nullable = nullable,
        Get = o => get(o), Set = (o, v) => set(o, (string?)v),
    };

    static SettingSpec<TrainOptions> IntSetting(string key, Func<TrainOptions, int> get, Func<TrainOptions, int, TrainOptions> set, string description,
        long min, long max, string? reason = null, string? lf = null, Dictionary<string, string>? lfValues = null, string[]? aliases = null,
        string? flag = null) => new()
    {
        Key = key, FlagName = flag, Kind = SettingKind.Integer, Description = description, Min = min, Max = max, LimitReason = reason, LlamaFactoryKey = lf,
        LlamaFactoryValues = lfValues ?? new Dictionary<string, string>(), FlagAliases = aliases ?? [],
        Get = o => get(o), Set = (o, v) => set(o, checked((int)Convert.ToInt64(v))),
    };

    static SettingSpec<TrainOptions> RealSetting(string key, Func<TrainOptions, double> get, Func<TrainOptions, double, TrainOptions> set, string description,
        double min, double max, bool minExclusive = false, bool maxExclusive = false, string? lf = null, string[]? aliases = null) => new()
    {
        Key = key, Kind = SettingKind.Real, Description = description, Min = min, Max = max, MinExclusive = minExclusive, MaxExclusive = maxExclusive,
        LlamaFactoryKey = lf, FlagAliases = aliases ?? [],
        Get = o => get(o), Set = (o, v) => set(o, Convert.ToDouble(v)),
    };

    /// <param name="unset">for a tri-state (packing: null = by stage), what null sets; without it a value is required</param>
    static SettingSpec<TrainOptions> BoolSetting(string key, Func<TrainOptions, bool?> get, Func<TrainOptions, bool, TrainOptions> set, string description,
        string? lf = null, Func<TrainOptions, TrainOptions>? unset = null) => new()
    {
        Key = key, Kind = SettingKind.Boolean, Description = description, LlamaFactoryKey = lf, Nullable = unset != null,
        Get = o => get(o), Set = (o, v) => v is bool b ? set(o, b) : unset?.Invoke(o) ?? throw new ArgumentException($"{key}: a value is required"),
    };

    static SettingSpec<TrainOptions> ChoiceSetting<TEnum>(string key, Func<TrainOptions, TEnum> get, Func<TrainOptions, TEnum, TrainOptions> set, string description,
        string? lf = null, Dictionary<string, string>? lfValues = null) where TEnum : struct, Enum => new()
    {
        Key = key, Kind = SettingKind.Choice, Description = description, LlamaFactoryKey = lf, LlamaFactoryValues = lfValues ?? new Dictionary<string, string>(),
        Choices = Enum.GetNames<TEnum>().Select(n => n.ToLowerInvariant()).ToList(),
        Get = o => get(o), Set = (o, v) => set(o, Enum.Parse<TEnum>((string)v!, ignoreCase: true)),
    };

    static SettingSpec<TrainOptions> ListSetting(string key, Func<TrainOptions, IReadOnlyList<string>> get, Func<TrainOptions, IReadOnlyList<string>, TrainOptions> set,
        string description, string? lf = null, Dictionary<string, string>? lfValues = null, string[]? aliases = null) => new()
    {
        Key = key, Kind = SettingKind.List, Description = description, LlamaFactoryKey = lf, LlamaFactoryValues = lfValues ?? new Dictionary<string, string>(), FlagAliases = aliases ?? [],
        Get = o => get(o),
        // "all" names every module for freeze_trainable_modules (LLaMA-Factory's spelling); an empty list means the same.
        Set = (o, v) => set(o, v is IReadOnlyList<string> { Count: 1 } l && l[0] == "all" && key == "freeze_trainable_modules" ? [] : (IReadOnlyList<string>)v!),
    };
}
