using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Hone.Formats;
using Hone.Transforms.Merging;

namespace Hone.Cli.Commands;

internal static class MergeCommand
{
    public static Command Create()
    {
        var config = new Argument<string?>("config")
        {
            Description = "a mergekit YAML configuration: merge_method, models (model: PATH, parameters: …), base_model, parameters, dtype, tokenizer_source " +
                          "(base, a model's path, or union: the vocabulary the output takes when the models' differ; embedding and head rows are matched by token, " +
                          "a row a model lacks filled from the only model that has it, else the base's, else the mean of those that have it; union only for tokenizers " +
                          "that differ in added tokens or a vocabulary tail)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors, or a PEFT adapter with --adapter) or a .gguf file", Required = true };
        var type = CliSupport.MatrixType("weight type of the output (default: the configuration's dtype, else the first model's f32/f16/bf16; .gguf outputs may be quantized, e.g. q8_0)");
        var seed = new Option<ulong>("--seed") { Description = "seed of DARE's random drops (dare_linear, dare_ties): the same seed gives the same model", DefaultValueFactory = _ => 0 };
        var adapters = new Option<string[]>("--adapter")
        {
            Description = "instead of a configuration: combine these LoRA adapters (PEFT directories; repeat the option) into one adapter",
            AllowMultipleArgumentsPerToken = false,
        };
        var weights = new Option<string?>("--weights") { Description = "--adapter: comma-separated weights, one per adapter (default 1 each)" };
        var combination = new Option<string>("--combination")
        {
            Description = "--adapter: svd (each projection's ΔW = Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ re-factored to --rank by a truncated SVD: the best rank-r approximation) " +
                          "or concat (the ranks stacked: exact, rank Σ rᵢ)",
            DefaultValueFactory = _ => "svd",
        };
        combination.AcceptOnlyFromAmong("svd", "concat");
        var rank = new Option<int?>("--rank") { Description = "--adapter with svd: the output's rank (default: the largest input rank)" };
        var json = CliSupport.Json();
        string methods = string.Join("\n", MergeMethods.All.Select(m =>
            $"  {m.Name}: {m.Summary}" + (m.BaseModel == BaseModelUse.Required ? " [base_model]" : "") +
            string.Concat(m.ModelParameters.Select(p => $"\n      model parameter {p.Name}: {p.Description}")) +
            string.Concat(m.Parameters.Select(p => $"\n      parameter {p.Name}: {p.Description}"))));
        var cmd = new Command("merge",
            "Merge models of one architecture and shape into one, from a mergekit configuration, tensor by tensor (memory: about one tensor per model). " +
            "Parameters are numbers, gradients across the layers ([0, 0.5, 1]: layer l of L at l/(L-1), interpolated) or filtered lists " +
            "(- filter: self_attn / value: …). Or, with --adapter, combine LoRA adapters into one.\nMethods:\n" + methods)
        {
            config, output, type, seed, adapters, weights, combination, rank, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            var adapterPaths = r.GetValue(adapters) ?? [];
            if (adapterPaths.Length > 0)
            {
                if (r.GetValue(config) != null) throw new ArgumentException("give a configuration or --adapter directories, not both");
                var parsedWeights = r.GetValue(weights)?.Split(',').Select(w => double.TryParse(w.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
                    ? v : throw new ArgumentException($"--weights: '{w}' is not a number")).ToList();
                var combined = AdapterCombiner.Combine(new AdapterCombineOptions(adapterPaths, r.GetValue(output)!, parsedWeights,
                    r.GetValue(combination) == "concat" ? AdapterCombination.Concat : AdapterCombination.Svd, r.GetValue(rank)), m => Console.Error.WriteLine(m));
                if (r.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(combined, CliSupport.JsonOptions)); return 0; }
                Console.WriteLine($"wrote {combined.Output}: {combined.Projections} projections at rank {combined.Rank}" +
                                  (combined.RetainedEnergy is double e ? $" (the kept singular values hold at least {e:P2} of every projection's ΔW)" : ""));
                foreach (var n in combined.Notes) Console.WriteLine($"  {n}");
                return 0;
            }
            string path = r.GetValue(config) ?? throw new ArgumentException("a configuration file is required (or --adapter DIR to combine adapters)");
            if (r.GetValue(weights) != null || r.GetValue(rank) != null) throw new ArgumentException("--weights and --rank go with --adapter; a configuration gives its own parameters");
            var options = ModelMergeOptions.FromConfig(YamlConfigTree.Read(path), r.GetValue(output)!);
            options = options with { Type = CliSupport.ParseType(r.GetValue(type)) ?? options.Type, Seed = r.GetValue(seed) };
            var report = ModelMerger.Merge(options, m => Console.Error.WriteLine(m), CliSupport.Progress("merging"), cancel);
            if (r.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(report, CliSupport.JsonOptions)); return 0; }
            Console.WriteLine($"wrote {report.Output} ({report.Format}): {report.Method} of {report.Models} models, {report.Tensors} tensors, {CliSupport.Bytes(report.Bytes)}");
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            return 0;
        }));
        return cmd;
    }
}
