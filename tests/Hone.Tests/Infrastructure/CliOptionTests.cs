using System.Text.Json.Nodes;
using Xunit;

namespace Hone.Tests.Infrastructure;

/// <summary>
/// The command line refuses what it cannot do before doing anything: every out-of-range option names itself, a
/// mistyped option or command gets the nearest real one instead of the whole help, an unknown --type is an error,
/// -m works wherever a model is taken, and models and data resolve the same way everywhere. All on a tiny model the
/// tests build (<see cref="TinyChatModel"/>).
/// </summary>
public class CliOptionTests
{
    static string Tiny => TinyChatModel.Path;

    /// <summary>Exit 1 and exactly one line on stderr: "error: …" holding <paramref name="contains"/>.</summary>
    static void AssertUsageError(HoneCli.Result r, string contains)
    {
        Assert.True(r.ExitCode == 1, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), r.ToString());
        Assert.Contains(contains, lines[0]);
    }

    public static TheoryData<string[], string> OutOfRange => new()
    {
        // hone train: limits from the settings table, checked while parsing (no model is even named)
        { ["train", "--lora-r", "300"], "--lora-r: must be 1 to 256 (the largest rank the fused LoRA GEMM kernels take), found 300" },
        { ["train", "--lora-rank", "0"], "--lora-r: must be 1 to 256" },
        { ["train", "--batch-size", "0"], "--batch-size: must be 1 to 65536, found 0" },
        { ["train", "--grad-accum", "-1"], "--grad-accum: must be 1 to 65536, found -1" },
        { ["train", "--seq-len", "1"], "--seq-len: must be 2 to 1048576, found 1" },
        { ["train", "--lr", "0"], "--lr: must be in (0, 1], found 0" },
        { ["train", "--lr", "NaN"], "--lr: expected a finite number, found 'NaN'" },
        { ["train", "--lora-dropout", "1"], "--lora-dropout: must be in [0, 1), found 1" },
        { ["train", "--val-split", "1"], "--val-split: must be in [0, 1), found 1" },
        { ["train", "--epochs", "-1"], "--epochs: must be 0 to 1000000, found -1" },
        { ["train", "--threads", "-1"], "--threads: must be 0 to 1024 (0 = one per core), found -1" },
        { ["train", "--threads", "100000"], "--threads: must be 0 to 1024" },
        { ["train", "--keep-checkpoints", "0"], "--keep-checkpoints: must be 1 to 10000, found 0" },
        { ["train", "--warmup-steps", "-2"], "--warmup-steps: must be -1 to" },
        { ["train", "--seed", "-1"], "--seed: expected a whole number from 0 to" },
        { ["train", "--method", "lorra"], "--method: expected one of full, freeze, lora, dora, qlora, found 'lorra'; did you mean 'lora'?" },
        { ["train", "--qlora-type", "nf4"], "--qlora-type: expected one of q8_0, q4_0, q4_k, found 'nf4'" },
        // inference: negative values refused while parsing, the context against the model before anything is allocated
        { ["generate", "TINY", "--ctx", "-1"], "--ctx: must be at least 0 (0 = the model's), found -1" },
        { ["generate", "TINY", "-n", "-1"], "--max-tokens: must be 0 to" },
        { ["generate", "TINY", "--top-k", "-1"], "top-k must be ≥ 0 (0 = off), got -1" },
        { ["generate", "TINY", "--top-p", "0"], "top-p must be in (0, 1], got 0" },
        { ["generate", "TINY", "--repeat-last-n", "-2"], "repeat-last-n must be ≥ -1" },
        { ["generate", "TINY", "--threads", "-4"], "--threads: must be 0 to 1024" },
        { ["generate", "TINY", "--ctx", "100000000"], "--ctx 100000000 is more than the model's context of 128 tokens" },
        { ["generate", "TINY", "--ctx", "99999999999"], "--ctx: expected a whole number from -2147483648 to 2147483647, found '99999999999'" },
        { ["generate", "TINY", "--seed", "-1"], "--seed: expected a whole number from 0 to 18446744073709551615, found '-1'" },
        { ["chat", "TINY", "--ctx", "-5"], "--ctx: must be at least 0" },
        { ["chat", "TINY", "-n", "-3"], "--max-tokens: must be 0 to" },
        { ["perplexity", "TINY", "--file", "TEXT", "--ctx", "100000000"], "--ctx 100000000 is more than the model's context of 128 tokens" },
        { ["perplexity", "TINY", "--file", "TEXT", "--ctx", "1"], "--ctx: must be 2 to" },
        { ["perplexity", "TINY", "--file", "TEXT", "--stride", "0"], "--stride: must be 1 to" },
        { ["perplexity", "TINY", "--file", "TEXT", "--ctx", "64", "--stride", "65"], "--stride 65 is more than --ctx 64" },
        { ["eval", "TINY", "--task", "TEXT", "--out", "OUT", "--limit", "0"], "--limit: must be 1 to" },
        { ["eval", "TINY", "--task", "TEXT", "--out", "OUT", "--num-fewshot", "-1"], "--num-fewshot: must be 0 to 1000, found -1" },
        { ["eval", "TINY", "--task", "TEXT", "--out", "OUT", "--ctx", "-1"], "--ctx: must be at least 0" },
        { ["bench", "--repetitions", "0"], "--repetitions: must be 1 to 10000, found 0" },
        { ["bench", "--train", "lora", "--lora-r", "300"], "--lora-r: must be 1 to 256" },
        { ["bench", "--gen", "0"], "--gen: must be 1 to" },
        { ["data", "score", "TEXT", "-m", "TINY", "--out", "OUT", "--model-threads", "0"], "--model-threads: must be 1 to 1024" },
        { ["data", "filter", "TEXT", "--out", "OUT", "--min-chars", "-1"], "--min-chars: must be at least 0, found -1" },
        { ["data", "dedup", "TEXT", "--out", "OUT", "--num-perm", "100000"], "--num-perm: must be at most 4096" },
        { ["data", "stats", "TEXT", "--threads", "-1"], "--threads: must be 0 to 1024" },
        { ["synth", "general", "--out", "OUT", "--size", "5000G"], "--size:" },
        { ["synth", "general", "--out", "OUT", "--size", "2000M"], "--size: at most 1000M" },
        { ["synth", "ecommerce", "--out", "OUT", "--fault-rate", "2"], "--fault-rate: must be 0 to 1, found 2" },
        { ["synth", "ecommerce", "--out", "OUT", "--count", "0"], "--count: must be 1 to 1000000" },
        { ["quickstart", "--threads", "-3"], "--threads: must be 0 to 1024" },
        // --type: only the types weights can be stored in, never a fallback
        { ["convert", "TINY", "--out", "OUT.gguf", "--type", "q5_k"], "--type: q5_k is a GGUF type Hone cannot store weights in; use one of f32, f16, bf16, q8_0, q4_0, q4_k, q6_k" },
        { ["convert", "TINY", "--out", "OUT.gguf", "--type", "xyz"], "--type: unknown type 'xyz'" },
        { ["merge-adapter", "TINY", "--adapter", "OUT", "--out", "OUT.gguf", "--type", "iq2_xs"], "--type: iq2_xs is a GGUF type" },
        { ["bench", "--type", "q5_1"], "--type: q5_1 is a GGUF type" },
    };

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void Out_of_range_options_are_refused_naming_the_option(string[] args, string message)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("text.jsonl"), "{\"text\": \"Order 1 ships in 2 days.\"}\n");
        var resolved = args.Select(a => a switch
        {
            "TINY" => Tiny,
            "TEXT" => dir.File("text.jsonl"),
            "OUT" => dir.File("out"),
            "OUT.gguf" => dir.File("out.gguf"),
            _ => a,
        }).ToArray();
        var r = HoneCli.Run(resolved);
        AssertUsageError(r, message);
        Assert.False(Directory.Exists(dir.File("out")) || File.Exists(dir.File("out.gguf")), "nothing is written");
    }

    [Fact]
    public void Model_dependent_training_limits_fail_before_the_weights_load()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("d.jsonl"), "{\"instruction\": \"Where is order 3?\", \"output\": \"It ships in 4 days.\"}\n");
        string[] Run(params string[] extra) => ["train", Tiny, "--data", dir.File("d.jsonl"), "--out", dir.File("run"), .. extra.Contains("--seq-len") ? extra : [.. extra, "--seq-len", "64"]];
        AssertUsageError(HoneCli.Run(Run("--seq-len", "256")), "seq_len (--seq-len) 256 is more than the model's context of 128 tokens");
        AssertUsageError(HoneCli.Run("train", Tiny, "--data", dir.File("d.jsonl"), "--out", dir.File("run")), "seq_len (--seq-len) 256 is more than"); // the default, too
        AssertUsageError(HoneCli.Run(Run("--method", "freeze", "--freeze-trainable-layers", "3")), "freeze_trainable_layers (--freeze-trainable-layers) 3 is more than the model's 2 layers");
        AssertUsageError(HoneCli.Run(Run("--method", "qlora", "--qlora-type", "q4_k")), "qlora_type q4_k stores rows in blocks of 256");
        AssertUsageError(HoneCli.Run(Run("--freeze-trainable-modules", "mpl", "--method", "freeze")), "unknown module 'mpl'; did you mean 'mlp'?");
        Assert.False(Directory.Exists(dir.File("run")), "no output folder before the checks pass");
    }

    [Fact]
    public void A_mistyped_option_or_command_gets_a_suggestion_not_the_help()
    {
        AssertUsageError(HoneCli.Run("train", "--lora-rnak", "5"), "unknown option '--lora-rnak'; did you mean '--lora-rank'?");
        AssertUsageError(HoneCli.Run("generate", "--promt", "hi", Tiny), "unknown option '--promt'; did you mean '--prompt'?");
        AssertUsageError(HoneCli.Run("inspect", "--jsn", Tiny), "unknown option '--jsn'; did you mean '--json'?");
        AssertUsageError(HoneCli.Run("tarin"), "unknown command 'tarin'; did you mean 'train'?");
        AssertUsageError(HoneCli.Run("data", "stts", "x.jsonl"), "unknown command 'stts'; did you mean 'stats'?");
        AssertUsageError(HoneCli.Run("inspect", Tiny, "extra"), "unexpected argument 'extra'");
        var r = HoneCli.Run("train", "--lora-rnak", "5");
        Assert.DoesNotContain("Usage", r.Stderr + r.Stdout);
        Assert.Equal(0, HoneCli.Run("train", "--help").ExitCode);
    }

    [Fact]
    public void Every_command_that_takes_a_model_takes_it_with_dash_m_too()
    {
        using var dir = new TempDirectory();
        var inspect = HoneCli.Run("inspect", "-m", Tiny, "--json");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Equal(128, (int)JsonNode.Parse(inspect.Stdout)!["config"]!["max_positions"]!);
        var tokenize = HoneCli.Run("tokenize", "--model", Tiny, "--text", "Order 7", "--json");
        Assert.True(tokenize.ExitCode == 0, tokenize.ToString());
        var generate = HoneCli.Run("generate", "-m", Tiny, "-p", "Order", "-n", "3", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
        File.WriteAllText(dir.File("t.txt"), string.Join(" ", Enumerable.Repeat("Order 3 ships in 2 days.", 20)));
        var ppl = HoneCli.Run("perplexity", "-m", Tiny, "--file", dir.File("t.txt"), "--ctx", "32", "--json");
        Assert.True(ppl.ExitCode == 0, ppl.ToString());
        var convert = HoneCli.Run("convert", "-m", Tiny, "--out", dir.File("tiny.gguf"), "--type", "f16");
        Assert.True(convert.ExitCode == 0, convert.ToString());
        // A folder holding that one .gguf is a model everywhere.
        Directory.CreateDirectory(dir.File("folder"));
        File.Move(dir.File("tiny.gguf"), dir.File("folder/tiny-f16.gguf"));
        var viaFolder = HoneCli.Run("generate", dir.File("folder"), "-p", "Order", "-n", "2", "--temperature", "0", "--json");
        Assert.True(viaFolder.ExitCode == 0, viaFolder.ToString());
        File.Copy(dir.File("folder/tiny-f16.gguf"), dir.File("folder/copy.gguf"));
        AssertUsageError(HoneCli.Run("inspect", dir.File("folder")), "holds 2 .gguf files and no config.json; name one: copy.gguf, tiny-f16.gguf");
        AssertUsageError(HoneCli.Run("inspect", Tiny, "-m", dir.File("folder")), "two models given");
        AssertUsageError(HoneCli.Run("generate", "-p", "x"), "a model is required");
    }

    [Fact]
    public void A_dataset_folder_with_several_files_lists_them()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("data"));
        File.WriteAllText(dir.File("data/a.csv"), "question,answer\nQ,A\n");
        File.WriteAllText(dir.File("data/b.jsonl"), "{}\n");
        AssertUsageError(HoneCli.Run("train", Tiny, "--data", dir.File("data"), "--out", dir.File("run"), "--seq-len", "64"), "the folder holds 2 data files; name one: a.csv, b.jsonl");
        AssertUsageError(HoneCli.Run("data", "stats", dir.File("nothing-here")), "no such file or folder");
    }

    /// <summary>LLaMA-Factory's LoRA SFT recipe (the keys of examples/train_lora/llama3_lora_sft.yaml and more), the
    /// model and a CSV dataset folder named in it, run as `hone train --config recipe.yaml`.</summary>
    [Fact]
    public void A_llama_factory_lora_sft_recipe_runs_as_it_is()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("data"));
        var rows = Enumerable.Range(0, 24).Select(i => $"\"Where is order {i}?\",track_order,\"Order {i} ships in {i % 5 + 1} days.\"");
        File.WriteAllLines(dir.File("data/support.csv"), ["instruction,intent,response", .. rows]);
        File.WriteAllText(dir.File("data/README.md"), "a dataset card");
        var recipe = dir.File("recipe.yaml");
        File.WriteAllText(recipe, $"""
            ### model
            model_name_or_path: {Tiny}
            trust_remote_code: true

            ### method
            stage: sft
            do_train: true
            finetuning_type: lora
            lora_rank: 4
            lora_dropout: 0.0
            lora_target: all      # every linear layer
            use_rslora: false

            ### dataset
            dataset: {dir.File("data")}
            template: phi
            cutoff_len: 64
            max_samples: 20
            overwrite_cache: true
            preprocessing_num_workers: 16
            val_size: 0.1

            ### output
            output_dir: {dir.File("saves/lora/sft")}
            logging_steps: 1
            save_steps: 3
            plot_loss: true
            overwrite_output_dir: true
            report_to: none

            ### train
            per_device_train_batch_size: 2
            gradient_accumulation_steps: 2
            learning_rate: 1.0e-3
            num_train_epochs: 1.0
            max_steps: 6
            lr_scheduler_type: cosine
            warmup_ratio: 0.1
            weight_decay: 0.0
            max_grad_norm: 1.0
            seed: 7
            bf16: true
            ddp_timeout: 180000000

            ### eval
            eval_strategy: steps
            eval_steps: 3
            per_device_eval_batch_size: 1
            """);
        var r = HoneCli.Run("train", "--config", recipe, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("done: 6/6 steps", r.Stdout);
        Assert.Contains("recipe: bf16: Hone trains in fp32", r.Stderr);
        Assert.Contains("data: 18 conversations", r.Stderr);          // max_samples 20, val_size 0.1 holds out 2
        Assert.Contains("validation loss", r.Stderr);
        var output = dir.File("saves/lora/sft");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "adapter_config.json")))!;
        Assert.Equal(4, (int)config["r"]!);
        Assert.Equal(8.0, (double)config["lora_alpha"]!);             // LLaMA-Factory's default: 2 × lora_rank
        Assert.Equal(7, config["target_modules"]!.AsArray().Count);
        var steps = File.ReadAllLines(Path.Combine(output, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(l => l["loss"] != null).ToList();
        Assert.Equal(6, steps.Count);
        Assert.True(Directory.GetDirectories(Path.Combine(output, "checkpoints")).Length >= 1);
    }
}
