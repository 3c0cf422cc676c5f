using System.CommandLine;
using System.Text.Json;
using Hone.Formats;
using Hone.Training;

namespace Hone.Cli.Commands;

internal static class TrainCommand
{
    /// <summary>`hone train`'s options are generated from <see cref="TrainOptions.Settings"/>: a flag per setting (with its
    /// aliases, limits checked at parse time), the positional model (or -m), --config for a recipe, --json.</summary>
    public static Command Create()
    {
        var defaults = new TrainOptions();
        var modelSetting = TrainOptions.Setting("model")!;
        var model = new ModelInput(modelSetting.Description + "; optional when the recipe names it", required: false);
        var config = new Option<string?>("--config", "-c")
        {
            Description = "a recipe (YAML): any setting below under its name with '_' (lora_r, seq_len; nested keys join with '_': lora: {r: 8}), " +
                          "or LLaMA-Factory's names for the same settings (model_name_or_path, finetuning_type, lora_rank, cutoff_len, learning_rate, " +
                          "per_device_train_batch_size, output_dir, dataset as a path, …); flags override it",
        };
        var json = CliSupport.Json();
        var cmd = new Command("train",
            "Fine-tune a model: continued pretraining (cpt), supervised fine-tuning (sft) or knowledge distillation from a --teacher or a --teacher-cache (distill) with full, freeze, LoRA, DoRA or QLoRA. " +
            "Shows a live progress bar (loss, learning rate, tokens/s, ETA), appends metrics to OUT/metrics.jsonl, checkpoints every " +
            "--save-every steps and on Ctrl-C or SIGTERM (resume with --resume), and writes a PEFT adapter or a Hugging Face model to OUT. " +
            "Every limit is checked before the model loads.");
        model.AddTo(cmd);
        cmd.Options.Add(config);
        var flags = new List<(SettingSpec<TrainOptions> Setting, Option Option)>();
        foreach (var setting in TrainOptions.Settings)
        {
            if (setting == modelSetting) continue;
            var option = Generate(setting, defaults);
            cmd.Options.Add(option);
            flags.Add((setting, option));
        }
        cmd.Options.Add(json);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var o = defaults;
            if (r.GetValue(config) is string recipePath)
            {
                var recipe = TrainRecipe.Apply(YamlRecipe.Read(recipePath), o);
                o = recipe.Options;
                foreach (var note in recipe.Notes) Console.Error.WriteLine($"recipe: {note}");
            }
            foreach (var (setting, option) in flags)
            {
                var given = r.GetResult(option);
                if (given == null || given.Implicit) continue;
                object? value = option switch
                {
                    Option<bool> b => r.GetValue(b),
                    Option<string?> t when setting.Key == "resume" => r.GetValue(t) ?? "auto",
                    Option<string?> t => setting.Parse(r.GetValue(t)),
                    _ => throw new InvalidOperationException(setting.Key),
                };
                o = setting.Set(o, value);
            }
            if (model.Read(r) is string m) o = o with { Model = m };

            var reporter = new ConsoleTrainingReporter();
            using var cancel = CliSupport.CancelOnCtrlC(terminateToo: true);
            cancel.Token.Register(() => Console.Error.WriteLine("\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C or SIGTERM again to abort)..."));
            var summary = Trainer.Run(o, TrainingDataLoader.Load, reporter, cancel.Token);
            reporter.Finish();
            if (r.GetValue(json)) { Console.WriteLine(Trainer.SummaryJson(summary).ToJsonString(new JsonSerializerOptions { WriteIndented = true })); return summary.Interrupted ? 130 : 0; }
            Console.WriteLine($"{(summary.Interrupted ? "interrupted" : summary.EarlyStopped ? "stopped early" : "done")}: {summary.Steps}/{summary.TotalSteps} steps, " +
                              $"{summary.Tokens:N0} tokens in {TimeSpan.FromSeconds(summary.Seconds):hh\\:mm\\:ss} ({summary.Tokens / Math.Max(summary.Seconds, 1e-9):F0} tokens/s)");
            Console.WriteLine($"final loss {summary.FinalLoss:F4}" + (summary.BestValidationLoss is double v ? $", best validation loss {v:F4}" : "") +
                              $", trainable parameters {summary.TrainableParameters:N0}, peak memory {CliSupport.Bytes(summary.PeakWorkingSetBytes)}");
            foreach (var path in summary.Written) Console.WriteLine($"wrote {path}");
            if (summary.Interrupted) Console.WriteLine($"resume with: hone train {o.Model} --out {o.Out} --resume (and the same options)");
            return summary.Interrupted ? 130 : 0;
        }));
        return cmd;
    }

    /// <summary>The command-line option of one setting: a switch for booleans, otherwise a value read and range-checked
    /// by the setting itself at parse time (so `--lora-r 300` fails before anything loads, naming the flag).</summary>
    internal static Option Generate(SettingSpec<TrainOptions> setting, TrainOptions defaults)
    {
        string description = setting.Description;
        if (setting.RangeText is string range && setting.Kind is SettingKind.Integer or SettingKind.Real) description += $"; {range}";
        if (setting.Show(defaults) is string shown && setting.Key != "threads") description += $" (default {shown})";
        description += $" [recipe: {setting.Key}{(setting.LlamaFactoryKey is string lf && lf != setting.Key ? $" or {lf}" : "")}]";
        string[] aliases = setting.FlagAliases.ToArray();
        if (setting.Kind == SettingKind.Boolean)
            return new Option<bool>(setting.Flag, aliases) { Description = description };
        var option = new Option<string?>(setting.Flag, aliases) { Description = description };
        if (setting.Key == "resume") option.Arity = ArgumentArity.ZeroOrOne;
        option.Validators.Add(result =>
        {
            if (result.Implicit || result.Tokens.Count == 0) return;
            try { setting.Parse(result.Tokens[0].Value); }
            catch (FormatException e) { result.AddError($"{setting.Flag}: {e.Message}"); }
        });
        return option;
    }
}

/// <summary>Draws training progress on stderr: one redrawn line on a terminal, a line per log step otherwise.</summary>
internal sealed class ConsoleTrainingReporter : ITrainingReporter
{
    readonly bool _terminal = !Console.IsErrorRedirected;
    bool _lineOpen;

    public void Info(string message) { Close(); Console.Error.WriteLine(message); }

    public void Progress(TrainingProgress p)
    {
        string line = $"step {p.Step}/{p.TotalSteps} [{CliSupport.Bar(p.Step, p.TotalSteps, 24)}] loss {p.Loss:F4}  lr {p.LearningRate:E2}  " +
                      $"{p.TokensPerSecond:F0} tok/s  epoch {p.Epoch:F2}  ETA {p.Remaining:hh\\:mm\\:ss}";
        if (_terminal) { Console.Error.Write("\r" + line + "   "); _lineOpen = true; }
        else Console.Error.WriteLine(line);
    }

    public void Validation(long step, double loss, bool improved) { Close(); Console.Error.WriteLine($"step {step}: validation loss {loss:F4}{(improved ? " (best)" : "")}"); }

    public void Checkpoint(string path) { Close(); Console.Error.WriteLine($"checkpoint {path}"); }

    public void Finish() => Close();

    void Close() { if (_lineOpen) { Console.Error.WriteLine(); _lineOpen = false; } }
}
