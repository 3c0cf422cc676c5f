namespace Hone.Transforms.Merging;

/// <summary>TIES-Merging (Yadav et al. 2023): each task vector trimmed to its largest ⌊density·n⌋ magnitudes, signs elected per element by the weighted sum, the agreeing deltas averaged by their weights (normalize, default on), scaled by lambda and added to the base. See <see cref="TaskVectorMerge"/>.</summary>
public sealed class TiesMerge : TaskVectorMerge
{
    public override string Name => "ties";
    public override string Summary => "trim each τᵢ to its top-density magnitudes, elect signs, average the agreeing deltas";
    protected override Sparsification Sparsification => Sparsification.Magnitude;
    protected override bool SignElection => true;
    protected override bool NormalizeByDefault => true;
}
