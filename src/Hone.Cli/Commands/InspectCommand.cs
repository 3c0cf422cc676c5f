using System.CommandLine;
using System.Text.Json;
using Hone.Model;

namespace Hone.Cli.Commands;

internal static class InspectCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var json = CliSupport.Json();
        var check = new Option<bool>("--check") { Description = "also load every tensor and check presence, shapes, types and that all values are finite" };
        var cmd = new Command("inspect", "Show a model's architecture, dimensions, tensors (type, shape), parameter count and file metadata.")
        {
            json, check,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            using var checkpoint = Checkpoint.Open(model.Read(r)!);
            var s = ModelSummary.Create(checkpoint);
            if (r.GetValue(check))
            {
                using var weights = LlamaWeights.Load(checkpoint);
                Console.Error.WriteLine($"check: all {s.Tensors.Count} tensors present with the expected shapes, supported types and finite values");
            }
            if (r.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(s, CliSupport.JsonOptions)); return 0; }
            var c = s.Config;
            Console.WriteLine($"model        {s.Path} ({s.Format})");
            Console.WriteLine($"architecture {c.Architecture}  layers {c.Layers}  hidden {c.HiddenSize}  ffn {c.IntermediateSize}  vocab {c.VocabSize}");
            Console.WriteLine($"attention    heads {c.Heads}  kv heads {c.KvHeads}  head dim {c.HeadDim}  bias {(c.AttentionBias ? "q,k,v" : "none")}");
            if (c.IsMixtureOfExperts)
            {
                var sparse = Enumerable.Range(0, c.Layers).Where(c.IsSparseLayer).ToList();
                Console.WriteLine($"experts      {c.Experts} per layer, {c.ExpertsPerToken} per token{(c.NormalizeTopK ? " (weights renormalized)" : "")}  expert ffn {c.ExpertFeedForwardSize}" +
                                  $"{(c.SharedExpertFeedForwardSize > 0 ? $"  shared expert ffn {c.SharedExpertFeedForwardSize}" : "")}  sparse layers {sparse.Count} of {c.Layers}" +
                                  $"  active parameters {c.ActiveParameterCount:N0} of {c.ParameterCount:N0}");
            }
            Console.WriteLine($"rope         theta {c.RopeTheta:G}  dims {c.RotaryDims}  layout {c.RopeLayout}{(c.RopeLlama3 != null ? $"  llama3 scaling ×{c.RopeLlama3.Factor:G}" : "")}{(c.RopeLinearFactor != 1 ? $"  linear ×{c.RopeLinearFactor:G}" : "")}");
            Console.WriteLine($"other        rms eps {c.RmsNormEps:G}  context {c.MaxPositions}  tied embeddings {(c.TiedEmbeddings ? "yes" : "no")}");
            Console.WriteLine($"parameters   {s.ParameterCount:N0} ({string.Join(", ", s.ParametersByType.Select(kv => $"{kv.Key} {kv.Value:N0}"))})  data {CliSupport.Bytes(s.TensorBytes)}");
            Console.WriteLine();
            int width = Math.Max(6, s.Tensors.Max(t => t.SourceName.Length));
            Console.WriteLine($"{"tensor".PadRight(width)}  {"type",-6}  shape");
            foreach (var t in s.Tensors) Console.WriteLine($"{t.SourceName.PadRight(width)}  {t.Type,-6}  [{string.Join(", ", t.Shape)}]");
            if (s.Metadata.Count > 0)
            {
                Console.WriteLine();
                int kw = s.Metadata.Max(kv => kv.Key.Length);
                foreach (var (k, v) in s.Metadata) Console.WriteLine($"{k.PadRight(kw)}  {v}");
            }
            return 0;
        }));
        return cmd;
    }
}
