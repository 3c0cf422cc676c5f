namespace Hone.Transforms.Merging;

/// <summary>Model Breadcrumbs' trimming, then TIES' sign election over the kept deltas. See <see cref="TaskVectorMerge"/>.</summary>
public sealed class BreadcrumbsTiesMerge : TaskVectorMerge
{
    public override string Name => "breadcrumbs_ties";
    public override string Summary => "breadcrumbs' trimming, then TIES' sign election";
    protected override Sparsification Sparsification => Sparsification.MagnitudeOutliers;
    protected override bool SignElection => true;
    protected override bool NormalizeByDefault => false;
}
