using System.CommandLine;
using System.Text.Json;
using Hone.Formats;
using Hone.Transforms.Merging;

namespace Hone.Cli.Commands;

internal static class MoeCommand
{
    public static Command Create()
    {
        var cmd = new Command("moe", "Mixtures of experts: build one out of dense models, prune the experts a text rarely uses.");
        cmd.Subcommands.Add(Build());
        cmd.Subcommands.Add(Prune());
        return cmd;
    }

    static Command Prune()
    {
        var model = new ModelInput("the mixture of experts to prune");
        var data = new Option<string>("--data") { Description = "calibration text (plain text, tokenized whole): its routing decides which experts stay", Required = true };
        var keep = new Option<int>("--keep") { Description = "experts each sparse layer keeps: the most routed on the calibration text", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors) or a .gguf file", Required = true };
        var ctx = new Option<int>("--ctx") { Description = "calibration window length (at most the model's context)", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var tokens = new Option<int>("--tokens") { Description = "use at most this many tokens of the calibration text", DefaultValueFactory = _ => 8192 }.Within(1, int.MaxValue);
        var type = CliSupport.MatrixType("weight type of the output (default f32)");
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("prune",
            "Expert pruning: route a calibration text through the mixture and keep, in every sparse layer, the --keep experts that received the most " +
            "routed choices (their router rows too; the softmax then runs over the kept experts). Writes an ordinary checkpoint with fewer experts. " +
            "Measure what it costs with hone perplexity on held-out text.")
        {
            data, keep, output, ctx, tokens, type, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var report = Hone.Transforms.Pruning.ExpertPruner.Prune(new Hone.Transforms.Pruning.ExpertPruneOptions(model.Read(r)!, r.GetValue(data)!, r.GetValue(keep),
                r.GetValue(output)!, r.GetValue(ctx), r.GetValue(tokens), CliSupport.ParseType(r.GetValue(type)), r.GetValue(threads)), m => Console.Error.WriteLine(m));
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    output = report.Output, experts_before = report.ExpertsBefore, experts_after = report.ExpertsAfter, experts_per_token = report.ExpertsPerToken,
                    parameters_before = report.ParametersBefore, parameters_after = report.ParametersAfter, calibration_tokens = report.CalibrationTokens,
                    layers = report.Kept.Select(k => new { layer = k.Layer, kept = k.Kept, share = k.Share }), notes = report.Notes,
                }, CliSupport.JsonOptions));
                return 0;
            }
            Console.WriteLine($"wrote {report.Output}: {report.ExpertsAfter} of {report.ExpertsBefore} experts per layer, {report.ParametersAfter:N0} of {report.ParametersBefore:N0} parameters " +
                              $"({1 - (double)report.ParametersAfter / report.ParametersBefore:P1} removed)");
            foreach (var (layer, kept, share) in report.Kept)
                Console.WriteLine($"  layer {layer}: kept experts {string.Join(", ", kept)} ({share:P1} of the calibration's routed choices)");
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            return 0;
        }));
        return cmd;
    }

    static Command Build()
    {
        var config = new Argument<string?>("config")
        {
            Description = "a mergekit-moe YAML configuration: base_model, experts (source_model — \"model+adapter\" folds an adapter in —, " +
                          "positive_prompts, negative_prompts, noise_scale, residual_scale), gate_mode, dtype, experts_per_token",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors) or a .gguf file", Required = true };
        var upcycle = new Option<string?>("--upcycle") { Description = "instead of a configuration: make a mixture of --experts copies of this dense model (routers from --gate-mode, random by default), to train afterwards" };
        var experts = new Option<int>("--experts") { Description = "--upcycle: how many copies", DefaultValueFactory = _ => 4 };
        var perToken = new Option<int?>("--experts-per-token", "-k") { Description = "experts each token is routed to (default: the configuration's experts_per_token, else 2)" };
        var gate = new Option<string?>("--gate-mode")
        {
            Description = "how routers start (default: the configuration's gate_mode, else hidden; random for --upcycle): hidden (the base model's residual " +
                          "entering each layer at the prompts' last token, positives minus negatives, unit length), hidden_avg (the mean over the prompt's tokens), " +
                          "cheap_embed (the prompts' summed token embeddings, every layer), random (standard normal), uniform_random (±1/√hidden)",
        };
        gate.AcceptOnlyFromAmong("hidden", "hidden_avg", "cheap_embed", "random", "uniform_random");
        var type = CliSupport.MatrixType("weight type of the output (default: the configuration's dtype, else f32)");
        var allowIdentical = new Option<bool>("--allow-identical-experts") { Description = "build even when every expert is the same model (upcycling)" };
        var seed = new Option<ulong>("--seed") { Description = "seed of random routers and noise_scale", DefaultValueFactory = _ => 0 };
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("build",
            "Build a Mixtral mixture of experts out of dense Llama/Mistral models of one shape, as mergekit-moe does: attention, norms and embeddings " +
            "from base_model, each expert's MLP from its model, routers from prompts (or random). The output loads in Hone and llama.cpp; " +
            "train it with `hone train` (routers, experts, load-balancing loss).")
        {
            config, output, upcycle, experts, perToken, gate, type, allowIdentical, seed, threads, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            MixtureBuildOptions options;
            if (r.GetValue(upcycle) is string dense)
            {
                if (r.GetValue(config) != null) throw new ArgumentException("give a configuration or --upcycle MODEL, not both");
                int count = r.GetValue(experts);
                if (count < 2) throw new ArgumentException($"--experts {count}: a mixture needs at least 2");
                options = new MixtureBuildOptions(dense, Enumerable.Repeat(new ExpertSource(dense), count).ToList(), r.GetValue(output)!, GateMode.Random,
                    AllowIdenticalExperts: true);
            }
            else
            {
                string path = r.GetValue(config) ?? throw new ArgumentException("a configuration file is required (or --upcycle MODEL)");
                options = MixtureBuildOptions.FromConfig(YamlConfigTree.Read(path), r.GetValue(output)!);
            }
            options = options with
            {
                ExpertsPerToken = r.GetValue(perToken) ?? options.ExpertsPerToken,
                GateMode = r.GetValue(gate) is string g ? Enum.Parse<GateMode>(g.Replace("_", ""), ignoreCase: true) : options.GateMode,
                Type = CliSupport.ParseType(r.GetValue(type)) ?? options.Type,
                AllowIdenticalExperts = options.AllowIdenticalExperts || r.GetValue(allowIdentical),
                Seed = r.GetValue(seed), Threads = r.GetValue(threads),
            };
            var report = MixtureBuilder.Build(options, m => Console.Error.WriteLine(m));
            if (r.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(report, CliSupport.JsonOptions)); return 0; }
            Console.WriteLine($"wrote {report.Output} ({report.Format}): {report.Experts} experts, {report.ExpertsPerToken} per token");
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            return 0;
        }));
        return cmd;
    }
}
