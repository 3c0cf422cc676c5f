namespace Hone.Transforms.Merging;

/// <summary>DARE's random drop and 1/density rescale (default on), then TIES' sign election and the agreeing deltas summed (normalize default off, as mergekit). See <see cref="TaskVectorMerge"/>.</summary>
public sealed class DareTiesMerge : TaskVectorMerge
{
    public override string Name => "dare_ties";
    public override string Summary => "DARE's random drop and rescale, then TIES' sign election";
    protected override Sparsification Sparsification => Sparsification.Random;
    protected override bool SignElection => true;
    protected override bool NormalizeByDefault => false;
    protected override bool RescaleByDefault => true;
}
