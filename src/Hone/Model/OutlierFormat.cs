using Hone.Formats;
using Hone.Tensors;
using Hone.Tensors.Quantization;

namespace Hone.Model;

/// <summary>
/// Hone's outlier-aware weight types in GGUF files: hq3_o (type id 4003) and hq4_o (4004), numbered far from ggml's
/// ids, with the metadata key hone.outlier_quant.version naming the block layout's version (1). llama.cpp cannot
/// load such a file. Blocks are checked when a model is loaded: a damaged one (a slot naming an element outside its
/// block, two slots naming one element, a non-finite scale or outlier value) is a one-line error naming the tensor.
/// </summary>
public static class OutlierFormat
{
    public const string VersionKey = "hone.outlier_quant.version";
    public const uint Version = 1;

    public static bool IsOutlierType(TensorType type) => OutlierBlock.IsOutlierType(type);

    /// <summary>What a conversion to these types tells the user: exact bits per weight, and that llama.cpp cannot read the file.</summary>
    public static void AddNotes(IEnumerable<TensorType> types, List<string> notes)
    {
        foreach (var type in types.Where(IsOutlierType).Distinct().OrderBy(t => t))
        {
            var t = type.Traits();
            notes.Add($"{t.Name}: {t.BitsPerWeight:0.###} bits per weight ({t.BlockBytes} bytes per block of {t.BlockSize}: 4 groups of 16 at " +
                      $"{OutlierBlock.Bits(type)} bits with 4-bit scales and mins against fp16 d/dmin, and {OutlierBlock.Slots} fp16 outlier slots)");
        }
        notes.Add($"Hone's own outlier-aware format (GGUF type ids {(uint)TensorType.HQ3_O}/{(uint)TensorType.HQ4_O}, {VersionKey} = {Version}): " +
                  "llama.cpp cannot load this file; Hone's generate, perplexity, eval, serve and bench can");
    }

    /// <summary>Refuses a checkpoint holding these types without the version key this build reads.</summary>
    public static void CheckVersion(Checkpoint checkpoint)
    {
        var first = checkpoint.Tensors.FirstOrDefault(t => t.Type is TensorType type && IsOutlierType(type));
        if (first == null) return;
        long? version = checkpoint.Gguf?.GetInteger(VersionKey);
        if (version == null)
            throw new ModelFormatException(checkpoint.Path, $"tensor '{first.SourceName}' is {first.TypeName} but the file has no {VersionKey} (not written by Hone, or damaged)", VersionKey);
        if (version != Version)
            throw new ModelFormatException(checkpoint.Path, $"outlier format version {version}; this build reads version {Version}", VersionKey);
    }

    /// <summary>Checks every block of a stored tensor; throws naming the tensor, row and block.</summary>
    public static unsafe void Validate(TensorType type, byte* data, long rows, int cols, string file, string tensor)
    {
        long rowBytes = type.Traits().BytesFor(cols);
        for (long r = 0; r < rows; r++)
            if (OutlierQuantization.ValidateRow(type, new ReadOnlySpan<byte>(data + r * rowBytes, (int)rowBytes), cols) is string problem)
                throw new ModelFormatException(file, $"damaged {type.Name()} block: row {r}, {problem}", $"tensor '{tensor}'");
    }
}
