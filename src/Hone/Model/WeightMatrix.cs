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
    PackedInt8Weights? _packed;
    bool _packTried;

    /// <summary>
    /// This Q8_0 weight repacked for the int8 GEMM (built on first use, then kept beside the stored copy: 36 bytes per
    /// 34-byte block), or null when the type or machine has no such kernel. Fast-precision products of every row count go
    /// through it, so a decode row and a prompt row meet the same numerics and many decode rows share one weight pass.
    /// </summary>
    public PackedInt8Weights? PackedForGemm(WorkerPool pool)
    {
        if (Volatile.Read(ref _packTried)) return _packed;
        if (Type != TensorType.Q8_0) return null;
        lock (_packing)
        {
            if (!_packTried)
            {
                _packed = WeightGemm.TryPack(pool, Type, Data, RowBytes, Rows, Cols);
                Volatile.Write(ref _packTried, true);
            }
            return _packed;
        }
    }

    /// <summary>True once <see cref="PackedForGemm"/> has built the packed copy.</summary>
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
