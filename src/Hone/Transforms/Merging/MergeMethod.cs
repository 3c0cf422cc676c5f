namespace Hone.Transforms.Merging;

/// <summary>Whether a merge method takes a base model.</summary>
public enum BaseModelUse { None, Required }

/// <summary>A parameter a merge method reads: per model (weight, density, …) or for the whole merge (normalize, t, …).
/// Flags are numbers too: true is 1, false 0.</summary>
/// <param name="Default">null: the parameter is required</param>
public sealed record MergeParameter(string Name, double? Default, string Description, bool IsFlag = false);

/// <summary>
/// One tensor of a merge, as a method sees it: fp32 values of every input in one layout, the parameters resolved for
/// this tensor, and where the result goes. Vectors have <see cref="Rows"/> = 1.
/// </summary>
public sealed class TensorMerge
{
    /// <summary>The tensor's Hugging Face name (model.layers.3.self_attn.q_proj.weight): what filters match.</summary>
    public required string Name { get; init; }
    public required int Rows { get; init; }
    public required int Cols { get; init; }
    /// <summary>The token embedding or the output head (model_stock treats them as one vector, as mergekit does).</summary>
    public bool IsEmbedding { get; init; }
    /// <summary>The base model's values, [Rows·Cols] (the arrays may be longer); null for methods without a base.</summary>
    public float[]? Base { get; init; }
    /// <summary>The other models' values, in configuration order; a method may overwrite them (task vectors in place).</summary>
    public required IReadOnlyList<float[]> Models { get; init; }
    /// <summary>Each model's parameters (index as <see cref="Models"/>), defaults filled in.</summary>
    public required IReadOnlyList<IReadOnlyDictionary<string, double>> ModelParameters { get; init; }
    /// <summary>The merge's parameters, defaults filled in.</summary>
    public required IReadOnlyDictionary<string, double> Parameters { get; init; }
    /// <summary>The seed of this tensor's random choices (DARE's drops): the same for a seed and a tensor in every run.</summary>
    public ulong Seed { get; init; }
    /// <summary>Where the result goes, [Rows·Cols].</summary>
    public required float[] Output { get; init; }
    /// <summary>Scratch of at least [Rows·Cols] for methods that rank magnitudes.</summary>
    public Func<float[]>? Scratch { get; init; }

    public int Count => checked(Rows * Cols);
    public double Parameter(string name) => Parameters[name];
    public bool Flag(string name) => Parameters[name] != 0;
    public double ModelParameter(int model, string name) => ModelParameters[model][name];

    public ArgumentException Error(string message) => new($"tensor {Name}: {message}");
}

/// <summary>A merge method: how the tensors of several models of one shape become one (mergekit's merge_methods).</summary>
public abstract class MergeMethod
{
    /// <summary>The name a configuration's merge_method gives.</summary>
    public abstract string Name { get; }
    /// <summary>One line for --help: what it computes.</summary>
    public abstract string Summary { get; }
    public abstract BaseModelUse BaseModel { get; }
    /// <summary>The fewest models besides the base.</summary>
    public virtual int MinimumModels => 1;
    /// <summary>The most models besides the base (null: no limit).</summary>
    public virtual int? MaximumModels => null;
    public virtual IReadOnlyList<MergeParameter> ModelParameters => [];
    public virtual IReadOnlyList<MergeParameter> Parameters => [];
    /// <summary>Whether the method draws random numbers (seeded by --seed).</summary>
    public virtual bool IsRandom => false;

    /// <summary>Fill <see cref="TensorMerge.Output"/> from the inputs.</summary>
    public abstract void Merge(TensorMerge tensor);
}

/// <summary>Every merge method, by configuration name: one row per method.</summary>
public static class MergeMethods
{
    public static readonly IReadOnlyList<MergeMethod> All =
    [
        new LinearMerge(),
        new SlerpMerge(),
        new TaskArithmeticMerge(),
        new TiesMerge(),
        new DareLinearMerge(),
        new DareTiesMerge(),
        new BreadcrumbsMerge(),
        new BreadcrumbsTiesMerge(),
        new ModelStockMerge(),
    ];

    public static string Names => string.Join(", ", All.Select(m => m.Name));

    public static MergeMethod? Find(string name) => All.FirstOrDefault(m => m.Name == name);
}
