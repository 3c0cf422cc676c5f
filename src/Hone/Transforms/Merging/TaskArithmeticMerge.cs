namespace Hone.Transforms.Merging;

/// <summary>Task arithmetic (Ilharco et al. 2023): base + lambda·Σ wᵢ·(Xᵢ − base), divided by Σ wᵢ only with normalize (default off). See <see cref="TaskVectorMerge"/>.</summary>
public sealed class TaskArithmeticMerge : TaskVectorMerge
{
    public override string Name => "task_arithmetic";
    public override string Summary => "base + lambda·Σ wᵢ·τᵢ (τᵢ = Xᵢ − base; / Σ wᵢ with normalize)";
    protected override Sparsification Sparsification => Sparsification.None;
    protected override bool SignElection => false;
    protected override bool NormalizeByDefault => false;
}
