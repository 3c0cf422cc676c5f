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
        var routing = new Option<bool>("--routing")
        {
            Description = "a mixture of experts: run the text of --data through the model and report each sparse layer's routing: " +
                          "every expert's load (its share of the tokens' k choices), the router's mean probability for it, the mean entropy " +
                          "of the routing distribution (ln E when the router cannot tell experts apart) and the load-balancing loss " +
                          "(Hugging Face's formula: k when balanced, up to k·E when one expert takes all)",
        };
        var data = new Option<string?>("--data") { Description = "the text file --routing runs (plain text, tokenized whole)" };
        var maxTokens = new Option<int>("--tokens") { Description = "with --routing: use at most this many tokens of the text", DefaultValueFactory = _ => 8192 };
        var ctx = new Option<int>("--ctx") { Description = "with --routing: window length (at most the model's context); each window runs from an empty cache", DefaultValueFactory = _ => 512 };
        var threads = CliSupport.Threads();
        var cmd = new Command("inspect", "Show a model's architecture, dimensions, tensors (type, shape), parameter count and file metadata; " +
                              "with --routing --data F, how a mixture of experts routes that text.")
        {
            json, check, routing, data, maxTokens, ctx, threads,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            if (r.GetValue(routing)) return Routing(model.Read(r)!, r.GetValue(data), r.GetValue(ctx), r.GetValue(maxTokens), r.GetValue(threads), r.GetValue(json));
            if (r.GetValue(data) != null) throw new ArgumentException("--data is the text for --routing; add --routing");
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

    static int Routing(string model, string? data, int context, int maxTokens, int threads, bool json)
    {
        if (data == null) throw new ArgumentException("--routing needs --data FILE: the text to route");
        if (context < 1) throw new ArgumentException($"--ctx must be positive, got {context}");
        if (maxTokens < 1) throw new ArgumentException($"--tokens must be positive, got {maxTokens}");
        var (statistics, tokens, windows) = Inference.RoutingProbe.Run(model, data, context, maxTokens, threads);
        var layers = statistics.Layers().ToList();
        string protocol = $"{tokens} tokens of {Path.GetFileName(data)} in {windows} window(s) of up to {context}, each from an empty cache; " +
                          $"load = share of the {statistics.ExpertsPerToken} choices per token; balance loss = E·Σ f·P (Hugging Face's load_balancing_loss_func)";
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                tokens, windows, experts = statistics.Experts, experts_per_token = statistics.ExpertsPerToken, protocol,
                layers = layers.Select(l => new
                {
                    layer = l.Layer, load = l.Load, mean_probability = l.MeanProbability, entropy = l.Entropy, max_entropy = l.MaxEntropy,
                    balance_loss = l.BalanceLoss,
                }),
            }, CliSupport.JsonOptions));
            return 0;
        }
        Console.WriteLine(protocol);
        Console.WriteLine($"{"layer",5}  {"entropy",-15}  {"balance loss",-12}  load per expert (%)");
        foreach (var l in layers)
            Console.WriteLine($"{l.Layer,5}  {l.Entropy,6:F3} of {l.MaxEntropy,5:F3}  {l.BalanceLoss,12:F3}  {string.Join(" ", l.Load.Select(x => (100 * x).ToString("F1")))}");
        return 0;
    }
}
