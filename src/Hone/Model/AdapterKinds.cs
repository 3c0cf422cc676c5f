using Hone.Formats;

namespace Hone.Model;

/// <summary>What every adapter kind is built from: the projection it adapts (W[Out, In]) and PEFT's scalars.</summary>
/// <param name="Target">canonical weight name, e.g. blk.0.attn_q.weight</param>
public readonly record struct AdapterShape(string Target, int Rank, int In, int Out, float Alpha, bool RsLora = false);

/// <summary>
/// One kind of adapter, as PEFT's LoRA variants: its name, the adapter_config.json flag that declares it, its llama.cpp
/// LoRA GGUF form (if it has one) and how to make one. The class <see cref="Create"/> returns holds all of the kind's
/// math and tensors (see <see cref="LoraAdapter"/>); everything else asks the kind instead of testing flags.
/// </summary>
public sealed class AdapterKind
{
    readonly Func<AdapterShape, LoraAdapter> _create;

    /// <param name="name">what users type and reports show (lowercase)</param>
    /// <param name="configFlag">the boolean adapter_config.json field that is true for this kind (PEFT's use_dora);
    /// null for plain LoRA, the kind of a config that sets none of the registered flags</param>
    /// <param name="create">a new adapter of this kind on one projection, its tensors zero</param>
    /// <param name="llamaCppType">llama.cpp's adapter.type for this kind, or null when llama.cpp has no form of it</param>
    /// <param name="readLlamaCpp">reads a llama.cpp adapter GGUF of this kind (with llamaCppType)</param>
    /// <param name="whyNoLlamaCpp">why there is no llama.cpp form and what to do instead (without llamaCppType)</param>
    /// <param name="composite">made from other adapters rather than from a rank (a LoRA mixture): saved in its own
    /// directory format, not as one PEFT adapter, and not trained as adapter_kind</param>
    public AdapterKind(string name, string? configFlag, Func<AdapterShape, LoraAdapter> create, string? llamaCppType = null,
        Func<GgufFile, LlamaWeights, Dictionary<string, LoraAdapter>>? readLlamaCpp = null, string? whyNoLlamaCpp = null, bool composite = false)
    {
        Composite = composite;
        if ((llamaCppType == null) != (readLlamaCpp == null) || (llamaCppType == null) == (whyNoLlamaCpp == null))
            throw new ArgumentException($"adapter kind '{name}': give llamaCppType with readLlamaCpp, or whyNoLlamaCpp");
        Name = name; ConfigFlag = configFlag; _create = create; LlamaCppType = llamaCppType; ReadLlamaCpp = readLlamaCpp; WhyNoLlamaCpp = whyNoLlamaCpp;
    }

    public string Name { get; }
    public bool Composite { get; }
    public string? ConfigFlag { get; }
    public string? LlamaCppType { get; }
    public Func<GgufFile, LlamaWeights, Dictionary<string, LoraAdapter>>? ReadLlamaCpp { get; }
    public string? WhyNoLlamaCpp { get; }

    /// <summary>How adapter_config.json declares this kind, for messages: "use_dora: true" or "no kind flag set".</summary>
    public string Declaration => ConfigFlag != null ? $"{ConfigFlag}: true" : "none of " + string.Join(", ", AdapterKinds.All.Where(k => k.ConfigFlag != null).Select(k => k.ConfigFlag)) + " set";

    public LoraAdapter Create(AdapterShape shape)
    {
        var adapter = _create(shape);
        if (adapter.Kind != this)
        {
            adapter.Dispose();
            throw new InvalidOperationException($"adapter kind '{Name}' made an adapter of kind '{adapter.Kind.Name}'");
        }
        return adapter;
    }

    public override string ToString() => Name;
}

/// <summary>
/// The registration table of adapter kinds: loading (PEFT and llama.cpp), training, merging and conversion find the
/// kind here. Adding a kind is one class (deriving from <see cref="LoraAdapter"/>, overriding what differs) and one
/// line below.
/// </summary>
public static class AdapterKinds
{
    static readonly object Gate = new();
    static AdapterKind[] _table = [];

    public static readonly AdapterKind Lora = Register(new("lora", null, s => new LoraAdapter(s), "lora", LoraAdapter.ReadLlamaCpp));
    public static readonly AdapterKind Dora = Register(new("dora", "use_dora", s => new DoraAdapter(s), whyNoLlamaCpp:
        "llama.cpp has no DoRA adapters (its LoRA adds s·B·A·x; DoRA rescales every output row by m/‖W + s·B·A‖): " +
        "merge the adapter into the model (hone merge-adapter) and convert that"));
    public static readonly AdapterKind LoraMixture = Register(new("lora-mixture", "use_hone_lora_mixture",
        s => throw new ArgumentException($"a LoRA mixture on {s.Target} is made from expert adapters (hone train --lora-experts DIR,DIR), not from a rank"),
        whyNoLlamaCpp: "llama.cpp has no routed LoRA mixtures: load the mixture directory in Hone, or use one expert (experts/NAME is a plain PEFT adapter)",
        composite: true));

    public static IReadOnlyList<AdapterKind> All => Volatile.Read(ref _table);

    public static IEnumerable<string> Names => All.Select(k => k.Name);

    /// <summary>Add a kind; its name and config flag must be new.</summary>
    public static AdapterKind Register(AdapterKind kind)
    {
        lock (Gate)
        {
            foreach (var k in _table)
            {
                if (k.Name == kind.Name) throw new ArgumentException($"adapter kind '{kind.Name}' is registered already");
                if (k.ConfigFlag == kind.ConfigFlag)
                    throw new ArgumentException($"adapter kinds '{k.Name}' and '{kind.Name}' would both be declared by {(kind.ConfigFlag ?? "no flag")}");
            }
            Volatile.Write(ref _table, [.. _table, kind]);
        }
        return kind;
    }

    public static AdapterKind? Find(string name) => All.FirstOrDefault(k => k.Name == name);

    public static AdapterKind Get(string name) =>
        Find(name) ?? throw new ArgumentException($"unknown adapter kind '{name}'; registered: {string.Join(", ", Names)}");

    public static AdapterKind? ForLlamaCpp(string adapterType) => All.FirstOrDefault(k => k.LlamaCppType == adapterType);

    /// <summary>The kind a configuration declares: the one whose flag is true, plain LoRA when none is.</summary>
    /// <param name="flag">reads a boolean field of the configuration (null when absent)</param>
    public static AdapterKind FromFlags(Func<string, bool?> flag, string file)
    {
        var declared = All.Where(k => k.ConfigFlag != null && flag(k.ConfigFlag) == true).ToList();
        if (declared.Count > 1)
            throw new ModelFormatException(file, $"declares more than one adapter kind ({string.Join(", ", declared.Select(k => k.Declaration))})", string.Join(" and ", declared.Select(k => k.ConfigFlag)));
        return declared.Count == 1 ? declared[0] : All.Single(k => k.ConfigFlag == null);
    }
}
