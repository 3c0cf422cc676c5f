namespace Hone.Transforms.Merging;

/// <summary>Model Breadcrumbs (Davari and Belilovsky 2024): each task vector loses its largest ⌊gamma·n⌋ magnitudes (outliers) and its smallest, keeping ⌊density·n⌋; then task arithmetic. See <see cref="TaskVectorMerge"/>.</summary>
public sealed class BreadcrumbsMerge : TaskVectorMerge
{
    public override string Name => "breadcrumbs";
    public override string Summary => "drop each τᵢ's outliers (gamma) and smallest magnitudes (keep density), sum";
    protected override Sparsification Sparsification => Sparsification.MagnitudeOutliers;
    protected override bool SignElection => false;
    protected override bool NormalizeByDefault => false;
}
