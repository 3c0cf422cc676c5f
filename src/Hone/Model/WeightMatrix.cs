using Hone.Tensors;

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
