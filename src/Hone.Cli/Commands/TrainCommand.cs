using System.CommandLine;
using System.Text.Json;
using Hone.DataTools;
using Hone.Training;

namespace Hone.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "base model: a Hugging Face directory or a .gguf file" };
        var data = new Option<string?>("--data", "-d") { Description = "training data: JSONL (messages / Alpaca / ShareGPT for sft; {\"text\"} for cpt), .json array, or .txt (cpt)" };
        var valData = new Option<string?>("--val-data") { Description = "validation data (default: hold out --val-split of the training data)" };
        var replayData = new Option<string?>("--replay-data") { Description = "sft: plain documents (text or JSONL {\"text\"}) mixed into training with every token a target, against forgetting; not used for validation" };
        var output = new Option<string?>("--out", "-o") { Description = "output directory: adapter (PEFT layout) or model, metrics.jsonl, checkpoints/" };
        var config = new Option<string?>("--config") { Description = "a recipe file (flat YAML) holding any of the options below under their snake_case names; flags override it" };
        var method = new Option<string?>("--method") { Description = "full | freeze | lora | dora | qlora (default lora; dora = lora with --adapter-kind dora)" };
        var adapterKind = new Option<string?>("--adapter-kind") { Description = $"the adapter lora and qlora train: {string.Join(" | ", Hone.Model.AdapterKinds.Names)} (default lora)" };
        var stage = new Option<string?>("--stage") { Description = "cpt (raw text, packed) | sft (conversations, loss on assistant tokens) (default sft)" };
        var epochs = new Option<double?>("--epochs") { Description = "passes over the data (default 1)" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "optimizer steps (overrides epochs)" };
        var lr = new Option<float?>("--lr") { Description = "peak learning rate (default 2e-4)" };
        var batch = new Option<int?>("--batch-size", "-b") { Description = "sequences per micro-batch (default 4)" };
        var accum = new Option<int?>("--grad-accum") { Description = "micro-batches per optimizer step (default 1)" };
        var seqLen = new Option<int?>("--seq-len") { Description = "tokens per sequence (default 256)" };
        var loraR = new Option<int?>("--lora-r") { Description = "LoRA rank (default 8)" };
        var loraAlpha = new Option<float?>("--lora-alpha") { Description = "LoRA alpha (default 16; scale alpha/r, or alpha/√r with --use-rslora)" };
        var loraDropout = new Option<float?>("--lora-dropout") { Description = "dropout on the adapter input (default 0)" };
        var loraTargets = new Option<string?>("--lora-targets") { Description = "comma-separated modules (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear (default)" };
        var rslora = new Option<bool?>("--use-rslora") { Description = "rank-stabilized scaling alpha/√r" };
        var qloraType = new Option<string?>("--qlora-type") { Description = "storage of the frozen base with --method qlora: q8_0, q4_0 (default), q4_k" };
        var seed = new Option<ulong?>("--seed") { Description = "random seed (same seed and threads: bit-identical run; default 42)" };
        var saveEvery = new Option<int?>("--save-every") { Description = "checkpoint every N steps (default 100; 0 = only on interruption)" };
        var keep = new Option<int?>("--keep-checkpoints") { Description = "checkpoints kept (default 3)" };
        var resume = new Option<string?>("--resume") { Description = "continue from the latest checkpoint in --out (\"auto\") or from a checkpoint directory", Arity = ArgumentArity.ZeroOrOne };
        var evalEvery = new Option<int?>("--eval-every") { Description = "validation loss every N steps (default 50)" };
        var valSplit = new Option<double?>("--val-split") { Description = "fraction held out for validation without --val-data (default 0.05)" };
        var patience = new Option<int?>("--early-stopping") { Description = "stop after N validations without improvement (default off)" };
        var warmup = new Option<int?>("--warmup-steps") { Description = "linear warm-up steps (default 3% of the steps)" };
        var schedule = new Option<string?>("--schedule") { Description = "cosine (default) | linear | constant" };
        var weightDecay = new Option<float?>("--weight-decay") { Description = "AdamW decoupled weight decay (default 0)" };
        var maxGradNorm = new Option<float?>("--max-grad-norm") { Description = "clip the global gradient norm (default 1; 0 = off)" };
        var packing = new Option<bool?>("--packing") { Description = "pack examples into full windows (default: on for cpt, off for sft)" };
        var trainOnPrompt = new Option<bool?>("--train-on-prompt") { Description = "sft: compute the loss on prompt tokens too" };
        var skipBad = new Option<bool?>("--skip-bad-lines") { Description = "skip malformed records (counted in the summary) instead of stopping" };
        var checkpointActivations = new Option<bool?>("--checkpoint-activations") { Description = "keep only each layer's input and recompute the rest in backward (less memory, ~30% more compute)" };
        var template = new Option<string?>("--template") { Description = "a Jinja chat template file instead of the model's" };
        var freezeLayers = new Option<int?>("--freeze-trainable-layers") { Description = "freeze: train the last N layers (first N if negative; default 2)" };
        var freezeModules = new Option<string?>("--freeze-trainable-modules") { Description = "freeze: comma-separated modules to train in those layers (self_attn, mlp, q_proj, ...; default all)" };
        var freezeExtra = new Option<string?>("--freeze-extra-modules") { Description = "freeze: also train embed_tokens, lm_head, norm" };
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("train",
            "Fine-tune a model: continued pretraining (cpt) or supervised fine-tuning (sft) with full, freeze, LoRA, DoRA or QLoRA. " +
            "Shows a live progress bar (loss, learning rate, tokens/s, ETA), appends metrics to OUT/metrics.jsonl, checkpoints every " +
            "--save-every steps and on Ctrl-C (resume with --resume), and writes a PEFT adapter or a Hugging Face model to OUT.")
        {
            model, data, valData, replayData, output, config, method, stage, epochs, maxSteps, lr, batch, accum, seqLen, loraR, loraAlpha, loraDropout, loraTargets,
            rslora, adapterKind, qloraType, seed, saveEvery, keep, resume, evalEvery, valSplit, patience, warmup, schedule, weightDecay, maxGradNorm, packing,
            trainOnPrompt, skipBad, checkpointActivations, template, freezeLayers, freezeModules, freezeExtra, threads, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var o = new TrainOptions();
            if (r.GetValue(config) is string recipe) o = TrainOptions.FromRecipe(recipe, o);
            T? Given<T>(Option<T> option) => r.GetResult(option) != null ? r.GetValue(option) : default;
            bool Has(Option option) => r.GetResult(option) != null;
            o = o with { Model = r.GetValue(model)! };
            if (Has(data)) o = o with { Data = r.GetValue(data)! };
            if (Has(valData)) o = o with { ValData = r.GetValue(valData) };
            if (Has(replayData)) o = o with { ReplayData = r.GetValue(replayData) };
            if (Has(output)) o = o with { Out = r.GetValue(output)! };
            if (Has(method)) o = o with { Method = ParseEnum<TrainingMethod>(r.GetValue(method)!, "--method") };
            if (Has(stage)) o = o with { Stage = ParseEnum<TrainingStage>(r.GetValue(stage)!, "--stage") };
            if (Given(epochs) is double e) o = o with { Epochs = e };
            if (Given(maxSteps) is int ms) o = o with { MaxSteps = ms };
            if (Given(lr) is float l) o = o with { Lr = l };
            if (Given(batch) is int b) o = o with { BatchSize = b };
            if (Given(accum) is int ga) o = o with { GradAccum = ga };
            if (Given(seqLen) is int sl) o = o with { SeqLen = sl };
            if (Given(loraR) is int lr2) o = o with { LoraR = lr2 };
            if (Given(loraAlpha) is float la) o = o with { LoraAlpha = la };
            if (Given(loraDropout) is float ld) o = o with { LoraDropout = ld };
            if (Has(loraTargets)) o = o with { LoraTargets = Split(r.GetValue(loraTargets)!) };
            if (Given(rslora) is bool rs) o = o with { UseRslora = rs };
            if (Has(adapterKind)) o = o with { AdapterKind = r.GetValue(adapterKind) };
            if (Has(qloraType)) o = o with { QloraType = r.GetValue(qloraType)! };
            if (Given(seed) is ulong sd) o = o with { Seed = sd };
            if (Given(saveEvery) is int se) o = o with { SaveEvery = se };
            if (Given(keep) is int k) o = o with { KeepCheckpoints = k };
            if (Has(resume)) o = o with { Resume = r.GetValue(resume) ?? "auto" };
            if (Given(evalEvery) is int ee) o = o with { EvalEvery = ee };
            if (Given(valSplit) is double vs) o = o with { ValSplit = vs };
            if (Given(patience) is int p) o = o with { EarlyStoppingPatience = p };
            if (Given(warmup) is int w) o = o with { WarmupSteps = w };
            if (Has(schedule)) o = o with { Schedule = ParseEnum<LearningRateSchedule>(r.GetValue(schedule)!, "--schedule") };
            if (Given(weightDecay) is float wd) o = o with { WeightDecay = wd };
            if (Given(maxGradNorm) is float mg) o = o with { MaxGradNorm = mg };
            if (Given(packing) is bool pk) o = o with { Packing = pk };
            if (Given(trainOnPrompt) is bool tp) o = o with { TrainOnPrompt = tp };
            if (Given(skipBad) is bool sb) o = o with { SkipBadLines = sb };
            if (Given(checkpointActivations) is bool ca) o = o with { CheckpointActivations = ca };
            if (Has(template)) o = o with { Template = r.GetValue(template) };
            if (Given(freezeLayers) is int fl) o = o with { FreezeTrainableLayers = fl };
            if (Has(freezeModules)) o = o with { FreezeTrainableModules = Split(r.GetValue(freezeModules)!) };
            if (Has(freezeExtra)) o = o with { FreezeExtraModules = Split(r.GetValue(freezeExtra)!) };
            if (Has(threads)) o = o with { Threads = r.GetValue(threads) };

            var reporter = new ConsoleTrainingReporter();
            using var cancel = CliSupport.CancelOnCtrlC();
            cancel.Token.Register(() => Console.Error.WriteLine("\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again to abort)..."));
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

    static IReadOnlyList<string> Split(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    static T ParseEnum<T>(string value, string flag) where T : struct, Enum =>
        Enum.TryParse<T>(value.Replace("-", "").Replace("_", ""), ignoreCase: true, out var v) && Enum.IsDefined(v) ? v
            : throw new ArgumentException($"{flag}: unknown value '{value}'; use one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}");
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
