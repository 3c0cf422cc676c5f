using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Inference;
using Hone.Tensors;

namespace Hone.Cli.Commands;

internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var file = new Option<string>("--file", "-f") { Description = "a UTF-8 text file", Required = true };
        var ctx = new Option<int>("--ctx", "-c") { Description = "window length in tokens (at most the model's context)", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var protocol = new Option<string>("--protocol") { Description = "full | llama.cpp (see below)", DefaultValueFactory = _ => "full" };
        var stride = new Option<int?>("--stride") { Description = "full protocol: how far windows advance (default: ctx, no overlap)" }.Within(1, int.MaxValue);
        var adapter = new Option<string?>("--adapter") { Description = $"apply an adapter: a PEFT directory ({string.Join(", ", Hone.Model.AdapterKinds.Names)}) or a llama.cpp LoRA .gguf" };
        var precision = CliSupport.Precision(measuring: true);
        var skip = new Option<float>("--moe-skip-threshold")
        {
            Description = "a mixture of experts: skip each token's routed experts after its first whose weight is under this (dynamic skipping; " +
                          "with normalized top-k the kept weights are rescaled to sum to 1); 0 = run every chosen expert",
        }.Within(0f, 1f);
        var expertCache = new CliSupport.ExpertCacheOptions();
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("perplexity",
            "Perplexity and bits per byte of a text. Log-likelihoods accumulate in double.\n" +
            "Protocol full: BOS + the whole text, windows of ctx advancing by stride, every token after BOS scored once.\n" +
            "Protocol llama.cpp: as llama-perplexity — chunks of ctx tokens, each chunk's first token replaced by BOS (when the tokenizer adds one), positions ctx/2..ctx-2 scored.\n" +
            "Precision: exact by default (fp32 activations; see --precision).\n" +
            "JSON: ppl, bits_per_byte, tokens_scored, protocol, ctx, stride, nll, bytes_scored, precision.")
        {
            file, ctx, protocol, stride, adapter, precision, skip, threads, json,
        };
        model.AddTo(cmd);
        expertCache.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var kind = r.GetValue(protocol) switch
            {
                "full" => PerplexityProtocol.Full,
                "llama.cpp" or "llamacpp" => PerplexityProtocol.LlamaCpp,
                var other => throw new ArgumentException($"unknown protocol '{other}': use full or llama.cpp"),
            };
            var computePrecision = CliSupport.ParsePrecision(r.GetValue(precision));
            string path = r.GetValue(file)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
            string text = File.ReadAllText(path);
            int context = r.GetValue(ctx);
            if (r.GetValue(stride) is int s && s > context) throw new ArgumentException($"--stride {s} is more than --ctx {context}");
            using var loaded = LoadedModel.Open(model.Read(r)!, r.GetValue(adapter), r.GetValue(threads), context, maxBatch: context, computePrecision,
                expertCache: expertCache.Read(r));
            float threshold = r.GetValue(skip);
            if (threshold > 0 && !loaded.Weights.Config.IsMixtureOfExperts) throw new ArgumentException("--moe-skip-threshold applies to mixtures of experts; this model is dense");
            loaded.Model.ExpertSkipThreshold = threshold;
            var tokens = loaded.Tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
            long SpanBytes(int start, int count) => Encoding.UTF8.GetByteCount(loaded.Tokenizer.Decode(tokens.AsSpan(start, count)));
            var result = Perplexity.Compute(loaded.Model, tokens, Perplexity.BosFor(kind, loaded.Tokenizer), SpanBytes,
                new PerplexityOptions(context, kind, r.GetValue(stride)), CliSupport.Progress("perplexity"));
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["ppl"] = result.Perplexity, ["bits_per_byte"] = result.BitsPerByte, ["tokens_scored"] = result.TokensScored,
                    ["protocol"] = result.Protocol, ["ctx"] = result.Context, ["stride"] = result.Stride, ["nll"] = result.NegativeLogLikelihood,
                    ["bytes_scored"] = result.ScoredBytes, ["tokens"] = result.Tokens, ["adapter"] = loaded.AdapterPath,
                    ["precision"] = computePrecision.Name(),
                    ["moe_skip_threshold"] = threshold > 0 ? threshold : null,
                    ["skipped_expert_share"] = threshold > 0 ? (double)loaded.Model.SkippedExpertRuns / Math.Max(1, loaded.Model.RoutedExpertRuns) : null,
                    ["expert_cache"] = CliSupport.ExpertCacheJson(loaded.ExpertCache),
                }.ToJsonString());
                return 0;
            }
            Console.WriteLine($"perplexity {result.Perplexity:F4}  bits/byte {result.BitsPerByte:F4}  ({result.TokensScored:N0} tokens scored, protocol {result.Protocol}, ctx {result.Context}, precision {computePrecision.Name()})");
            if (threshold > 0)
                Console.WriteLine($"skipped {(double)loaded.Model.SkippedExpertRuns / Math.Max(1, loaded.Model.RoutedExpertRuns):P1} of {loaded.Model.RoutedExpertRuns:N0} routed expert evaluations (weight under {threshold})");
            if (loaded.ExpertCache != null) Console.WriteLine(loaded.ExpertCache.Statistics.Summary);
            return 0;
        }));
        return cmd;
    }
}
