using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors;

/// <summary>How keys and values are held in a KV cache (llama.cpp's --cache-type-k/-v). F32 keeps the projections'
/// values exactly; BF16 rounds each (after RoPE) to bfloat16, nearest even, halving the cache and the bytes a decode
/// step reads, and attention then computes in fp32 on the rounded values.</summary>
public enum KvCacheType
{
    F32,
    BF16,
}

public static unsafe class KvCacheTypes
{
    public static int ElementBytes(this KvCacheType type) => type switch
    {
        KvCacheType.F32 => 4,
        KvCacheType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown KV cache type"),
    };

    public static string Name(this KvCacheType type) => type switch
    {
        KvCacheType.F32 => "f32",
        KvCacheType.BF16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown KV cache type"),
    };

    /// <summary>The type named by <paramref name="name"/> (f32, bf16), or an error naming the choices.</summary>
    public static KvCacheType Parse(string name) => name.ToLowerInvariant() switch
    {
        "f32" => KvCacheType.F32,
        "bf16" => KvCacheType.BF16,
        _ => throw new ArgumentException($"unknown KV cache type '{name}' (known: f32, bf16)"),
    };

    /// <summary>destination[count] (in <paramref name="type"/>) = source[count] fp32.</summary>
    public static void Store(KvCacheType type, float* source, void* destination, long count)
    {
        if (type == KvCacheType.F32) Buffer.MemoryCopy(source, destination, count * 4, count * 4);
        else NumberConversion.SingleToBFloat16(source, (ushort*)destination, checked((int)count));
    }

    /// <summary>destination[count] fp32 = source[count] (in <paramref name="type"/>).</summary>
    public static void Load(KvCacheType type, void* source, float* destination, long count)
    {
        if (type == KvCacheType.F32) Buffer.MemoryCopy(source, destination, count * 4, count * 4);
        else NumberConversion.BFloat16ToSingle((ushort*)source, destination, checked((int)count));
    }

    /// <summary>A copy of <paramref name="count"/> cached elements as fp32 (tests and inspection).</summary>
    public static float[] ToArray(KvCacheType type, void* source, int count)
    {
        var values = new float[count];
        fixed (float* v = values) Load(type, source, v, count);
        return values;
    }

    /// <summary>16 bfloat16 values widened to fp32 (exact: the bits move up by 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> WidenBFloat16(ushort* p)
    {
        if (Avx512F.IsSupported) return (Avx512F.ConvertToVector512UInt32(Vector256.Load(p)) << 16).AsSingle();
        var v = Vector256.Load(p);
        return Vector512.Create((Vector256.WidenLower(v) << 16).AsSingle(), (Vector256.WidenUpper(v) << 16).AsSingle());
    }
}
