using System.CommandLine;
using System.Text.Json;
using Hone.Transforms;

namespace Hone.Cli.Commands;

internal static class ConvertCommand
{
    public static Command Create()
    {
        var model = new ModelInput("source: a Hugging Face model directory, a .gguf file (or a folder holding one), or a PEFT adapter directory (with --base)");
        var output = new Option<string>("--out", "-o") { Description = "destination: a .gguf file, or a directory for Hugging Face safetensors", Required = true };
        var type = new Option<string?>("--type")
        {
            Description = $"weight type (default: keep each tensor's): {Hone.Model.MatrixTypes.Names}, or q4_k_m (llama.cpp's mixture: q4_k, with q6_k for the " +
                          "output head and for attn_v and ffn_down in the first and last eighth of the layers and every third layer between). Norms stay f32; " +
                          "rows that do not fit a block are stored as q8_0/f16, and each such tensor is listed. hq3_o (4.75 bits per weight) and hq4_o (5.75) are Hone's own " +
                          "outlier-aware types (blocks of 64: groups of 16 at 3 or 4 bits plus 2 exact fp16 outlier weights per block, chosen by importance-weighted " +
                          "rounding error); llama.cpp cannot load a file that uses them",
        };
        type.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is string name && !IsRecipe(name))
                try { Hone.Model.MatrixTypes.Parse(name); }
                catch (ArgumentException e) { result.AddError(e.Message); }
        });
        var imatrix = new Option<string?>("--imatrix")
        {
            Description = "an importance matrix (hone imatrix or llama-imatrix; GGUF or legacy .dat): q4_0, q4_k, q6_k, hq3_o and hq4_o weigh each weight's rounding error " +
                          "by its input column's mean squared activation, as llama-quantize --imatrix does (q8_0 ignores it, as llama.cpp's does; hq3_o/hq4_o also pick " +
                          "their outlier weights by it). Tensors the " +
                          "file has no entry for (token_embd, usually the output head) are quantized unweighted and listed; a damaged file or an entry " +
                          "of the wrong width is refused",
        };
        var typeFor = new Option<string[]>("--type-for")
        {
            Description = "PATTERN=TYPE, repeatable: 2D weights whose GGUF name matches PATTERN (a regular expression, searched; stacked experts are " +
                          "blk.N.ffn_down_exps.weight) are stored as TYPE; the first matching rule wins, before --type. A rule that matches nothing is refused. " +
                          "Example: --type q4_k --type-for ffn_down=q6_k --type-for 'blk\\.0\\.'=q8_0",
            AllowMultipleArgumentsPerToken = false,
        };
        var gptq = new Option<string?>("--gptq")
        {
            Description = "CALIBRATION.txt: quantize the layers' projections with GPTQ (Frantar et al. 2022): each weight column is rounded in turn and its " +
                          "rounding error pushed onto the columns not yet rounded through the inverse Hessian H = 2·Σx·xᵀ/N of the layer's input, which " +
                          "lowers ‖(W−Q)·X‖² on the calibration text's activations. The text is run through the source model at full precision first " +
                          "(one pass, or one per group of layers when the float64 Hessians of all layers exceed 4 GiB). Works with every type written " +
                          "(q8_0, q4_0, q4_k, q6_k, q4_k_m, --type-for): a block's scales are fitted, as the type's quantizer fits them (with --imatrix's " +
                          "weights when given), to the error-updated weights when the walk reaches the block. The token embedding and output head are not " +
                          "projections of a layer input and are quantized as usual; mixture-of-experts models are refused. The output reports the proxy " +
                          "loss tr((W−Q)·H·(W−Q)ᵀ) relative to tr(W·H·Wᵀ), with and without GPTQ",
        };
        var gptqDamp = new Option<double>("--gptq-damp") { Description = "GPTQ's dampening: λ = DAMP·mean(diag H) is added to H's diagonal before inverting it", DefaultValueFactory = _ => 0.01 };
        var gptqBlock = new Option<int>("--gptq-block") { Description = "GPTQ's lazy batch: columns whose updates to later columns are applied together (the result is the same up to rounding)", DefaultValueFactory = _ => 128 };
        var gptqActOrder = new Option<bool>("--gptq-act-order")
        {
            Description = "GPTQ walks the columns in descending diag H (most active inputs first). The stored tensor keeps its column order; since a block's " +
                          "columns are then no longer reached together, every block's scales are fitted to the unchanged weights before the walk (static groups)",
        };
        var gptqTokens = new Option<int>("--gptq-tokens") { Description = "calibration tokens taken from the start of the --gptq text", DefaultValueFactory = _ => 4096 };
        var gptqCtx = new Option<int>("--gptq-ctx") { Description = "tokens per calibration window, each run from an empty cache (capped at the model's context)", DefaultValueFactory = _ => 512 };
        var noVerify = new Option<bool>("--no-verify") { Description = "skip reloading the output and comparing its logits with the source" };
        var baseModel = new Option<string?>("--base") { Description = "converting a PEFT adapter directory to a llama.cpp LoRA .gguf: the base model it was trained on (" +
            string.Join("; ", Hone.Model.AdapterKinds.All.Where(k => k.LlamaCppType == null).Select(k => $"{k} adapters have no llama.cpp form")) + ")" };
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("convert",
            "Convert between Hugging Face directories and GGUF files, and requantize. GGUF files written here load in llama.cpp unchanged " +
            "(llama q/k rows are permuted for its rope, as its own converter does).")
        {
            output, type, imatrix, typeFor, gptq, gptqDamp, gptqBlock, gptqActOrder, gptqTokens, gptqCtx, noVerify, baseModel, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            string source = model.Read(r)!;
            if (File.Exists(Path.Combine(source, "adapter_config.json")))
            {
                string baseModelPath = r.GetValue(baseModel) ?? throw new ArgumentException("converting an adapter needs --base MODEL (the model it was trained on)");
                if (!r.GetValue(output)!.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) throw new ArgumentException("an adapter converts to a .gguf file");
                var notes = new List<string>();
                Hone.Transforms.AdapterGguf.Write(source, baseModelPath, r.GetValue(output)!, notes, cancel);
                foreach (var n in notes) Console.WriteLine(n);
                return 0;
            }
            string? typeName = r.GetValue(type);
            var rules = (r.GetValue(typeFor) ?? []).Select(TypeRule.Parse).ToList();
            GptqCalibration? calibration = r.GetValue(gptq) is string text
                ? new GptqCalibration(text, new GptqOptions(r.GetValue(gptqDamp), r.GetValue(gptqBlock), r.GetValue(gptqActOrder)), r.GetValue(gptqTokens), r.GetValue(gptqCtx))
                : null;
            if (calibration == null && new Option[] { gptqDamp, gptqBlock, gptqActOrder, gptqTokens, gptqCtx }.Any(x => r.GetResult(x) is { Implicit: false }))
                throw new ArgumentException("--gptq-damp, --gptq-block, --gptq-act-order, --gptq-tokens and --gptq-ctx need --gptq CALIBRATION.txt");
            var options = new ConvertOptions(source, r.GetValue(output)!, typeName != null && IsRecipe(typeName) ? null : CliSupport.ParseType(typeName),
                !r.GetValue(noVerify), r.GetValue(threads), r.GetValue(imatrix), rules, typeName != null && IsRecipe(typeName) ? QuantRecipe.Q4_K_M : null, calibration);
            var report = ModelConverter.Convert(options, m => Console.Error.WriteLine(m), cancel);
            if (r.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(report, CliSupport.JsonOptions)); return 0; }
            Console.WriteLine($"wrote {report.Output} ({report.Format}, {report.Tensors} tensors, {CliSupport.Bytes(report.Bytes)})");
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            return 0;
        }));
        return cmd;
    }

    static bool IsRecipe(string name) => name.Trim().Equals("q4_k_m", StringComparison.OrdinalIgnoreCase);
}
