using Hone.Formats;
using Hone.Model;

namespace Hone.Training;

/// <summary>What a recipe set, and what the reader wants the user to know about it (keys accepted without effect,
/// LLaMA-Factory defaults applied, settings that differ in meaning).</summary>
public sealed record TrainRecipeResult(TrainOptions Options, IReadOnlyList<string> Notes);

/// <summary>
/// Binds a recipe's entries (<see cref="Recipe"/>, read from YAML by Hone.Recipes) to <see cref="TrainOptions"/>
/// through the one settings table (<see cref="TrainOptions.Settings"/>): Hone's keys, and LLaMA-Factory's names for the
/// same settings, so that a LLaMA-Factory LoRA/full/freeze SFT or pretraining recipe runs as it is. Unknown keys are
/// errors naming the line and the nearest valid key; values are checked against the same limits as the flags.
/// LLaMA-Factory's keys that combine into one of Hone's settings (use_dora and quantization_bit choose the method) or
/// change nothing here (logging, caching, distributed and precision switches) are handled below, each with its reason.
/// A recipe that uses LLaMA-Factory's names gets LLaMA-Factory's defaults where they differ: lora_alpha = 2 × rank and
/// no validation split unless val_size is given. Relative paths are relative to the working directory, as there.
/// </summary>
public static class TrainRecipe
{
    /// <summary>LLaMA-Factory keys accepted without effect on a Hone run, with why.</summary>
    static readonly Dictionary<string, string> Inert = new()
    {
        ["trust_remote_code"] = "Hone runs no code from the model's repository",
        ["overwrite_cache"] = "Hone keeps no tokenized-dataset cache",
        ["preprocessing_num_workers"] = "tokenization runs in this process",
        ["dataloader_num_workers"] = "data is tokenized once, in this process",
        ["ddp_timeout"] = "Hone trains in one process",
        ["plot_loss"] = "losses are written to metrics.jsonl; `hone report` draws them",
        ["report_to"] = "metrics are written to metrics.jsonl only",
        ["overwrite_output_dir"] = "Hone writes into output_dir whether or not it exists",
        ["per_device_eval_batch_size"] = "validation runs in batches of batch_size",
        ["flash_attn"] = "Hone has its own attention kernels",
        ["logging_dir"] = "metrics are written to output_dir/metrics.jsonl",
        ["run_name"] = "no experiment tracker is used",
    };

    /// <summary>LLaMA-Factory keys whose setting Hone does not have: refused, with why, rather than silently ignored.</summary>
    static readonly Dictionary<string, string> Unsupported = new()
    {
        ["adapter_name_or_path"] = "continuing a trained adapter is not supported; train a new one (or merge it first with `hone merge-adapter`)",
        ["deepspeed"] = "Hone trains in one process on the CPU",
        ["loraplus_lr_ratio"] = "LoRA+ is not implemented",
        ["pissa_init"] = "PiSSA initialization is not implemented",
        ["use_galore"] = "GaLore is not implemented",
        ["use_badam"] = "BAdam is not implemented",
        ["use_apollo"] = "APOLLO is not implemented",
        ["neat_packing"] = "packing without cross-attention is not implemented (packing: true packs with it)",
        ["mask_history"] = "masking earlier turns is not implemented (every assistant turn is a target)",
        ["streaming"] = "datasets are read whole",
        ["additional_target"] = "training extra modules beside the adapter is not implemented",
    };

    /// <summary>Keys handled below rather than through the table.</summary>
    static readonly string[] Special = ["use_dora", "quantization_bit", "bf16", "fp16", "pure_bf16", "do_train", "eval_strategy", "evaluation_strategy", "dataset_dir"];

    /// <summary>Every key a recipe may hold, for suggestions and help.</summary>
    public static IEnumerable<string> Keys =>
        TrainOptions.Settings.Select(s => s.Key)
            .Concat(TrainOptions.Settings.Where(s => s.LlamaFactoryKey != null).Select(s => s.LlamaFactoryKey!))
            .Concat(Special).Concat(Inert.Keys).Distinct();

