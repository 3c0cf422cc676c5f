namespace Hone.Model;

/// <summary>
/// Row orders of q/k projections between the two RoPE layouts: Hugging Face rotate-half (dimension i pairs with
/// i + Dh/2) and llama.cpp's adjacent pairs (2i with 2i+1), the permutation llama.cpp's convert_hf_to_gguf.py applies.
/// </summary>
public static class RopePermutation
{
    /// <summary>Row order of a q/k projection for adjacent-pair rope: output row h·Dh + 2i + j comes from Hugging Face
    /// row h·Dh + j·Dh/2 + i (the permutation llama.cpp's convert_hf_to_gguf.py applies).</summary>
    public static int HalvesRowForAdjacentRow(int row, int headDim)
    {
        int head = row / headDim, within = row % headDim, half = headDim / 2;
        return head * headDim + (within % 2) * half + within / 2;
    }

    /// <summary>The inverse: Hugging Face row h·Dh + j·Dh/2 + i comes from GGUF row h·Dh + 2i + j.</summary>
    public static int AdjacentRowForHalvesRow(int row, int headDim)
    {
        int head = row / headDim, within = row % headDim, half = headDim / 2;
        return head * headDim + 2 * (within % half) + within / half;
    }

}
