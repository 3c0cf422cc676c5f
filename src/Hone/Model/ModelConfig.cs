using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Model;

/// <summary>How queries and keys are normalized after their projection, before RoPE: not at all; per head with a [Dh]
/// weight (Qwen3, Qwen3-MoE); or over the whole projection with [H·Dh] and [Hkv·Dh] weights (OLMoE).</summary>
public enum QkNorm { None, PerHead, Whole }

/// <summary>
/// The architecture of a Llama-family model, normalized from a Hugging Face config.json (llama, mistral, qwen2, and the
/// mixtures of experts mixtral and qwen2_moe) or GGUF metadata (llama, qwen2).
/// Dimension glossary used throughout the model code:
/// V vocabulary, D hidden size, F feed-forward size, L layers, H query heads, Hkv key/value heads, Dh head dim;
/// in mixture-of-experts layers E experts, k experts per token, Fe an expert's feed-forward size, Fs the shared expert's.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>"llama", "mistral", "qwen2", "mixtral" or "qwen2_moe".</summary>
    public required string Architecture { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public int RotaryDims { get; init; }
    public double RopeTheta { get; init; } = 10000;
    public double RopeLinearFactor { get; init; } = 1;
    public Llama3RopeScaling? RopeLlama3 { get; init; }
    public float RmsNormEps { get; init; } = 1e-5f;
    public int MaxPositions { get; init; } = 2048;
    public bool TiedEmbeddings { get; init; }
    /// <summary>Bias on the q, k and v projections (qwen2 always; llama when attention_bias).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Mistral's sliding attention window, when the checkpoint declares one.</summary>
    public int? SlidingWindow { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    /// <summary>Pairing of RoPE dimensions, which depends on the file format (see <see cref="RopeLayout"/>).</summary>
    public RopeLayout RopeLayout { get; init; } = RopeLayout.Halves;
    /// <summary>RMSNorm of the queries and keys after their projection, before RoPE (Qwen3: per head; OLMoE: whole).</summary>
    public QkNorm QkNorm { get; init; }
    /// <summary>Every layer carries two residual shortcut matrices [D, D] (attention and MLP: residual' = residual·Sᵀ +
    /// block(x)), written by per-layer SliceGPT (<c>hone prune width --rotation per-layer</c>). Hone's own extension,
    /// declared by config.json's "hone_residual_shortcuts" and GGUF's "hone.residual_shortcuts" (the value is the
    /// format's version, <see cref="ResidualShortcutsVersion"/>); llama.cpp and transformers cannot run such a model.</summary>
    public bool ResidualShortcuts { get; init; }
    public const int ResidualShortcutsVersion = 1;
    public const string ResidualShortcutsKey = "hone_residual_shortcuts", ResidualShortcutsGgufKey = "hone.residual_shortcuts";

    /// <summary>The declared version of the residual shortcuts, checked: false when absent, true for a version this
    /// Hone reads, else a one-line error naming the key.</summary>
    static bool ReadShortcutsVersion(long? version, string path, string key) => version switch
    {
        null => false,
        ResidualShortcutsVersion => true,
        _ => throw new ModelFormatException(path, $"residual shortcuts of version {version}: this Hone reads version {ResidualShortcutsVersion}", key),
    };

    /// <summary>Experts in each mixture-of-experts layer (E); 0 for a dense model.</summary>
    public int Experts { get; init; }
    /// <summary>Experts each token is routed to (k: num_experts_per_tok).</summary>
    public int ExpertsPerToken { get; init; }
    /// <summary>An expert's feed-forward size (Fe): Mixtral's intermediate_size, Qwen2-MoE's moe_intermediate_size.</summary>
    public int ExpertFeedForwardSize { get; init; }
    /// <summary>The shared expert's feed-forward size (Fs: Qwen2-MoE's shared_expert_intermediate_size); 0 for none.</summary>
    public int SharedExpertFeedForwardSize { get; init; }
    /// <summary>The k selected routing probabilities are divided by their sum (Mixtral always; Qwen2-MoE's
    /// norm_topk_prob); otherwise each expert's output is weighted by its softmax probability over all E.</summary>
    public bool NormalizeTopK { get; init; }
    /// <summary>Layer l is a mixture-of-experts layer when (l + 1) is a multiple of this (decoder_sparse_step) and l is
    /// not in <see cref="DenseLayers"/> (mlp_only_layers); the others have a dense MLP of <see cref="IntermediateSize"/>.</summary>
    public int SparseStep { get; init; } = 1;
    /// <summary>mlp_only_layers as given. Record equality compares this list by reference: compare two
    /// configs' lists with SequenceEqual.</summary>
    public IReadOnlyList<int> DenseLayers { get; init; } = [];
    /// <summary>router_aux_loss_coef as the checkpoint declares it (the load-balancing loss's coefficient in training).</summary>
    public double RouterAuxLossCoef { get; init; }

    public bool IsMixtureOfExperts => Experts > 0;
    /// <summary>The widest feed-forward activation a row writes: F, an expert's Fe or the shared expert's Fs.</summary>
    public int FeedForwardWidth => Math.Max(IntermediateSize, Math.Max(ExpertFeedForwardSize, SharedExpertFeedForwardSize));
    public bool IsSparseLayer(int layer) => Experts > 0 && (layer + 1) % SparseStep == 0 && !DenseLayers.Contains(layer);

    public int QueryDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    public static readonly string[] SupportedArchitectures = ["llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe"];

    /// <summary>Throws when llama.cpp's GGUF architectures cannot express this model: its qwen2moe makes every layer
    /// sparse and never renormalizes the chosen experts' weights.</summary>
    public void RequireGgufExpressible()
    {
        if (Architecture == "qwen3_moe")
        {
            if (!NormalizeTopK)
                throw new NotSupportedException("a qwen3_moe model without norm_topk_prob cannot be written as GGUF: llama.cpp's qwen3moe renormalizes the chosen experts' weights (write a Hugging Face directory)");
            if (Enumerable.Range(0, Layers).Any(l => !IsSparseLayer(l)))
                throw new NotSupportedException("a qwen3_moe model with dense layers (mlp_only_layers, decoder_sparse_step) cannot be written as GGUF: llama.cpp's qwen3moe makes every layer sparse (write a Hugging Face directory)");
            return;
        }
        if (Architecture == "olmoe" && NormalizeTopK)
            throw new NotSupportedException("an olmoe model with norm_topk_prob cannot be written as GGUF: llama.cpp's olmoe does not renormalize the chosen experts' weights (write a Hugging Face directory)");
        if (Architecture == "olmoe" && KvHeads != Heads)
            throw new NotSupportedException("an olmoe model with grouped-query attention cannot be written as GGUF: llama.cpp's olmoe expects as many key/value heads as query heads (its k_norm spans the hidden size); write a Hugging Face directory");
        if (Architecture != "qwen2_moe") return;
        if (NormalizeTopK)
            throw new NotSupportedException("a qwen2_moe model with norm_topk_prob cannot be written as GGUF: llama.cpp's qwen2moe does not renormalize the chosen experts' weights (write a Hugging Face directory)");
        if (Enumerable.Range(0, Layers).Any(l => !IsSparseLayer(l)))
            throw new NotSupportedException("a qwen2_moe model with dense layers (mlp_only_layers, decoder_sparse_step) cannot be written as GGUF: llama.cpp's qwen2moe makes every layer sparse (write a Hugging Face directory)");
    }

    // Upper bounds far above every released model (vocabularies reach ~2^18, hidden sizes 2^14, layers 2^7, contexts
    // 2^24) that keep every size computed from a config inside 64-bit arithmetic: a value beyond them is corruption.
    public const int MaxVocabulary = 1 << 24, MaxHiddenSize = 1 << 18, MaxIntermediateSize = 1 << 20, MaxLayers = 1 << 12,
        MaxHeads = 1 << 12, MaxHeadDim = 1 << 12, MaxContext = 1 << 28, MaxExperts = 1 << 12;

    /// <summary>Check every value and their consistency; throws naming the file and the offending key.</summary>
    /// <param name="keyNames">the file's own names for the Hugging Face keys used here (GGUF metadata keys); a key
    /// missing from the map is named as Hugging Face names it</param>
    public ModelConfig Validate(string source, IReadOnlyDictionary<string, string>? keyNames = null)
    {
        string Key(string name) => keyNames?.GetValueOrDefault(name) ?? name;
        void Range(int v, int max, string name)
        {
            if (v <= 0) throw new ModelFormatException(source, $"must be positive, got {v}", Key(name));
            if (v > max) throw new ModelFormatException(source, $"{v} is beyond any real model (at most {max}): the file is corrupt", Key(name));
        }
        void PositiveFinite(double v, string name)
        {
            if (!(v > 0) || !double.IsFinite(v)) throw new ModelFormatException(source, $"must be a positive finite number, got {v}", Key(name));
        }
        Range(VocabSize, MaxVocabulary, "vocab_size"); Range(HiddenSize, MaxHiddenSize, "hidden_size");
        Range(IntermediateSize, MaxIntermediateSize, "intermediate_size"); Range(Layers, MaxLayers, "num_hidden_layers");
        Range(Heads, MaxHeads, "num_attention_heads"); Range(KvHeads, MaxHeads, "num_key_value_heads");
        Range(HeadDim, MaxHeadDim, "head_dim"); Range(MaxPositions, MaxContext, "max_position_embeddings");
        if (Heads % KvHeads != 0)
            throw new ModelFormatException(source, $"{Heads} attention heads are not a multiple of {KvHeads} key/value heads", Key("num_key_value_heads"));
        if (RotaryDims <= 0 || RotaryDims > HeadDim || RotaryDims % 2 != 0)
            throw new ModelFormatException(source, $"rotary dimensions {RotaryDims} must be even and at most head_dim {HeadDim}", Key("rope"));
        PositiveFinite(RmsNormEps, "rms_norm_eps");
        PositiveFinite(RopeTheta, "rope_theta");
        PositiveFinite(RopeLinearFactor, "rope_scaling.factor");
        if (RopeLlama3 is { } l3)
        {
            PositiveFinite(l3.Factor, "rope_scaling.factor");
            PositiveFinite(l3.LowFrequencyFactor, "rope_scaling.low_freq_factor");
            PositiveFinite(l3.HighFrequencyFactor, "rope_scaling.high_freq_factor");
            if (!(l3.HighFrequencyFactor > l3.LowFrequencyFactor))
                throw new ModelFormatException(source, $"high_freq_factor {l3.HighFrequencyFactor} must be above low_freq_factor {l3.LowFrequencyFactor} (llama3 rope scaling divides by their difference)", Key("rope_scaling.high_freq_factor"));
            Range(l3.OriginalContextLength, MaxContext, "rope_scaling.original_max_position_embeddings");
        }
        if (SlidingWindow is int window) Range(window, MaxContext, "sliding_window");
        if (Experts != 0)
        {
            string expertsKey = Architecture == "mixtral" ? "num_local_experts" : "num_experts";
            Range(Experts, MaxExperts, expertsKey);
            if (Experts < 2) throw new ModelFormatException(source, $"a mixture of experts needs at least 2 experts, got {Experts}", Key(expertsKey));
            if (ExpertsPerToken <= 0 || ExpertsPerToken > Experts)
                throw new ModelFormatException(source, $"{ExpertsPerToken} experts per token, but a layer has {Experts} experts", Key("num_experts_per_tok"));
            Range(ExpertFeedForwardSize, MaxIntermediateSize, Architecture == "mixtral" ? "intermediate_size" : "moe_intermediate_size");
            if (SharedExpertFeedForwardSize != 0) Range(SharedExpertFeedForwardSize, MaxIntermediateSize, "shared_expert_intermediate_size");
            Range(SparseStep, MaxLayers, "decoder_sparse_step");
            foreach (int l in DenseLayers)
                if (l < 0 || l >= Layers) throw new ModelFormatException(source, $"layer {l} is not one of the model's {Layers} layers", Key("mlp_only_layers"));
            if (!(RouterAuxLossCoef >= 0) || !double.IsFinite(RouterAuxLossCoef))
                throw new ModelFormatException(source, $"must be a non-negative finite number, got {RouterAuxLossCoef}", Key("router_aux_loss_coef"));
        }
        return this;
    }

    /// <summary>Parameter count of the weights this config implies (head counted once when tied).</summary>
    public long ParameterCount
    {
        get
        {
            checked
            {
                long d = HiddenSize, perLayer = d * QueryDim + 2 * d * KvDim + QueryDim * d + 2 * d;
                if (AttentionBias) perLayer += QueryDim + 2 * KvDim;
                if (ResidualShortcuts) perLayer += 2 * d * d;
                long total = (long)VocabSize * d * (TiedEmbeddings ? 1 : 2) + Layers * perLayer + d;
                for (int l = 0; l < Layers; l++) total += FeedForwardParameters(l, active: false);
                return total;
            }
        }
    }

    /// <summary>Parameters a token uses per forward pass: all of a dense model's; in a mixture of experts, the router, k
    /// experts and the shared expert of each sparse layer (the embedding counted once, as a row read).</summary>
    public long ActiveParameterCount
    {
        get
        {
            checked
            {
                long total = ParameterCount;
                for (int l = 0; l < Layers; l++) total += FeedForwardParameters(l, active: true) - FeedForwardParameters(l, active: false);
                return total;
            }
        }
    }

    /// <summary>Weights of one layer's matrices a token multiplies with (attention, and the dense MLP or the router, k
    /// experts and the shared expert): the FLOPs of a token in that layer are twice this.</summary>
    public long LayerMatrixParameters(int layer, bool active = true)
    {
        checked { return 2L * HiddenSize * QueryDim + 2L * HiddenSize * KvDim + FeedForwardParameters(layer, active) + (ResidualShortcuts ? 2L * HiddenSize * HiddenSize : 0); }
    }

    long FeedForwardParameters(int layer, bool active)
    {
        checked
        {
            long d = HiddenSize;
            if (!IsSparseLayer(layer)) return 3 * d * IntermediateSize;
            long experts = active ? ExpertsPerToken : Experts;
            long shared = SharedExpertFeedForwardSize > 0 ? 3 * d * SharedExpertFeedForwardSize + d : 0;
            return d * Experts + experts * 3 * d * ExpertFeedForwardSize + shared;
        }
    }

    // ---- Hugging Face config.json -----------------------------------------------------------------

    public static ModelConfig FromHuggingFaceJson(string path)
    {
        var root = StrictJson.ParseFile(path);
        if (root is not JsonObject o) throw new ModelFormatException(path, "config.json is not a JSON object");
        return FromHuggingFace(o, path);
    }

    public static ModelConfig FromHuggingFace(JsonObject o, string path)
    {
        string modelType = Str(o, "model_type", path) ?? throw new ModelFormatException(path, "missing model_type", "model_type");
        if (!SupportedArchitectures.Contains(modelType))
            throw new ModelFormatException(path, $"unsupported model_type '{modelType}' (supported: {string.Join(", ", SupportedArchitectures)})", "model_type");
        string act = Str(o, "hidden_act", path) ?? "silu";
        if (act != "silu") throw new ModelFormatException(path, $"unsupported hidden_act '{act}' (only silu)", "hidden_act");
        if (Bool(o, "mlp_bias", path) == true) throw new ModelFormatException(path, "mlp_bias is not supported", "mlp_bias");
        int hidden = Int(o, "hidden_size", path, required: true)!.Value;
        int heads = Int(o, "num_attention_heads", path, required: true)!.Value;
        if (heads <= 0) throw new ModelFormatException(path, $"must be positive, got {heads}", "num_attention_heads");
        int? explicitHeadDim = Int(o, "head_dim", path);
        if (explicitHeadDim == null && hidden % heads != 0)
            throw new ModelFormatException(path, $"hidden_size {hidden} is not a multiple of {heads} heads and there is no head_dim", "num_attention_heads");
        int headDim = explicitHeadDim ?? hidden / heads;
        double linear = 1;
        Llama3RopeScaling? llama3 = null;
        switch (o["rope_scaling"])
        {
            case null: break; // absent or JSON null
            case JsonObject scaling:
            {
                string type = Str(scaling, "rope_type", path, "rope_scaling.") ?? Str(scaling, "type", path, "rope_scaling.") ?? "default";
                double Required(string key) => Num(scaling, key, path, "rope_scaling.")
                    ?? throw new ModelFormatException(path, $"required for {type} rope scaling", $"rope_scaling.{key}");
                switch (type)
                {
                    case "default": break;
                    case "linear": linear = Required("factor"); break;
                    case "llama3":
                        llama3 = new Llama3RopeScaling(Required("factor"), Required("low_freq_factor"), Required("high_freq_factor"),
                            Int(scaling, "original_max_position_embeddings", path, required: true, prefix: "rope_scaling.")!.Value);
                        break;
                    default: throw new ModelFormatException(path, $"unsupported rope_scaling type '{type}' (supported: linear, llama3)", "rope_scaling");
                }
                break;
            }
            case var other: throw new ModelFormatException(path, $"expected an object or null, found {other.ToJsonString()}", "rope_scaling");
        }
        double partial = Num(o, "partial_rotary_factor", path) ?? 1.0;
        if (!(partial > 0 && partial <= 1)) throw new ModelFormatException(path, $"must be in (0, 1], got {partial}", "partial_rotary_factor");
        int? sliding = modelType switch
        {
            "mistral" or "mixtral" => Int(o, "sliding_window", path),
            "qwen2" or "qwen2_moe" when Bool(o, "use_sliding_window", path) == true => Int(o, "sliding_window", path),
            _ => null,
        };
        int intermediate = Int(o, "intermediate_size", path, required: true)!.Value;
        int experts = 0, perToken = 0, expertSize = 0, sharedSize = 0, sparseStep = 1;
        bool normalizeTopK = false;
        int[] denseLayers = [];
        double auxLoss = 0;
        if (modelType == "mixtral")
        {
            experts = Int(o, "num_local_experts", path, required: true)!.Value;
            perToken = Int(o, "num_experts_per_tok", path, required: true)!.Value;
            expertSize = intermediate;
            normalizeTopK = true;
            auxLoss = Num(o, "router_aux_loss_coef", path) ?? 0.001;
            if (Num(o, "router_jitter_noise", path) is double jitter && jitter != 0)
                throw new ModelFormatException(path, $"router jitter noise {jitter} is not supported (it applies only in training; set 0)", "router_jitter_noise");
        }
        else if (modelType is "qwen2_moe" or "qwen3_moe")
        {
            experts = Int(o, "num_experts", path, required: true)!.Value;
            perToken = Int(o, "num_experts_per_tok", path, required: true)!.Value;
            expertSize = Int(o, "moe_intermediate_size", path, required: true)!.Value;
            sharedSize = modelType == "qwen2_moe" ? Int(o, "shared_expert_intermediate_size", path, required: true)!.Value : 0;
            normalizeTopK = Bool(o, "norm_topk_prob", path) ?? false;
            sparseStep = Int(o, "decoder_sparse_step", path) ?? 1;
            denseLayers = IntList(o, "mlp_only_layers", path);
            auxLoss = Num(o, "router_aux_loss_coef", path) ?? 0.001;
            if (experts == 0) throw new ModelFormatException(path, $"must be positive for {modelType} (a model without experts is {modelType[..5]})", "num_experts");
        }
        else if (modelType == "olmoe")
        {
            experts = Int(o, "num_experts", path, required: true)!.Value;
            perToken = Int(o, "num_experts_per_tok", path, required: true)!.Value;
            expertSize = intermediate;
            normalizeTopK = Bool(o, "norm_topk_prob", path) ?? false;
            auxLoss = Num(o, "router_aux_loss_coef", path) ?? 0.01;
            if (Num(o, "clip_qkv", path) is double clip)
                throw new ModelFormatException(path, $"clip_qkv {clip} is not supported (set null)", "clip_qkv");
        }
        var qkNorm = modelType switch { "qwen3" or "qwen3_moe" => QkNorm.PerHead, "olmoe" => QkNorm.Whole, _ => QkNorm.None };
        return new ModelConfig
        {
            Architecture = modelType,
            VocabSize = Int(o, "vocab_size", path, required: true)!.Value,
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            Layers = Int(o, "num_hidden_layers", path, required: true)!.Value,
            Heads = heads,
            KvHeads = Int(o, "num_key_value_heads", path) ?? heads,
            HeadDim = headDim,
            RotaryDims = (int)(headDim * partial),
            RopeTheta = Num(o, "rope_theta", path) ?? 10000,
            RopeLinearFactor = linear,
            RopeLlama3 = llama3,
            RmsNormEps = (float)(Num(o, "rms_norm_eps", path) ?? 1e-6),
            MaxPositions = Int(o, "max_position_embeddings", path) ?? 2048,
            TiedEmbeddings = Bool(o, "tie_word_embeddings", path) ?? false,
            AttentionBias = modelType is "qwen2" or "qwen2_moe" || (Bool(o, "attention_bias", path) ?? false),
            QkNorm = qkNorm,
            SlidingWindow = sliding,
            BosTokenId = FirstInt(o, "bos_token_id"),
            EosTokenId = FirstInt(o, "eos_token_id"),
            RopeLayout = RopeLayout.Halves,
            Experts = experts, ExpertsPerToken = perToken, ExpertFeedForwardSize = expertSize, SharedExpertFeedForwardSize = sharedSize,
            NormalizeTopK = normalizeTopK, SparseStep = sparseStep, DenseLayers = denseLayers, RouterAuxLossCoef = auxLoss,
            ResidualShortcuts = ReadShortcutsVersion(o[ResidualShortcutsKey] is null ? null : Int(o, ResidualShortcutsKey, path), path, ResidualShortcutsKey),
        }.Validate(path);
    }

    /// <summary>config.json contents for this architecture (what transformers would write for it).</summary>
    public JsonObject ToHuggingFaceJson(string torchDtype = "float32")
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture switch
            {
                "qwen2" => "Qwen2ForCausalLM", "mistral" => "MistralForCausalLM", "mixtral" => "MixtralForCausalLM",
                "qwen2_moe" => "Qwen2MoeForCausalLM", "qwen3" => "Qwen3ForCausalLM", "qwen3_moe" => "Qwen3MoeForCausalLM",
                "olmoe" => "OlmoeForCausalLM", _ => "LlamaForCausalLM",
            }),
            ["model_type"] = Architecture,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = MaxPositions,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = TiedEmbeddings,
            ["torch_dtype"] = torchDtype,
        };
        if (Architecture is "llama" or "qwen3" or "qwen3_moe" or "olmoe") { o["attention_bias"] = AttentionBias; o["mlp_bias"] = false; }
        if (RotaryDims != HeadDim) o["partial_rotary_factor"] = (double)RotaryDims / HeadDim;
        if (RopeLlama3 != null)
            o["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "llama3", ["factor"] = RopeLlama3.Factor, ["low_freq_factor"] = RopeLlama3.LowFrequencyFactor,
                ["high_freq_factor"] = RopeLlama3.HighFrequencyFactor, ["original_max_position_embeddings"] = RopeLlama3.OriginalContextLength,
            };
        else if (RopeLinearFactor != 1) o["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = RopeLinearFactor };
        if (SlidingWindow is int w) o["sliding_window"] = w;
        if (ResidualShortcuts) o[ResidualShortcutsKey] = ResidualShortcutsVersion;
        if (BosTokenId is int b) o["bos_token_id"] = b;
        if (EosTokenId is int e) o["eos_token_id"] = e;
        if (Architecture == "mixtral")
        {
            o["num_local_experts"] = Experts; o["num_experts_per_tok"] = ExpertsPerToken; o["router_aux_loss_coef"] = RouterAuxLossCoef;
        }
        else if (Architecture == "qwen2_moe")
        {
            o["num_experts"] = Experts; o["num_experts_per_tok"] = ExpertsPerToken; o["moe_intermediate_size"] = ExpertFeedForwardSize;
            o["shared_expert_intermediate_size"] = SharedExpertFeedForwardSize; o["norm_topk_prob"] = NormalizeTopK;
            o["decoder_sparse_step"] = SparseStep; o["mlp_only_layers"] = new JsonArray(DenseLayers.Select(l => (JsonNode)l).ToArray());
            o["router_aux_loss_coef"] = RouterAuxLossCoef;
        }
        else if (Architecture == "qwen3_moe")
        {
            o["num_experts"] = Experts; o["num_experts_per_tok"] = ExpertsPerToken; o["moe_intermediate_size"] = ExpertFeedForwardSize;
            o["norm_topk_prob"] = NormalizeTopK; o["decoder_sparse_step"] = SparseStep;
            o["mlp_only_layers"] = new JsonArray(DenseLayers.Select(l => (JsonNode)l).ToArray()); o["router_aux_loss_coef"] = RouterAuxLossCoef;
        }
        else if (Architecture == "olmoe")
        {
            o["num_experts"] = Experts; o["num_experts_per_tok"] = ExpertsPerToken; o["norm_topk_prob"] = NormalizeTopK;
            o["router_aux_loss_coef"] = RouterAuxLossCoef; o["clip_qkv"] = null;
        }
        return o;
    }

    // ---- GGUF metadata ------------------------------------------------------------------------------

    /// <summary>The GGUF architecture name llama.cpp uses for this config (mistral and mixtral models are "llama" in GGUF).</summary>
    public string GgufArchitecture => Architecture switch
    {
        "qwen2" => "qwen2", "qwen2_moe" => "qwen2moe", "qwen3" => "qwen3", "qwen3_moe" => "qwen3moe", "olmoe" => "olmoe", _ => "llama",
    };

    public static ModelConfig FromGguf(GgufFile gguf, long? vocabFromTensors, bool hasOutputTensor, bool hasQueryBias)
    {
        string path = gguf.Path;
        string arch = gguf.GetString("general.architecture") ?? throw new ModelFormatException(path, "missing general.architecture", "general.architecture");
        if (arch is not ("llama" or "qwen2" or "qwen2moe" or "qwen3" or "qwen3moe" or "olmoe"))
            throw new ModelFormatException(path, $"unsupported architecture '{arch}' (supported: llama, qwen2, qwen2moe, qwen3, qwen3moe, olmoe)", "general.architecture");
        // Out-of-int values are named here; the ranges of in-int ones are checked by Validate, under these names.
        int ToInt(long v, string key) => v is >= int.MinValue and <= int.MaxValue ? (int)v
            : throw new ModelFormatException(path, $"{v} is beyond any real model: the file is corrupt", key);
        int Req(string key) => ToInt(gguf.RequireInteger($"{arch}.{key}"), $"{arch}.{key}");
        int? Opt(string key) => gguf.GetInteger($"{arch}.{key}") is long v ? ToInt(v, $"{arch}.{key}") : null;
        double RequireNumber(string key) => gguf.GetNumber($"{arch}.{key}")
            ?? throw new ModelFormatException(path, "required metadata key is missing (llama.cpp requires it too)", $"{arch}.{key}");
        int hidden = Req("embedding_length");
        int heads = Req("attention.head_count");
        if (heads <= 0) throw new ModelFormatException(path, $"must be positive, got {heads}", $"{arch}.attention.head_count");
        int? keyLength = Opt("attention.key_length");
        if (keyLength == null && hidden % heads != 0)
            throw new ModelFormatException(path, $"embedding_length {hidden} is not a multiple of {heads} heads and there is no attention.key_length", $"{arch}.attention.head_count");
        int headDim = keyLength ?? hidden / heads;
        string scaling = gguf.GetString($"{arch}.rope.scaling.type") ?? "none";
        double linear = 1;
        switch (scaling)
        {
            case "none": break;
            case "linear":
                linear = gguf.GetNumber($"{arch}.rope.scaling.factor") ?? 0;
                if (linear == 0) linear = 1; // llama.cpp reads a factor of 0 (or none) as no scaling
                break;
            default: throw new ModelFormatException(path, $"unsupported rope scaling '{scaling}' (supported: none, linear)", $"{arch}.rope.scaling.type");
        }
        long vocab = gguf.Get("tokenizer.ggml.tokens") is { } tokens ? tokens.AsArray(path, "tokenizer.ggml.tokens").Items.Count
            : vocabFromTensors ?? Opt("vocab_size") ?? throw new ModelFormatException(path, "cannot tell the vocabulary size");
        if (Opt("vocab_size") is int declared && vocabFromTensors is long fromTensors && declared != fromTensors)
            throw new ModelFormatException(path, $"vocab_size {declared} disagrees with token_embd rows {fromTensors}", $"{arch}.vocab_size");
        int? TokenId(string key) => gguf.GetInteger(key) is long id && id >= 0 && id < vocab ? (int)id : null; // llama.cpp ignores out-of-range ids
        var names = new Dictionary<string, string>
        {
            ["vocab_size"] = vocabFromTensors != null ? "tensor 'token_embd.weight'" : "tokenizer.ggml.tokens",
            ["hidden_size"] = $"{arch}.embedding_length", ["intermediate_size"] = $"{arch}.feed_forward_length",
            ["num_hidden_layers"] = $"{arch}.block_count", ["num_attention_heads"] = $"{arch}.attention.head_count",
            ["num_key_value_heads"] = $"{arch}.attention.head_count_kv", ["head_dim"] = $"{arch}.attention.key_length",
            ["max_position_embeddings"] = $"{arch}.context_length", ["rope"] = $"{arch}.rope.dimension_count",
            ["rms_norm_eps"] = $"{arch}.attention.layer_norm_rms_epsilon", ["rope_theta"] = $"{arch}.rope.freq_base",
            ["rope_scaling.factor"] = $"{arch}.rope.scaling.factor",
        };
        // Mixture of experts: llama with expert_count is Mixtral; qwen2moe is Qwen2-MoE as llama.cpp builds it (every
        // layer sparse, the chosen experts' probabilities not renormalized, a shared expert).
        int experts = Opt("expert_count") ?? 0, perToken = 0, expertSize = 0, sharedSize = 0;
        if (arch is "qwen2moe" or "qwen3moe" or "olmoe" && experts == 0)
            throw new ModelFormatException(path, $"{arch} needs expert_count", $"{arch}.expert_count");
        if (experts > 0)
        {
            perToken = Req("expert_used_count");
            expertSize = arch is "qwen2moe" or "qwen3moe" ? Req("expert_feed_forward_length") : Req("feed_forward_length");
            sharedSize = arch == "qwen2moe" ? Req("expert_shared_feed_forward_length") : 0;
            names["num_local_experts"] = names["num_experts"] = $"{arch}.expert_count";
            names["num_experts_per_tok"] = $"{arch}.expert_used_count";
            names["moe_intermediate_size"] = $"{arch}.expert_feed_forward_length";
            names["shared_expert_intermediate_size"] = $"{arch}.expert_shared_feed_forward_length";
        }
        return new ModelConfig
        {
            Architecture = arch switch { "qwen2moe" => "qwen2_moe", "qwen3moe" => "qwen3_moe", "llama" when experts > 0 => "mixtral", _ => arch },
            Experts = experts, ExpertsPerToken = perToken, ExpertFeedForwardSize = expertSize, SharedExpertFeedForwardSize = sharedSize,
            // llama.cpp renormalizes the chosen experts' weights for Mixtral and qwen3moe, not for qwen2moe and olmoe.
            NormalizeTopK = arch is "llama" or "qwen3moe",
            QkNorm = arch switch { "qwen3" or "qwen3moe" => QkNorm.PerHead, "olmoe" => QkNorm.Whole, _ => QkNorm.None },
            VocabSize = ToInt(vocabFromTensors ?? vocab, names["vocab_size"]),
            HiddenSize = hidden,
            IntermediateSize = Req("feed_forward_length"),
            Layers = Req("block_count"),
            Heads = heads,
            KvHeads = Opt("attention.head_count_kv") ?? heads,
            HeadDim = headDim,
            RotaryDims = Opt("rope.dimension_count") ?? headDim,
            RopeTheta = gguf.GetNumber($"{arch}.rope.freq_base") ?? 10000,
            RopeLinearFactor = linear,
            RmsNormEps = (float)RequireNumber("attention.layer_norm_rms_epsilon"),
            MaxPositions = Req("context_length"),
            TiedEmbeddings = !hasOutputTensor,
            BosTokenId = TokenId("tokenizer.ggml.bos_token_id"),
            EosTokenId = TokenId("tokenizer.ggml.eos_token_id"),
            // llama GGUFs store q/k permuted for llama.cpp's "normal" rope; qwen2 and qwen2moe use neox (halves) unpermuted.
            RopeLayout = arch == "llama" ? RopeLayout.AdjacentPairs : RopeLayout.Halves,
            AttentionBias = hasQueryBias,
            ResidualShortcuts = ReadShortcutsVersion(gguf.GetInteger(ResidualShortcutsGgufKey), path, ResidualShortcutsGgufKey),
        }.Validate(path, names);
    }

    /// <summary>The architecture keys llama.cpp reads, for a GGUF we write.</summary>
    public void WriteGgufMetadata(GgufWriter w)
    {
        string a = GgufArchitecture;
        w.Set("general.architecture", GgufValue.Of(a));
        w.Set($"{a}.vocab_size", GgufValue.Of((uint)VocabSize));
        w.Set($"{a}.context_length", GgufValue.Of((uint)MaxPositions));
        w.Set($"{a}.embedding_length", GgufValue.Of((uint)HiddenSize));
        w.Set($"{a}.block_count", GgufValue.Of((uint)Layers));
        w.Set($"{a}.feed_forward_length", GgufValue.Of((uint)IntermediateSize));
        w.Set($"{a}.attention.head_count", GgufValue.Of((uint)Heads));
        w.Set($"{a}.attention.head_count_kv", GgufValue.Of((uint)KvHeads));
        w.Set($"{a}.attention.layer_norm_rms_epsilon", GgufValue.Of(RmsNormEps));
        w.Set($"{a}.rope.freq_base", GgufValue.Of((float)RopeTheta));
        w.Set($"{a}.rope.dimension_count", GgufValue.Of((uint)RotaryDims));
        if (HeadDim != HiddenSize / Heads)
        {
            w.Set($"{a}.attention.key_length", GgufValue.Of((uint)HeadDim));
            w.Set($"{a}.attention.value_length", GgufValue.Of((uint)HeadDim));
        }
        if (Experts > 0)
        {
            w.Set($"{a}.expert_count", GgufValue.Of((uint)Experts));
            w.Set($"{a}.expert_used_count", GgufValue.Of((uint)ExpertsPerToken));
            if (Architecture == "qwen3_moe") w.Set($"{a}.expert_feed_forward_length", GgufValue.Of((uint)ExpertFeedForwardSize));
            if (Architecture == "qwen2_moe")
            {
                w.Set($"{a}.expert_feed_forward_length", GgufValue.Of((uint)ExpertFeedForwardSize));
                w.Set($"{a}.expert_shared_feed_forward_length", GgufValue.Of((uint)SharedExpertFeedForwardSize));
            }
        }
        if (ResidualShortcuts) w.Set(ResidualShortcutsGgufKey, GgufValue.Of((uint)ResidualShortcutsVersion));
        if (RopeLinearFactor != 1)
        {
            w.Set($"{a}.rope.scaling.type", GgufValue.Of("linear"));
            w.Set($"{a}.rope.scaling.factor", GgufValue.Of((float)RopeLinearFactor));
        }
    }

    // ---- JSON helpers (foreign files: unknown keys are tolerated, wrong types are not) ---------------

    static string? Str(JsonObject o, string key, string path, string prefix = "") => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        var other => throw new ModelFormatException(path, $"expected a string, found {other.ToJsonString()}", prefix + key),
    };

    static int? Int(JsonObject o, string key, string path, bool required = false, string prefix = "")
    {
        var node = o[key];
        if (node == null) return required ? throw new ModelFormatException(path, "required field is missing", prefix + key) : null;
        if (node is JsonValue v)
        {
            if (v.TryGetValue(out int i)) return i;
            if (v.TryGetValue(out long l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            if (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            if (v.GetValueKind() == JsonValueKind.Number)
                throw new ModelFormatException(path, $"{node.ToJsonString()} is beyond any real model: the file is corrupt", prefix + key);
        }
        throw new ModelFormatException(path, $"expected an integer, found {node.ToJsonString()}", prefix + key);
    }

    static double? Num(JsonObject o, string key, string path, string prefix = "")
    {
        var node = o[key];
        if (node == null) return null;
        if (node is JsonValue v && v.TryGetValue(out double d)) return d;
        if (node is JsonValue s && s.TryGetValue(out string? text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out d)) return d;
        throw new ModelFormatException(path, $"expected a number, found {node.ToJsonString()}", prefix + key);
    }

    static bool? Bool(JsonObject o, string key, string path) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out bool b) => b,
        var other => throw new ModelFormatException(path, $"expected true or false, found {other.ToJsonString()}", key),
    };

    static int[] IntList(JsonObject o, string key, string path) => o[key] switch
    {
        null => [],
        JsonArray a => a.Select((n, i) => n is JsonValue v && v.TryGetValue(out int x) ? x
            : throw new ModelFormatException(path, $"expected an integer, found {n?.ToJsonString() ?? "null"}", $"{key}[{i}]")).ToArray(),
        var other => throw new ModelFormatException(path, $"expected a list of layer indices, found {other.ToJsonString()}", key),
    };

    static int? FirstInt(JsonObject o, string key) => o[key] switch
    {
        JsonValue v when v.TryGetValue(out int i) => i,
        JsonArray a when a.Count > 0 && a[0] is JsonValue v0 && v0.TryGetValue(out int i0) => i0,
        _ => null,
    };
}
