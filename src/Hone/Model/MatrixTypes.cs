using Hone.Tensors;

namespace Hone.Model;

/// <summary>The types Hone stores and computes weight matrices in, and so the only ones a `--type` may ask for
/// (convert, merge-adapter, bench): the rest of GGUF's types are read by no kernel here and written by no quantizer.
/// hq3_o and hq4_o are Hone's own outlier-aware types (<see cref="OutlierFormat"/>), which llama.cpp cannot read.</summary>
public static class MatrixTypes
{
    public static readonly IReadOnlyList<TensorType> All =
        [TensorType.F32, TensorType.F16, TensorType.BF16, TensorType.Q8_0, TensorType.Q4_0, TensorType.Q4_K, TensorType.Q6_K,
         TensorType.HQ3_O, TensorType.HQ4_O];

    public static string Names => string.Join(", ", All.Select(t => t.Name()));

    /// <summary>A type by name, or an error naming <paramref name="option"/> and the accepted types (never a fallback).</summary>
    public static TensorType Parse(string name, string option = "--type")
    {
        if (TensorTypes.TryParse(name.Trim(), out var type) && All.Contains(type)) return type;
        string known = TensorTypes.TryParse(name.Trim(), out _) ? $"{name} is a GGUF type Hone cannot store weights in" : $"unknown type '{name}'";
        throw new ArgumentException($"{option}: {known}; use one of {Names}");
    }
}
