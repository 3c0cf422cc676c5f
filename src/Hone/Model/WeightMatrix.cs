using Hone.Tensors;
using Hone.Tensors.Emitted;

namespace Hone.Model;

/// <summary>A weight W[Rows = out, Cols = in], row-major in its stored type, living in the model's weight arena.</summary>
public sealed unsafe class WeightMatrix
{
    public string Name { get; }
    public TensorType Type { get; }
    public int Rows { get; }
    public int Cols { get; }
    public byte* Data { get; }

    public WeightMatrix(string name, TensorType type, int rows, int cols, byte* data)
    {
        Name = name; Type = type; Rows = rows; Cols = cols; Data = data;
    }

    readonly Lock _packing = new();
    object? _packed; // PackedInt8Weights (Q8_0) or PackedF32Weights (F32): a weight has one type, so one packed copy at most
    bool _packTried;

    /// <summary>
    /// This Q8_0 weight repacked for the int8 GEMM (built on first use, then kept beside the stored copy: 36 bytes per
    /// 34-byte block), or null when the type or machine has no such kernel. Fast-precision products of every row count go
    /// through it, so a decode row and a prompt row meet the same numerics and many decode rows share one weight pass.
    /// </summary>
    public PackedInt8Weights? PackedForGemm(WorkerPool pool) => Type == TensorType.Q8_0 ? (PackedInt8Weights?)Packed(pool) : null;

    /// <summary>
    /// This F32 weight transposed once into the fp32 GEMM's slivers (built on first use, then kept beside the stored
    /// copy: as many bytes again), or null for other types and for weights of at most 16 rows. Fast-precision products
    /// of every row count go through it, as with Q8_0's packed copy: one decode row, many decode rows sharing one pass
    /// over the weights, and prompt rows, all with the same per-element arithmetic.
    /// </summary>
    public PackedF32Weights? PackedF32ForGemm(WorkerPool pool) => Type == TensorType.F32 ? (PackedF32Weights?)Packed(pool) : null;

    /// <summary>The packed copy for this weight's type, built once by the first caller.</summary>
    object? Packed(WorkerPool pool)
    {
        if (Volatile.Read(ref _packTried)) return _packed;
        lock (_packing)
        {
            if (!_packTried)
            {
                _packed = Type == TensorType.Q8_0
                    ? WeightGemm.TryPack(pool, Type, Data, RowBytes, Rows, Cols)
                    : Gemm.TryPackWeights(pool, (float*)Data, RowBytes / 4, Rows, Cols);
                Volatile.Write(ref _packTried, true);
            }
            return _packed;
        }
    }

    /// <summary>Use this packed copy (built by the caller from this weight, in memory the caller keeps: an expert cache's
    /// slot) instead of building one.</summary>
    public void UsePacked(PackedInt8Weights? int8, PackedF32Weights? f32)
    {
        lock (_packing)
        {
            if (_packTried) throw new InvalidOperationException($"{Name} already has its packed copy");
            _packed = (object?)int8 ?? f32;
            Volatile.Write(ref _packTried, true);
        }
    }

    /// <summary>True once <see cref="PackedForGemm"/> or <see cref="PackedF32ForGemm"/> has built a packed copy.</summary>
    public bool IsPacked => Volatile.Read(ref _packTried) && _packed != null;

    public long RowBytes => Type.Traits().BytesFor(Cols);
    public long ByteLength => RowBytes * Rows;

    /// <summary>dst[Cols] = row r as fp32 (embedding lookup).</summary>
    public void ReadRow(int r, float* dst)
    {
        if ((uint)r >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(r), $"row {r} of {Name} (rows {Rows})");
        WeightRows.DequantizeSegment(Type, Data + r * RowBytes, 0, Cols, dst);
    }

    public float[] ToFloatArray()
    {
        var a = new float[(long)Rows * Cols];
        fixed (float* p = a) for (int r = 0; r < Rows; r++) ReadRow(r, p + (long)r * Cols);
        return a;
    }
}
