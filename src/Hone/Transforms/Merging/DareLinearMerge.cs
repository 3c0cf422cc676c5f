namespace Hone.Transforms.Merging;

/// <summary>DARE (Yu et al. 2024) with a plain sum: each task vector's elements kept with probability density (seeded) and rescaled by 1/density (rescale, default on), so each delta is unchanged in expectation; then task arithmetic. See <see cref="TaskVectorMerge"/>.</summary>
public sealed class DareLinearMerge : TaskVectorMerge
{
    public override string Name => "dare_linear";
    public override string Summary => "drop each τᵢ's elements at random (keep density), rescale by 1/density, sum";
    protected override Sparsification Sparsification => Sparsification.Random;
    protected override bool SignElection => false;
    protected override bool NormalizeByDefault => false;
    protected override bool RescaleByDefault => true;
}
