namespace Hone.Model;

/// <summary>
/// Sees the input of every projection a <see cref="LlamaModel"/> computes (the rows X of Y = X·Wᵀ, before the
/// product), in one-sequence steps: attention q, k, v and output, the MLP's gate, up and down, a mixture's router, each
/// expert's projections over the rows routed to it, and the output head. The model consults it only when one is set
/// (<see cref="LlamaModel.ActivationObserver"/>); an importance matrix is collected this way.
/// </summary>
public unsafe interface IActivationObserver
{
    /// <param name="weight">the projection about to run (its <see cref="WeightMatrix.Name"/> names it; an expert's is
    /// "blk.L.ffn_gate_exps.E.weight")</param>
    /// <param name="x">X[rows, weight.Cols], row stride ldx; read it during the call only</param>
    void Observe(WeightMatrix weight, float* x, int rows, int ldx);
}
