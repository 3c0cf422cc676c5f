using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>cpt: raw text, every token a target; sft: conversations, the assistant's tokens targets; distill: sft's data
/// and targets with a teacher's distribution mixed into the loss (<see cref="DistillationLoss"/>); unlearn: push the
/// forget set's answers down (<see cref="UnlearningObjective"/>).</summary>
public enum TrainingStage { Cpt, Sft, Distill, Unlearn }

/// <summary>
/// Every option of a training run, as a plain record. Their flags, recipe keys (snake_case, or LLaMA-Factory's names),
/// descriptions and limits are declared once, in <see cref="Settings"/> (TrainSettings.cs); the CLI's options, the
/// recipe reader (<see cref="TrainRecipe"/>) and <see cref="Validate"/> are derived from that table.
/// </summary>
public sealed partial record TrainOptions
{
    public string Model { get; init; } = "";
    public string Data { get; init; } = "";
    public string? ValData { get; init; }
    /// <summary>sft: plain documents (as for cpt, every token a target) mixed into the training examples, to hold on to
    /// general ability while specializing (replay against forgetting); never part of validation.</summary>
    public string? ReplayData { get; init; }
    public string Out { get; init; } = "";
    public TrainingMethod Method { get; init; } = TrainingMethod.Lora;
    public TrainingStage Stage { get; init; } = TrainingStage.Sft;
    public double Epochs { get; init; } = 1;
    /// <summary>Optimizer steps; 0 = derived from epochs.</summary>
    public int MaxSteps { get; init; }
    public float Lr { get; init; } = 2e-4f;
    public int BatchSize { get; init; } = 4;
    public int GradAccum { get; init; } = 1;
    public int SeqLen { get; init; } = 256;
    public int LoraR { get; init; } = 8;
    public float LoraAlpha { get; init; } = 16;
    public float LoraDropout { get; init; }
    public IReadOnlyList<string> LoraTargets { get; init; } = ["all-linear"];
    public bool UseRslora { get; init; }
    /// <summary>The kind of adapter lora and qlora train (a registered kind: lora, dora, ...); null: lora (dora with method dora).</summary>
    public string? AdapterKind { get; init; }
    /// <summary>Storage of the frozen base for qlora: q8_0, q4_0 or q4_k.</summary>
    public string QloraType { get; init; } = "q4_0";
    public int FreezeTrainableLayers { get; init; } = 2;
    public IReadOnlyList<string> FreezeTrainableModules { get; init; } = [];
    public IReadOnlyList<string> FreezeExtraModules { get; init; } = [];
    public ulong Seed { get; init; } = 42;
    public int Threads { get; init; }
    public int SaveEvery { get; init; } = 100;
    public int KeepCheckpoints { get; init; } = 3;
    /// <summary>"auto" (latest checkpoint in Out, if any), a checkpoint directory, or null for a fresh run.</summary>
    public string? Resume { get; init; }
    public int EvalEvery { get; init; } = 50;
    /// <summary>Fraction of the data held out for validation when no ValData is given (0 = none).</summary>
    public double ValSplit { get; init; } = 0.05;
    /// <summary>Stop after this many validations without improvement (0 = never).</summary>
    public int EarlyStoppingPatience { get; init; }
    public int WarmupSteps { get; init; } = -1;
    public double WarmupRatio { get; init; } = 0.03;
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Cosine;
    public float MinLrRatio { get; init; }
    public float WeightDecay { get; init; }
    public float MaxGradNorm { get; init; } = 1f;
    /// <summary>Pack examples into full windows (default: on for cpt, off for sft).</summary>
    public bool? Packing { get; init; }
    public bool TrainOnPrompt { get; init; }
    public bool SkipBadLines { get; init; }
    public bool CheckpointActivations { get; init; }
    public int LogEvery { get; init; } = 1;
    /// <summary>Use only the first N training examples (0 = all): LLaMA-Factory's max_samples.</summary>
    public int MaxSamples { get; init; }
    /// <summary>A Jinja chat template file to use instead of the model's.</summary>
    public string? Template { get; init; }
    /// <summary>Mixture of experts: the load-balancing loss's coefficient; null: the checkpoint's router_aux_loss_coef.</summary>
    public double? RouterAuxLossCoef { get; init; }
    /// <summary>Mixture of experts: the router z-loss's coefficient.</summary>
    public double RouterZLossCoef { get; init; }
    /// <summary>Train a mixture of these LoRA adapters (PEFT directories of this base) with a router per layer.</summary>
    public IReadOnlyList<string> LoraExperts { get; init; } = [];
    public int LoraExpertsTopK { get; init; } = 2;
    /// <summary>The mixture's experts train too (MixLoRA); otherwise only its routers (X-LoRA).</summary>
    public bool LoraExpertsTrain { get; init; }
    /// <summary>Mixture of experts: 0 = top-k routing; c &gt; 0 = expert-choice routing with capacity factor c.</summary>
    public double ExpertChoiceCapacity { get; init; }
    /// <summary>Unlearning: conversations (sft format) whose answers the model should stop producing.</summary>
    public string? Forget { get; init; }
    /// <summary>Unlearning: conversations whose answers it should keep (grad-diff's retain term; optional for npo).</summary>
    public string? Retain { get; init; }
    /// <summary>Unlearning: grad-ascent, grad-diff or npo (<see cref="UnlearningObjective"/>).</summary>
    public string UnlearnMethod { get; init; } = "npo";
    /// <summary>NPO's inverse temperature β.</summary>
    public double NpoBeta { get; init; } = 0.1;
    /// <summary>Weight of the retain set's mean per-token cross-entropy in grad-diff (and npo with retain data).</summary>
    public double RetainWeight { get; init; } = 1.0;
    /// <summary>Unlearning: stop at an evaluation point once the forget set's mean per-token NLL exceeds this (0 = off).</summary>
    public double ForgetTargetLoss { get; init; }
    /// <summary>distill: the teacher model (a Hugging Face directory or GGUF), sharing the student's tokenizer.</summary>
    public string? Teacher { get; init; }
    /// <summary>distill: a PEFT adapter applied to the teacher.</summary>
    public string? TeacherAdapter { get; init; }
    /// <summary>distill: worker threads of the live teacher's own pool (0 = it shares the trainer's threads).</summary>
    public int TeacherThreads { get; init; }
    /// <summary>distill: a teacher cache (hone distill cache) instead of a live --teacher: its top-K ids and log-probs per target position.</summary>
    public string? TeacherCache { get; init; }
    /// <summary>distill: weight α of the distillation term: loss = (1 − α)·CE + α·T²·KL.</summary>
    public double KdRatio { get; init; } = 0.5;
    /// <summary>distill: temperature T of both distributions in the distillation term.</summary>
    public double KdTemperature { get; init; } = 2;
    /// <summary>distill: which KL divergence (forward KL(teacher ‖ student), reverse, or their mean).</summary>
    public DistillationDivergence KdLoss { get; init; } = DistillationDivergence.Forward;
    public DistillationSettings DistillationSettings => new((float)KdRatio, (float)KdTemperature, KdLoss);

