namespace Hone.Transforms.Merging;

/// <summary>
/// Weighted average (Wortsman et al. 2022, "model soups"; mergekit's linear): Σ wᵢ·Xᵢ, divided by Σ wᵢ when normalize
/// is on (the default). No base model: every listed model takes part.
/// </summary>
public sealed class LinearMerge : MergeMethod
{
    public override string Name => "linear";
    public override string Summary => "Σ wᵢ·Xᵢ (/ Σ wᵢ with normalize): a weighted average of the models";
    public override BaseModelUse BaseModel => BaseModelUse.None;
    public override IReadOnlyList<MergeParameter> ModelParameters => [new("weight", null, "the model's weight")];
    public override IReadOnlyList<MergeParameter> Parameters => [new("normalize", 1, "divide by the sum of the weights (default true)", IsFlag: true)];

    public override void Merge(TensorMerge m)
    {
        int n = m.Count, models = m.Models.Count;
        var weights = Enumerable.Range(0, models).Select(i => m.ModelParameter(i, "weight")).ToArray();
        double divisor = 1;
        if (m.Flag("normalize"))
        {
            divisor = weights.Sum();
            if (divisor == 0) throw m.Error("the weights sum to 0, so normalize would divide by zero (set normalize: false, or change the weights)");
        }
        for (int k = 0; k < n; k++)
        {
            double sum = 0;
            for (int i = 0; i < models; i++) sum += weights[i] * m.Models[i][k];
            m.Output[k] = (float)(sum / divisor);
        }
    }
}
