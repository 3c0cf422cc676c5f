using System.CommandLine;
using System.Text.Json;
using Hone.Evaluation;
using Hone.Transforms.Pruning;

namespace Hone.Cli.Commands;

internal static class PruneCommand
{
    public static Command Create()
    {
        var cmd = new Command("prune", "Make a model smaller by removing what a calibration text shows it barely uses. Mixtures of experts: hone moe prune.");
        cmd.Subcommands.Add(Layers());
        cmd.Subcommands.Add(Width());
        cmd.Subcommands.Add(Sparse());
        return cmd;
    }

    /// <summary>--eval: a held-out text scored (perplexity, protocol full, exact precision) before and after a pruning.</summary>
    sealed class HeldOut(string? path)
    {
        public double? Before { get; private set; }
        public double? After { get; private set; }

        public static HeldOut From(ParseResult r, Option<string?> eval)
        {
            string? path = r.GetValue(eval);
            if (path != null && !File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
            return new HeldOut(path);
        }

        public void Score(string input, string output, int context, int threads)
        {
            if (path == null) return;
            Console.Error.WriteLine($"scoring {path} before and after...");
            Before = Perplexity.OfFile(input, path, context, threads).Perplexity;
            After = Perplexity.OfFile(output, path, context, threads).Perplexity;
        }

        public void Print()
        {
            if (Before is double b && After is double a)
                Console.WriteLine($"perplexity of {Path.GetFileName(path)}: {b:F4} before, {a:F4} after ({a / b - 1:+0.0%;-0.0%})");
        }
    }