    public AdapterSettings AdapterSettings => new(LoraR, LoraAlpha, LoraDropout, LoraTargets, UseRslora, AdapterKind);
    public bool UsesAdapters => Setup.UsesAdapters;
    /// <summary>The setup these options train with (what trains, the adapter settings and kind, the freeze settings).</summary>
    public TrainingSetup Setup => new(Method, AdapterSettings, new FreezeSettings(FreezeTrainableLayers, FreezeTrainableModules, FreezeExtraModules),
        CheckpointActivations, Seed, RouterAuxLossCoef, RouterZLossCoef,
        LoraExperts.Count > 0 ? new LoraMixtureSettings(LoraExperts, LoraExpertsTopK, LoraExpertsTrain) : null, ExpertChoiceCapacity);

    /// <summary>Modules <see cref="FreezeTrainableModules"/> may name, and those <see cref="FreezeExtraModules"/> may.</summary>
    public static readonly IReadOnlyList<string> FreezeModuleNames =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "self_attn", "mlp", "norm"];
    public static readonly IReadOnlyList<string> FreezeExtraModuleNames = ["embed_tokens", "lm_head", "norm"];

    /// <summary>Largest batch_size × seq_len: the micro-batch's token and target arrays and the activation rows are
    /// indexed with 32-bit integers (every element of an [N, widest] buffer).</summary>
    public const long MaxTokensPerMicroBatch = 1L << 24;

    /// <summary>Check every option on its own (the limits of <see cref="Settings"/>) and together, before any file is
    /// opened. Model-dependent limits are checked by <see cref="ValidateFor"/> once config.json is read.</summary>
    public TrainOptions Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(Model.Length > 0, "a model is required: hone train MODEL, -m MODEL, or model: in the recipe");
        if (Stage == TrainingStage.Unlearn) ValidateUnlearning();
        else
        {
            Require(Data.Length > 0, "training data is required: --data FILE, or data: (dataset:) in the recipe");
            Require(Forget == null && Retain == null, "forget and retain data (--forget, --retain) belong to --stage unlearn");
        }
        Require(Out.Length > 0, "an output directory is required: --out DIR, or out: (output_dir:) in the recipe");
        foreach (var setting in Settings) setting.Check(this);
        Require(Epochs > 0 || MaxSteps > 0, "epochs or max_steps must be positive");
        Require((long)BatchSize * SeqLen <= MaxTokensPerMicroBatch,
            $"batch_size × seq_len is {(long)BatchSize * SeqLen:N0} tokens; at most {MaxTokensPerMicroBatch:N0} fit one micro-batch's buffers");
        foreach (var m in FreezeTrainableModules)
            Require(FreezeModuleNames.Contains(m), $"freeze_trainable_modules (--freeze-trainable-modules): unknown module '{m}'{Spelling.Suggestion(m, FreezeModuleNames)}; known: {string.Join(", ", FreezeModuleNames)}");
        foreach (var m in FreezeExtraModules)
            Require(FreezeExtraModuleNames.Contains(m), $"freeze_extra_modules (--freeze-extra-modules): unknown module '{m}'{Spelling.Suggestion(m, FreezeExtraModuleNames)}; known: {string.Join(", ", FreezeExtraModuleNames)}");
        _ = AdapterSettings.ResolvedTargets;
        Require(AdapterKind == null || UsesAdapters, $"adapter_kind {AdapterKind} needs method lora or qlora, not {Method.ToString().ToLowerInvariant()}");
        _ = Setup.AdapterKind; // an unknown kind, or one that contradicts the method, fails here
        if (LoraExperts.Count > 0)
        {
            Require(Method == TrainingMethod.Lora && AdapterKind is null or "lora", "lora_experts (--lora-experts) trains a mixture of LoRA adapters: it needs method lora");
            Require(LoraExperts.Count >= 2, $"lora_experts (--lora-experts) names {LoraExperts.Count} adapter; a mixture needs at least 2");
            Require(LoraExpertsTopK <= LoraExperts.Count, $"lora_experts_top_k {LoraExpertsTopK} is more than the {LoraExperts.Count} experts");
        }
        if (Stage == TrainingStage.Distill)
        {
            Require(Teacher != null || TeacherCache != null,
                "stage distill needs a teacher: --teacher MODEL (teacher: in the recipe), or a cache of one: --teacher-cache FILE (made by hone distill cache)");
            Require(Teacher == null || TeacherCache == null, "give --teacher or --teacher-cache, not both");
            Require(TeacherAdapter == null || Teacher != null, "teacher_adapter (--teacher-adapter) applies to --teacher; a --teacher-cache was built with its adapter (hone distill cache --adapter)");
            Require(TeacherThreads == 0 || Teacher != null, "teacher_threads (--teacher-threads) applies to a live --teacher; a --teacher-cache runs no teacher");
        }
        else
            Require(Teacher == null && TeacherAdapter == null && TeacherCache == null && TeacherThreads == 0 && KdRatio == 0.5 && KdTemperature == 2 && KdLoss == DistillationDivergence.Forward,
                $"teacher, teacher_adapter, teacher_threads, teacher_cache and the kd_ settings apply to --stage distill; the stage is {Stage.ToString().ToLowerInvariant()}");
        return this;
    }

    /// <summary>Unlearning's own checks: a forget set, a retain set where the method needs one, rows that are whole
    /// examples (NPO's likelihood is per example), and none of the options that only sft and cpt read.</summary>
    void ValidateUnlearning()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(Forget != null, "--stage unlearn needs the forget set: --forget FILE (conversations, as for sft), or forget: in the recipe");
        Require(Data.Length == 0, "--stage unlearn reads --forget and --retain, not --data");
        Require(UnlearnMethod != "grad-diff" || Retain != null, "unlearn_method grad-diff needs the retain set: --retain FILE");
        Require(Packing != true, "--stage unlearn trains on whole examples, one per row (NPO's likelihood is per example): leave packing off");
        Require(ValData == null && ReplayData == null, "--stage unlearn evaluates on the forget and retain sets; val_data and replay_data do not apply");
        Require(Resume == null, "--stage unlearn does not resume (its runs are short): start again");
        Require(Retain == null || RetainWeight > 0, "retain_weight is 0: drop --retain, or give the retain term a weight");
    }

    /// <summary>The limits that depend on the model, checked right after its config is read and before its weights
    /// load: the context, the freeze layer count, the QLoRA block size, and a lower bound of the memory the run needs.</summary>
    public void ValidateFor(ModelConfig c, string model)
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException($"{model}: {message}"); }
        if (!c.IsMixtureOfExperts && LoraExperts.Count == 0)
            Require(RouterAuxLossCoef is null or 0 && RouterZLossCoef == 0, "router_aux_loss_coef and router_z_loss_coef apply to mixture-of-experts models and LoRA mixtures; this one is dense");
        Require(!(c.IsMixtureOfExperts && LoraExperts.Count > 0), "a LoRA mixture (--lora-experts) over a mixture-of-experts model is not supported");
        Require(ExpertChoiceCapacity == 0 || c.IsMixtureOfExperts, "expert_choice_capacity applies to mixture-of-experts models; this one is dense");
        Require(ExpertChoiceCapacity <= c.Experts, $"expert_choice_capacity {ExpertChoiceCapacity} is more than the model's {c.Experts} experts (at most every expert takes every token)");
        Require(SeqLen <= c.MaxPositions, $"seq_len (--seq-len) {SeqLen} is more than the model's context of {c.MaxPositions} tokens");
        if (Method == TrainingMethod.Freeze)
        {
            Require(Math.Abs((long)FreezeTrainableLayers) <= c.Layers,
                $"freeze_trainable_layers (--freeze-trainable-layers) {FreezeTrainableLayers} is more than the model's {c.Layers} layers");
            Require(FreezeTrainableLayers != 0 || FreezeExtraModules.Count > 0, "freeze_trainable_layers is 0 and no extra modules train: nothing would train");
        }
        if (Method == TrainingMethod.QLora)
        {
            var type = TensorTypes.Parse(QloraType);
            int block = type.Traits().BlockSize;
            foreach (var (width, what) in new[] { (c.HiddenSize, "hidden size"), (c.IntermediateSize, "feed-forward size"), (c.QueryDim, "attention width"),
                         (c.ExpertFeedForwardSize, "expert feed-forward size"), (c.SharedExpertFeedForwardSize, "shared expert feed-forward size") })
                Require(width % block == 0, $"qlora_type {QloraType} stores rows in blocks of {block}, and the model's {what} {width} is not a multiple of it (use q8_0 or q4_0, blocks of 32)");
        }
        long need = ActivationLowerBound(c);
        long available = MemoryBudget.AvailableBytes;
        Require(need <= available,
            $"batch_size {BatchSize} × seq_len {SeqLen} needs at least {MemoryBudget.Text(need)} of activations for this model, more than the {MemoryBudget.Text(available)} this machine has; lower batch_size or seq_len (or use --checkpoint-activations)");
    }

    /// <summary>Bytes of activations the run certainly allocates: each layer's input and mid residual [N, D] (kept even
    /// with activation checkpointing), plus, without it, Q, attention output [N, H·Dh], K, V [N, Hkv·Dh] and the MLP's
    /// gate and up [N, F] per layer, and the loss chunk's logits. The real arena holds more (work buffers).</summary>
    public long ActivationLowerBound(ModelConfig c)
    {
        try
        {
            checked
            {
                long n = (long)BatchSize * SeqLen;
                long perLayer = 2L * c.HiddenSize;
                long feedForward = c.IsMixtureOfExperts ? Math.Max(c.IntermediateSize, (long)c.ExpertsPerToken * (c.ExpertFeedForwardSize + c.HiddenSize)) : c.IntermediateSize;
                if (!CheckpointActivations) perLayer += 2L * c.QueryDim + 2L * c.KvDim + 2L * feedForward;
                return 4 * (n * perLayer * c.Layers + 256L * c.VocabSize);
            }
        }
        catch (OverflowException) { return long.MaxValue; }
    }
}
