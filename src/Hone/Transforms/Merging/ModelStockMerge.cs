namespace Hone.Transforms.Merging;

/// <summary>
/// Model Stock (Jang et al. 2024; mergekit's model_stock): the average w̄ of N ≥ 2 fine-tuned models is pulled toward the
/// base w₀ by t = N·cos θ / (1 + (N − 1)·cos θ): result = t·w̄ + (1 − t)·w₀, where cos θ is the mean over pairs of
/// models of the cosine between their offsets from the base. As mergekit does, the cosine is taken per row of a matrix
/// and over the whole tensor for the embedding and the output head; a product of norms below 1e-6 counts as 1e-6, and
/// cosines are clamped to [−1, 1]. A vector (a norm's weights) is taken whole: mergekit's per-element cosine of a
/// vector is ±1, and −1 with two models divides by zero.
/// </summary>
public sealed class ModelStockMerge : MergeMethod
{
    public override string Name => "model_stock";
    public override string Summary => "t·mean + (1 − t)·base, t = N·cosθ / (1 + (N − 1)·cosθ) from the angle between the models' offsets (N ≥ 2)";
    public override BaseModelUse BaseModel => BaseModelUse.Required;
    public override int MinimumModels => 2;

    public override void Merge(TensorMerge m)
    {
        float[] w0 = m.Base!, output = m.Output;
        var ws = m.Models;
        int models = ws.Count;
        int rows = m.IsEmbedding ? 1 : m.Rows;
        int width = m.Count / rows;
        for (int r = 0; r < rows; r++)
        {
            int start = r * width;
            double cosSum = 0;
            int pairs = 0;
            for (int i = 0; i < models; i++)
                for (int j = i + 1; j < models; j++)
                {
                    double dot = 0, ni = 0, nj = 0;
                    for (int k = start; k < start + width; k++)
                    {
                        double a = (double)ws[i][k] - w0[k], b = (double)ws[j][k] - w0[k];
                        dot += a * b; ni += a * a; nj += b * b;
                    }
                    double cos = dot / Math.Max(Math.Sqrt(ni) * Math.Sqrt(nj), 1e-6);
                    cosSum += Math.Clamp(cos, -1, 1);
                    pairs++;
                }
            double c = cosSum / pairs;
            double t = models * c / (1 + (models - 1) * c);
            for (int k = start; k < start + width; k++)
            {
                double mean = 0;
                for (int i = 0; i < models; i++) mean += ws[i][k];
                mean /= models;
                output[k] = (float)(t * mean + (1 - t) * w0[k]);
            }
        }
    }
}