    public static TrainRecipeResult Apply(Recipe recipe, TrainOptions baseline)
    {
        var o = baseline;
        var notes = new List<string>();
        var given = new Dictionary<string, RecipeEntry>();   // setting key → the entry that set it
        var lf = new Dictionary<string, RecipeEntry>();      // LLaMA-Factory-only keys given
        string? datasetDir = recipe.Entries.FirstOrDefault(e => e.Key == "dataset_dir")?.Text;

        foreach (var e in recipe.Entries)
        {
            if (Unsupported.TryGetValue(e.Key, out var why)) throw recipe.Error(e.Line, $"{e.Key}: {why}");
            if (Inert.TryGetValue(e.Key, out var inert)) { notes.Add($"{e.Key} accepted without effect: {inert}"); lf[e.Key] = e; continue; }
            if (Special.Contains(e.Key)) { lf[e.Key] = e; continue; }
            var spec = TrainOptions.Settings.FirstOrDefault(s => s.Key == e.Key) ?? TrainOptions.Settings.FirstOrDefault(s => s.LlamaFactoryKey == e.Key);
            if (spec == null)
            {
                string suggestion = Spelling.Suggestion(e.Key, Keys);
                throw recipe.Error(e.Line, $"unknown key '{e.Key}'{(suggestion.Length > 0 ? suggestion : "; `hone train --help` lists the settings (a recipe key is the flag's name with '_')")}");
            }
            if (given.TryGetValue(spec.Key, out var earlier))
                throw recipe.Error(e.Line, $"{e.Key} sets {spec.Key}, which line {earlier.Line} ({earlier.Key}) already set");
            given[spec.Key] = e;
            if (e.Key != spec.Key) lf[e.Key] = e;
            string? text = e.Text;
            IReadOnlyList<string>? list = e.List;
            if (e.Key == spec.LlamaFactoryKey)
            {
                if (text != null && spec.LlamaFactoryValues.TryGetValue(text.Trim().ToLowerInvariant(), out var mapped)) text = mapped;
                if (list != null) list = list.Select(i => spec.LlamaFactoryValues.TryGetValue(i.Trim().ToLowerInvariant(), out var m) ? m : i).ToList();
            }
            if (e.Key is "dataset" or "eval_dataset" && text != null) text = DatasetPath(recipe, e, text, datasetDir);
            try { o = spec.Set(o, spec.Parse(text, list)); }
            catch (Exception x) when (x is FormatException or ArgumentException or OverflowException)
            {
                throw recipe.Error(e.Line, $"{e.Key}: {x.Message}");
            }
        }

        // LLaMA-Factory's combined settings.
        if (lf.TryGetValue("do_train", out var doTrain) && !Bool(recipe, doTrain))
            throw recipe.Error(doTrain.Line, "do_train: false asks for no training; `hone train` trains (use `hone eval` to evaluate)");
        foreach (var key in new[] { "bf16", "fp16", "pure_bf16" })
            if (lf.TryGetValue(key, out var p) && Bool(recipe, p))
                notes.Add($"{key}: Hone trains in fp32 (there is no mixed-precision path); the run computes every product in fp32");
        foreach (var key in new[] { "eval_strategy", "evaluation_strategy" })
            if (lf.TryGetValue(key, out var s))
                switch (s.Text?.Trim().ToLowerInvariant())
                {
                    case "steps": break;
                    case "no": o = o with { EvalEvery = 0 }; break;
                    default: throw recipe.Error(s.Line, $"{key}: '{s}' is not supported (steps, with eval_steps; or no)");
                }
        if (lf.TryGetValue("use_dora", out var dora) && Bool(recipe, dora))
        {
            if (o.Method is not (TrainingMethod.Lora or TrainingMethod.Dora))
                throw recipe.Error(dora.Line, $"use_dora applies to LoRA; the method is {o.Method.ToString().ToLowerInvariant()}");
            o = o with { Method = TrainingMethod.Dora };
        }
        if (lf.TryGetValue("quantization_bit", out var bits) && !bits.IsNull)
        {
            string type = bits.Text?.Trim() switch
            {
                "4" => "q4_0",
                "8" => "q8_0",
                _ => throw recipe.Error(bits.Line, $"quantization_bit: expected 4 or 8, found '{bits}'"),
            };
            // use_dora made the method dora; over a quantized base that is qlora with DoRA adapters (PEFT's QDoRA).
            if (o.Method == TrainingMethod.Dora) o = o with { Method = TrainingMethod.QLora, AdapterKind = AdapterKinds.Dora.Name };
            if (o.Method is not (TrainingMethod.Lora or TrainingMethod.QLora))
                throw recipe.Error(bits.Line, $"quantization_bit needs finetuning_type: lora (a quantized base cannot be trained directly); the method is {o.Method.ToString().ToLowerInvariant()}");
            o = o with { Method = TrainingMethod.QLora, QloraType = type };
            notes.Add($"quantization_bit {bits.Text}: the frozen base is held as {type} (Hone's own {bits.Text}-bit blocks, not bitsandbytes' NF4)");
        }

        // LLaMA-Factory's defaults where they differ from Hone's, for a recipe written in its names.
        if (lf.Count > 0)
        {
            if (!given.ContainsKey("lora_alpha") && o.UsesAdapters && o.LoraAlpha != 2f * o.LoraR)
            {
                o = o with { LoraAlpha = 2f * o.LoraR };
                notes.Add($"lora_alpha not given: {o.LoraAlpha:G} (2 × lora_rank, LLaMA-Factory's default)");
            }
            if (!given.ContainsKey("val_split") && !given.ContainsKey("val_data") && o.ValSplit != 0)
            {
                o = o with { ValSplit = 0 };
                notes.Add("val_size not given: no validation split (LLaMA-Factory's default)");
            }
        }
        return new TrainRecipeResult(o, notes);
    }

    static bool Bool(Recipe recipe, RecipeEntry e) => e.Text?.Trim().ToLowerInvariant() switch
    {
        "true" or "yes" or "on" => true,
        "false" or "no" or "off" or null => false,
        _ => throw recipe.Error(e.Line, $"{e.Key}: expected true or false, found '{e}'"),
    };

    /// <summary>LLaMA-Factory names datasets in dataset_dir/dataset_info.json; Hone takes one path (a file, or a folder
    /// holding one data file), joined to dataset_dir when that is given.</summary>
    static string DatasetPath(Recipe recipe, RecipeEntry e, string text, string? datasetDir)
    {
        string path = datasetDir != null && !System.IO.Path.IsPathRooted(text) ? System.IO.Path.Combine(datasetDir, text.Trim()) : text.Trim();
        if (File.Exists(path) || Directory.Exists(path)) return path;
        if (text.Contains(','))
            throw recipe.Error(e.Line, $"{e.Key}: '{text}' names several datasets; Hone trains on one path (a file, or a folder holding one data file)");
        throw recipe.Error(e.Line, $"{e.Key}: '{path}' is not a file or folder; Hone takes the dataset as a path (dataset_info.json names are not read)");
    }
}
