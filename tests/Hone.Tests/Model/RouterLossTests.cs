using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>The load-balancing loss and the router z-loss against Hugging Face's formula in float64 PyTorch (values and
/// autograd gradients: tools/reference/make_router_loss_fixture.py), and against finite differences.</summary>
public class RouterLossTests
{
    public static TheoryData<int> Cases => new() { 0, 1, 2 };

    static (int Rows, int Experts, int K, float[] Logits, JsonNode Case) Load(int index)
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "experts", "router_losses.json")))!;
        var c = root["cases"]![index]!;
        return ((int)c["rows"]!, (int)c["experts"]!, (int)c["k"]!, c["logits"]!.AsArray().Select(v => (float)(double)v!).ToArray(), c);
    }

    static float[] Floats(JsonNode node) => node.AsArray().Select(v => (float)(double)v!).ToArray();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Load_balancing_loss_equals_the_hugging_face_formula(int index)
    {
        var (rows, experts, k, logits, c) = Load(index);
        var gradient = new float[rows * experts];
        double loss = RouterLosses.LoadBalancing(logits, rows, experts, k, gradient);
        Assert.Equal((double)c["balance_loss"]!, loss, 1e-6);
        TestData.AssertClose(Floats(c["balance_grad"]!), gradient, 1e-5, "balance gradient");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Z_loss_equals_the_st_moe_formula(int index)
    {
        var (rows, experts, _, logits, c) = Load(index);
        var gradient = new float[rows * experts];
        double loss = RouterLosses.ZLoss(logits, rows, experts, gradient);
        Assert.Equal((double)c["z_loss"]!, loss, 1e-5);
        TestData.AssertClose(Floats(c["z_grad"]!), gradient, 1e-5, "z-loss gradient");
    }

    [Fact]
    public void Gradients_pass_finite_differences_and_scale_accumulates()
    {
        var (rows, experts, k, logits, _) = Load(1);
        var balance = new float[rows * experts];
        var z = new float[rows * experts];
        RouterLosses.LoadBalancing(logits, rows, experts, k, balance, scale: 0.5f);
        RouterLosses.ZLoss(logits, rows, experts, z, scale: 0.5f);
        const float h = 1e-3f;
        foreach (int i in new[] { 0, 7, 19, rows * experts - 1 })
        {
            var plus = (float[])logits.Clone(); plus[i] += h;
            var minus = (float[])logits.Clone(); minus[i] -= h;
            // A step this small does not change any top-k choice in this case (the choices carry no gradient).
            double balanceDifference = (RouterLosses.LoadBalancing(plus, rows, experts, k) - RouterLosses.LoadBalancing(minus, rows, experts, k)) / (2 * h);
            double zDifference = (RouterLosses.ZLoss(plus, rows, experts) - RouterLosses.ZLoss(minus, rows, experts)) / (2 * h);
            Assert.Equal(0.5 * balanceDifference, balance[i], 3e-4);
            Assert.Equal(0.5 * zDifference, z[i], 3e-4);
        }
    }

    [Fact]
    public void Perfect_balance_gives_k()
    {
        // Four rows, each with a different favourite among four equally likely-on-average experts, k = 1.
        float[] logits = [2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2];
        Assert.Equal(1.0, RouterLosses.LoadBalancing(logits, 4, 4, 1), 9);
    }
}