    static Command Sparse()
    {
        var model = new ModelInput("the model to prune");
        var imatrix = new Option<string?>("--imatrix") { Description = "an importance matrix of this model (hone imatrix MODEL --data F): its column sums give each input's activation norm (Wanda)" };
        var magnitude = new Option<bool>("--magnitude") { Description = "score by |W_ij| alone instead (magnitude pruning, the baseline Wanda improves on)" };
        var sparsity = new Option<double?>("--sparsity") { Description = "unstructured: the share of each output row's weights to zero (default 0.5)" };
        var pattern = new Option<string?>("--pattern") { Description = "N:M instead: in every group of M consecutive inputs keep the N highest-scoring (2:4)" };
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors) or a .gguf file", Required = true };
        var eval = new Option<string?>("--eval") { Description = "a held-out text to score before and after (perplexity, protocol full, exact precision)" };
        var ctx = new Option<int>("--ctx") { Description = "window length for --eval", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var type = CliSupport.MatrixType("weight type of the output (default f32)");
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("sparse",
            "Unstructured or N:M pruning (Wanda): score each weight |W_ij|·‖X_j‖, with the input activation norms from an importance matrix, and " +
            "zero the lowest-scoring share of each output row, or all but the N best of every M consecutive inputs. Every projection of the layers " +
            "is pruned; the embedding and output head are not. The output keeps its shape, zeros in place (Hone's kernels are dense: no faster).")
        {
            imatrix, magnitude, sparsity, pattern, output, eval, ctx, type, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            if ((r.GetValue(imatrix) == null) == !r.GetValue(magnitude))
                throw new ArgumentException("give --imatrix F (Wanda: |W|·‖X‖) or --magnitude (|W| alone), one of the two");
            int keep = 0, group = 0;
            if (r.GetValue(pattern) is string p)
            {
                if (r.GetValue(sparsity) != null) throw new ArgumentException("give --sparsity or --pattern, not both");
                var parts = p.Split(':');
                if (parts.Length != 2 || !int.TryParse(parts[0], out keep) || !int.TryParse(parts[1], out group))
                    throw new ArgumentException($"--pattern: '{p}' is not N:M (such as 2:4)");
            }
            string input = model.Read(r)!;
            var scored = HeldOut.From(r, eval);
            var report = SparsePruner.Prune(new SparsePruneOptions(input, r.GetValue(imatrix)!, r.GetValue(output)!, r.GetValue(sparsity) ?? 0.5, keep, group,
                CliSupport.ParseType(r.GetValue(type))), m => Console.Error.WriteLine(m));
            scored.Score(input, report.Output, r.GetValue(ctx), r.GetValue(threads));
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    output = report.Output, pattern = report.Pattern, zeroed = report.Zeroed, prunable = report.Prunable, parameters = report.Parameters,
                    perplexity_before = scored.Before, perplexity_after = scored.After, protocol = report.Protocol, notes = report.Notes,
                }, CliSupport.JsonOptions));
                return 0;
            }
            Console.WriteLine($"wrote {report.Output}: {report.Pattern}, {report.Zeroed:N0} of {report.Prunable:N0} layer weights zeroed " +
                              $"({(double)report.Zeroed / report.Prunable:P1}; {(double)report.Zeroed / report.Parameters:P1} of all {report.Parameters:N0} parameters)");
            scored.Print();
            Console.WriteLine(report.Protocol);
            return 0;
        }));
        return cmd;
    }

    static Command Width()
    {
        var model = new ModelInput("the model to slice");
        var data = new Option<string>("--data") { Description = "calibration text (plain text): the principal directions of its residual stream are kept", Required = true };
        var fraction = new Option<double>("--fraction") { Description = "share of the residual stream's dimensions to delete", DefaultValueFactory = _ => 0.25 };
        var multiple = new Option<int>("--multiple") { Description = "the new width is a multiple of this (32 keeps Q8_0/Q4_0 possible, 256 k-quants)", DefaultValueFactory = _ => 32 }.Within(1, 4096);
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors) or a .gguf file", Required = true };
        var eval = new Option<string?>("--eval") { Description = "a held-out text to score before and after (perplexity, protocol full, exact precision, windows of --ctx)" };
        var ctx = new Option<int>("--ctx") { Description = "window length for calibration and --eval (at most the model's context)", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var tokens = new Option<int>("--tokens") { Description = "use at most this many tokens of the calibration text", DefaultValueFactory = _ => 16384 }.Within(1, int.MaxValue);
        var type = CliSupport.MatrixType("weight type of the output (default f32)");
        var rotation = new Option<string>("--rotation")
        {
            Description = "single (default): one rotation for all layers, an ordinary checkpoint that llama.cpp loads too; per-layer: SliceGPT proper, " +
                          "a rotation at every block boundary found in order on the already-sliced model's stream, with a shortcut matrix [D', D'] " +
                          "on every residual connection (more accurate; the output carries Hone's shortcut tensors, so only Hone runs it: llama.cpp " +
                          "cannot load it, and Hone cannot train it; calibration runs the text once per boundary, 2L + 1 times)",
            DefaultValueFactory = _ => "single",
        }.AcceptOnlyFromAmong("single", "per-layer");
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("width",
            "Width pruning (SliceGPT): fold every RMSNorm's scale into the projections that read it, rotate the residual stream onto the " +
            "principal directions of its calibration rows, and delete the --fraction least used, so the hidden size shrinks. With the default " +
            "--rotation single, writes an ordinary checkpoint of the smaller width (llama.cpp loads a GGUF output; the head is untied from the " +
            "embedding); --rotation per-layer writes a model with residual shortcut tensors that only Hone runs. " +
            "With --eval, prints the perplexity of a held-out text before and after.")
        {
            data, fraction, multiple, output, eval, ctx, tokens, type, rotation, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            string input = model.Read(r)!;
            var scored = HeldOut.From(r, eval);
            var report = WidthSlicer.Slice(new WidthSliceOptions(input, r.GetValue(data)!, r.GetValue(output)!, r.GetValue(fraction), r.GetValue(multiple),
                r.GetValue(ctx), r.GetValue(tokens), CliSupport.ParseType(r.GetValue(type)), r.GetValue(threads),
                r.GetValue(rotation) == "per-layer" ? WidthRotation.PerLayer : WidthRotation.Single), m => Console.Error.WriteLine(m));
            scored.Score(input, report.Output, r.GetValue(ctx), r.GetValue(threads));
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    output = report.Output, width_before = report.WidthBefore, width_after = report.WidthAfter, parameters_before = report.ParametersBefore,
                    parameters_after = report.ParametersAfter, energy_kept = report.Kept, rotation = report.Rotation == WidthRotation.PerLayer ? "per-layer" : "single",
                    calibration_tokens = report.CalibrationTokens,
                    perplexity_before = scored.Before, perplexity_after = scored.After, protocol = report.Protocol, notes = report.Notes,
                }, CliSupport.JsonOptions));
                return 0;
            }
            Console.WriteLine($"wrote {report.Output}: width {report.WidthAfter} of {report.WidthBefore}, {report.ParametersAfter:N0} of {report.ParametersBefore:N0} parameters " +
                              $"({1 - (double)report.ParametersAfter / report.ParametersBefore:P1} removed), {report.Kept:P2} of the residual energy kept ({report.KeptMeaning})");
            scored.Print();
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            Console.WriteLine(report.Protocol);
            return 0;
        }));
        return cmd;
    }

    static Command Layers()
    {
        var model = new ModelInput("the model to prune");
        var data = new Option<string>("--data") { Description = "calibration text (plain text): the layers are ranked by what they do to its hidden states", Required = true };
        var remove = new Option<int>("--remove", "-n") { Description = "how many layers to remove: those with the lowest block influence", DefaultValueFactory = _ => 1 }.Within(1, int.MaxValue);
        var layers = new Option<string?>("--layers") { Description = "remove exactly these layers instead (0-based, comma-separated); the ranking is still printed" };
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors) or a .gguf file", Required = true };
        var eval = new Option<string?>("--eval") { Description = "a held-out text to score before and after (perplexity, protocol full, exact precision, windows of --ctx)" };
        var ctx = new Option<int>("--ctx") { Description = "window length for calibration and --eval (at most the model's context)", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var tokens = new Option<int>("--tokens") { Description = "use at most this many tokens of the calibration text", DefaultValueFactory = _ => 16384 }.Within(1, int.MaxValue);
        var type = CliSupport.MatrixType("weight type of the output (default f32)");
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("layers",
            "Depth pruning (ShortGPT): run a calibration text through the model, rank each layer by its block influence — 1 − the mean cosine " +
            "similarity between the residual stream entering and leaving it, over every token — and remove the --remove least influential, " +
            "renumbering the rest. Writes an ordinary checkpoint (llama.cpp loads a GGUF output). With --eval, prints the perplexity of a held-out " +
            "text before and after.")
        {
            data, remove, layers, output, eval, ctx, tokens, type, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            IReadOnlyList<int>? chosen = r.GetValue(layers) is string list
                ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(x => int.TryParse(x, out int l) ? l : throw new ArgumentException($"--layers: '{x}' is not a layer number")).ToList()
                : null;
            if (chosen is { Count: 0 }) throw new ArgumentException("--layers: expected layer numbers such as 3,5");
            string input = model.Read(r)!;
            var scored = HeldOut.From(r, eval);
            var report = LayerPruner.Prune(new LayerPruneOptions(input, r.GetValue(data)!, r.GetValue(output)!, r.GetValue(remove), chosen,
                r.GetValue(ctx), r.GetValue(tokens), CliSupport.ParseType(r.GetValue(type)), r.GetValue(threads)), m => Console.Error.WriteLine(m));
            scored.Score(input, report.Output, r.GetValue(ctx), r.GetValue(threads));
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    output = report.Output, layers_before = report.LayersBefore, layers_after = report.LayersAfter, removed = report.Removed,
                    block_influence = report.Influence, parameters_before = report.ParametersBefore, parameters_after = report.ParametersAfter,
                    calibration_tokens = report.CalibrationTokens, perplexity_before = scored.Before, perplexity_after = scored.After, protocol = report.Protocol, notes = report.Notes,
                }, CliSupport.JsonOptions));
                return 0;
            }
            Console.WriteLine($"wrote {report.Output}: {report.LayersAfter} of {report.LayersBefore} layers, {report.ParametersAfter:N0} of {report.ParametersBefore:N0} parameters " +
                              $"({1 - (double)report.ParametersAfter / report.ParametersBefore:P1} removed)");
            for (int l = 0; l < report.Influence.Count; l++)
                Console.WriteLine($"  layer {l,3}: block influence {report.Influence[l]:F5}{(report.Removed.Contains(l) ? "  removed" : "")}");
            scored.Print();
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            Console.WriteLine(report.Protocol);
            return 0;
        }));
        return cmd;
    }
}
