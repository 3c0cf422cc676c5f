namespace Hone.Tensors;

/// <summary>Element / block types, numbered as ggml numbers them (the GGUF tensor type field).</summary>
public enum TensorType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
    // Hone's own types, numbered far from ggml's (which end below 100): llama.cpp cannot read them.
    // See OutlierBlock (Quantization/BlockLayouts.cs) for the layout.
    HQ3_O = 4003, HQ4_O = 4004,
}

/// <summary>One row of the type traits table.</summary>
/// <param name="Name">lower-case name as llama.cpp prints it (q4_k, bf16)</param>
/// <param name="BlockSize">elements per block (1 for plain types)</param>
/// <param name="BlockBytes">bytes per block</param>
/// <param name="Compute">true when our kernels can multiply with it</param>
public readonly record struct TensorTypeTraits(TensorType Type, string Name, int BlockSize, int BlockBytes, bool Compute)
{
    public bool IsQuantized => BlockSize > 1;
    /// <summary>Bytes needed for <paramref name="elements"/> elements (a multiple of the block size).</summary>
    public long BytesFor(long elements) => elements / BlockSize * BlockBytes;
    public double BitsPerWeight => 8.0 * BlockBytes / BlockSize;
}

/// <summary>The one table of tensor types: block geometry and what we can compute with.</summary>
public static class TensorTypes
{
    static readonly TensorTypeTraits[] Table =
    [
        new(TensorType.F32, "f32", 1, 4, true),
        new(TensorType.F16, "f16", 1, 2, true),
        new(TensorType.BF16, "bf16", 1, 2, true),
        new(TensorType.Q8_0, "q8_0", 32, 34, true),
        new(TensorType.Q4_0, "q4_0", 32, 18, true),
        new(TensorType.Q4_K, "q4_k", 256, 144, true),
        new(TensorType.Q6_K, "q6_k", 256, 210, true),
        new(TensorType.Q4_1, "q4_1", 32, 20, false),
        new(TensorType.Q5_0, "q5_0", 32, 22, false),
        new(TensorType.Q5_1, "q5_1", 32, 24, false),
        new(TensorType.Q8_1, "q8_1", 32, 36, false),
        new(TensorType.Q2_K, "q2_k", 256, 84, false),
        new(TensorType.Q3_K, "q3_k", 256, 110, false),
        new(TensorType.Q5_K, "q5_k", 256, 176, false),
        new(TensorType.Q8_K, "q8_k", 256, 292, false),
        new(TensorType.IQ2_XXS, "iq2_xxs", 256, 66, false),
        new(TensorType.IQ2_XS, "iq2_xs", 256, 74, false),
        new(TensorType.IQ3_XXS, "iq3_xxs", 256, 98, false),
        new(TensorType.IQ1_S, "iq1_s", 256, 50, false),
        new(TensorType.IQ4_NL, "iq4_nl", 32, 18, false),
        new(TensorType.IQ3_S, "iq3_s", 256, 110, false),
        new(TensorType.IQ2_S, "iq2_s", 256, 82, false),
        new(TensorType.IQ4_XS, "iq4_xs", 256, 136, false),
        new(TensorType.I8, "i8", 1, 1, false),
        new(TensorType.I16, "i16", 1, 2, false),
        new(TensorType.I32, "i32", 1, 4, false),
        new(TensorType.I64, "i64", 1, 8, false),
        new(TensorType.F64, "f64", 1, 8, false),
        new(TensorType.IQ1_M, "iq1_m", 256, 56, false),
        new(TensorType.TQ1_0, "tq1_0", 256, 54, false),
        new(TensorType.TQ2_0, "tq2_0", 256, 66, false),
        new(TensorType.MXFP4, "mxfp4", 32, 17, false),
        new(TensorType.HQ3_O, "hq3_o", 64, 38, true),
        new(TensorType.HQ4_O, "hq4_o", 64, 46, true),
    ];

    static readonly Dictionary<TensorType, TensorTypeTraits> ByType = Table.ToDictionary(t => t.Type);
    static readonly Dictionary<string, TensorTypeTraits> ByName = Table.ToDictionary(t => t.Name, StringComparer.OrdinalIgnoreCase);

    public static IReadOnlyList<TensorTypeTraits> All => Table;

    public static bool IsKnown(uint id) => ByType.ContainsKey((TensorType)id);

    public static TensorTypeTraits Traits(this TensorType type) =>
        ByType.TryGetValue(type, out var t) ? t : throw new NotSupportedException($"unknown tensor type id {(uint)type}");

    public static string Name(this TensorType type) => ByType.TryGetValue(type, out var t) ? t.Name : $"type#{(uint)type}";

    public static bool TryParse(string name, out TensorType type)
    {
        if (ByName.TryGetValue(name, out var t)) { type = t.Type; return true; }
        type = default; return false;
    }

    public static TensorType Parse(string name) => TryParse(name, out var t) ? t
        : throw new ArgumentException($"unknown tensor type '{name}'; known: {string.Join(", ", Table.Select(x => x.Name))}");
}
