using System.Reflection;
using Hone.Formats;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Training;

/// <summary>Recipes (YAML through Hone.Recipes, bound through the one settings table) and the table's limits.</summary>
public class RecipeTests
{
    static TrainRecipeResult Apply(string yaml) => TrainRecipe.Apply(YamlRecipe.Parse("recipe.yaml", yaml), new TrainOptions());

    static DataFormatException Refused(string yaml) => Assert.Throws<DataFormatException>(() => Apply(yaml));

    [Fact]
    public void Nested_keys_lists_and_comments()
    {
        var o = Apply("""
            # a Hone recipe
            method: dora   # DoRA
            lora:
              r: 16
              alpha: 32.5
              targets:
                - q_proj
                - v_proj   # and v
            freeze: {trainable_modules: [mlp, norm]}
            lr: 3e-4
            seq_len: 64
            packing: ~
            epochs: 2
            """).Options;
        Assert.Equal(TrainingMethod.Dora, o.Method);
        Assert.Equal(16, o.LoraR);
        Assert.Equal(32.5f, o.LoraAlpha);
        Assert.Equal(["q_proj", "v_proj"], o.LoraTargets);
        Assert.Equal(["mlp", "norm"], o.FreezeTrainableModules);
        Assert.Equal(3e-4f, o.Lr);
        Assert.Equal(64, o.SeqLen);
        Assert.Null(o.Packing);
        Assert.Equal(2.0, o.Epochs);
        Assert.Empty(YamlRecipe.Parse("recipe.yaml", "# only a comment\n").Entries);
    }

    [Fact]
    public void Unknown_key_names_its_line_and_the_nearest_key()
    {
        var e = Refused("method: lora\n\nlora_rnak: 8\n");
        Assert.Equal(3, e.Line);
        Assert.Contains("unknown key 'lora_rnak'; did you mean 'lora_rank'?", e.Message);
        Assert.Contains("did you mean 'learning_rate'?", Refused("learning_rat: 1e-4").Message);
        Assert.Contains("`hone train --help` lists", Refused("completely_unrelated_setting: 1").Message);
    }

    [Fact]
    public void Bad_values_and_bad_yaml_name_the_line()
    {
        var e = Refused("seq_len: 64\nlora_rank: 300\n");
        Assert.Equal(2, e.Line);
        Assert.Contains("lora_rank: must be 1 to 256 (the largest rank the fused LoRA GEMM kernels take), found 300", e.Message);
        Assert.Contains("line 1", Refused("lr: 1e-4\nlearning_rate: 2e-4\n").Message); // the same setting under two names
        Assert.Equal(2, Refused("lr: 1e-4\nlr: 2e-4\n").Line);
        Assert.Contains("expected a whole number, found 'many'", Refused("lora_r: many").Message);
        Assert.Contains("expected a single value", Refused("lr: [1, 2]").Message);
        Assert.Contains("a list item must be a single value", Refused("lora_targets:\n  - {a: 1}\n").Message);
        Assert.Contains("aliases", Refused("a: &x 1\nlr: *x\n").Message);
        Assert.Contains("one YAML document", Refused("lr: 1\n---\nlr: 2\n").Message);
        Assert.Contains("maps keys to values", Refused("- just\n- a list\n").Message);
        Assert.StartsWith("recipe.yaml:", Refused("lr: 1\n  bad indentation: [\n").Message);
        Assert.Contains("expected one of full, freeze, lora, dora, qlora, found 'lorra'; did you mean 'lora'?", Refused("method: lorra").Message);
    }

    /// <summary>LLaMA-Factory's examples/train_lora/llama3_lora_sft.yaml, with its keys as LLaMA-Factory reads them.</summary>
    [Fact]
    public void LlamaFactory_keys_mean_what_they_mean_there()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("train.jsonl"), "{}\n");
        var r = Apply($"""
            ### model
            model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
            trust_remote_code: true
            ### method
            stage: sft
            do_train: true
            finetuning_type: lora
            lora_rank: 16
            lora_target: all
            ### dataset
            dataset: {dir.File("train.jsonl")}
            cutoff_len: 2048
            max_samples: 1000
            overwrite_cache: true
            preprocessing_num_workers: 16
            ### output
            output_dir: saves/llama3-8b/lora/sft
            logging_steps: 10
            save_steps: 500
            plot_loss: true
            overwrite_output_dir: true
            ### train
            per_device_train_batch_size: 1
            gradient_accumulation_steps: 8
            learning_rate: 1.0e-4
            num_train_epochs: 3.0
            lr_scheduler_type: cosine
            warmup_ratio: 0.1
            bf16: true
            ddp_timeout: 180000000
            """);
        var o = r.Options;
        Assert.Equal("meta-llama/Meta-Llama-3-8B-Instruct", o.Model);
        Assert.Equal(TrainingStage.Sft, o.Stage);
        Assert.Equal(TrainingMethod.Lora, o.Method);
        Assert.Equal(16, o.LoraR);
        Assert.Equal(32f, o.LoraAlpha);            // LLaMA-Factory: lora_alpha defaults to 2 × lora_rank
        Assert.Equal(["all-linear"], o.LoraTargets);
        Assert.Equal(dir.File("train.jsonl"), o.Data);
        Assert.Equal(2048, o.SeqLen);
        Assert.Equal(1000, o.MaxSamples);
        Assert.Equal("saves/llama3-8b/lora/sft", o.Out);
        Assert.Equal(10, o.LogEvery);
        Assert.Equal(500, o.SaveEvery);
        Assert.Equal(1, o.BatchSize);
        Assert.Equal(8, o.GradAccum);
        Assert.Equal(1e-4f, o.Lr);
        Assert.Equal(3.0, o.Epochs);
        Assert.Equal(LearningRateSchedule.Cosine, o.Schedule);
        Assert.Equal(0.1, o.WarmupRatio);
        Assert.Equal(0, o.ValSplit);               // no val_size: no validation split, as there
        Assert.Contains(r.Notes, n => n.StartsWith("bf16: Hone trains in fp32"));
        Assert.Contains(r.Notes, n => n.StartsWith("plot_loss accepted without effect"));
        Assert.Contains(r.Notes, n => n.Contains("2 × lora_rank"));
    }

    [Fact]
    public void LlamaFactory_combined_and_translated_settings()
    {
        Assert.Equal(TrainingMethod.Dora, Apply("finetuning_type: lora\nuse_dora: true").Options.Method);
        var q = Apply("finetuning_type: lora\nquantization_bit: 4").Options;
        Assert.Equal((TrainingMethod.QLora, "q4_0"), (q.Method, q.QloraType));
        Assert.Equal("q8_0", Apply("quantization_bit: 8").Options.QloraType);
        var qdora = Apply("finetuning_type: lora\nuse_dora: true\nquantization_bit: 4").Options;  // PEFT's QDoRA
        Assert.Equal((TrainingMethod.QLora, "q4_0", AdapterKinds.Dora), (qdora.Method, qdora.QloraType, qdora.Setup.AdapterKind));
        Assert.Equal(TrainingStage.Cpt, Apply("stage: pt").Options.Stage);
        Assert.Equal(TrainingMethod.Full, Apply("finetuning_type: full").Options.Method);
        Assert.Equal(0, Apply("max_steps: -1").Options.MaxSteps);
        Assert.Equal(LearningRateSchedule.Constant, Apply("lr_scheduler_type: constant_with_warmup").Options.Schedule);
        Assert.Empty(Apply("finetuning_type: freeze\nfreeze_trainable_modules: all").Options.FreezeTrainableModules);
        Assert.Equal(["q_proj", "v_proj"], Apply("lora_target: q_proj,v_proj").Options.LoraTargets);
        Assert.Equal(0, Apply("eval_strategy: \"no\"").Options.EvalEvery);
        Assert.Equal(0.2, Apply("val_size: 0.2\nlora_rank: 4").Options.ValSplit);
        Assert.Equal(8f, Apply("lora_rank: 4").Options.LoraAlpha);
        Assert.Equal(5f, Apply("lora_rank: 4\nlora_alpha: 5").Options.LoraAlpha);
        Assert.Equal(16f, Apply("lora_r: 4").Options.LoraAlpha); // Hone's own keys keep Hone's defaults
        Assert.Equal("auto", Apply("resume_from_checkpoint: true").Options.Resume);

        Assert.Contains("expected one of cpt, sft, distill, unlearn, found 'dpo'", Refused("stage: dpo").Message);
        Assert.Contains("found 'oft'", Refused("finetuning_type: oft").Message);
        Assert.Contains("do_train: false", Refused("do_train: false").Message);
        Assert.Contains("use_dora applies to LoRA", Refused("finetuning_type: full\nuse_dora: true").Message);
        Assert.Contains("needs finetuning_type: lora", Refused("finetuning_type: freeze\nquantization_bit: 4").Message);
        Assert.Contains("expected 4 or 8", Refused("quantization_bit: 2").Message);
        Assert.Contains("continuing a trained adapter is not supported", Refused("adapter_name_or_path: saves/x").Message);
        Assert.Contains("dataset_info.json names are not read", Refused("dataset: identity").Message);
        Assert.Contains("names several datasets", Refused("dataset: identity,alpaca_en_demo").Message);
        Assert.Contains("'epoch' is not supported", Refused("eval_strategy: epoch").Message);
    }

    [Fact]
    public void Dataset_dir_joins_the_dataset_path()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("a.jsonl"), "{}\n");
        Assert.Equal(Path.Combine(dir.Path, "a.jsonl"), Apply($"dataset_dir: {dir.Path}\ndataset: a.jsonl").Options.Data);
    }

    /// <summary>One source: every settable property of the record has exactly one row in the table, with a unique
    /// key, flag and LLaMA-Factory name, and the defaults pass the limits.</summary>
    [Fact]
    public void Every_option_is_declared_once_in_the_table()
    {
        var properties = typeof(TrainOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).Select(p => p.Name).Order().ToList();
        var keys = TrainOptions.Settings.Select(s => string.Concat(s.Key.Split('_').Select(w => char.ToUpperInvariant(w[0]) + w[1..]))).ToList();
        Assert.Equal(properties, keys.Order().ToList());
        var flags = TrainOptions.Settings.SelectMany(s => s.FlagAliases.Prepend(s.Flag)).ToList();
        Assert.Equal(flags.Count, flags.Distinct().Count());
        var lf = TrainOptions.Settings.Where(s => s.LlamaFactoryKey != null).Select(s => s.LlamaFactoryKey).ToList();
        Assert.Equal(lf.Count, lf.Distinct().Count());
        var defaults = new TrainOptions { Model = "m", Data = "d", Out = "o" };
        Assert.Same(defaults, defaults.Validate());
        Assert.Equal(Hone.Tensors.Gemm.MaxFusedRank, (int)TrainOptions.Setting("lora_r")!.Max);
    }

    [Theory]
    [InlineData("lora_r", 0)]
    [InlineData("lora_r", 257)]
    [InlineData("batch_size", 0)]
    [InlineData("grad_accum", 0)]
    [InlineData("seq_len", 1)]
    [InlineData("threads", -1)]
    [InlineData("threads", 1025)]
    [InlineData("save_every", -1)]
    [InlineData("keep_checkpoints", 0)]
    [InlineData("eval_every", -1)]
    [InlineData("warmup_steps", -2)]
    [InlineData("log_every", 0)]
    [InlineData("max_steps", -1)]
    [InlineData("max_samples", -1)]
    [InlineData("early_stopping_patience", -1)]
    public void Integer_limits_are_checked_in_records_built_in_code(string key, int value)
    {
        var setting = TrainOptions.Setting(key)!;
        var o = setting.Set(new TrainOptions { Model = "m", Data = "d", Out = "o" }, (long)value);
        var e = Assert.Throws<ArgumentException>(() => o.Validate());
        Assert.Contains($"{key} ({setting.Flag}): must be", e.Message);
        Assert.Contains($"found {value}", e.Message);
    }

    [Theory]
    [InlineData("lr", 0.0)]
    [InlineData("lr", 2.0)]
    [InlineData("lr", double.NaN)]
    [InlineData("lora_alpha", 0.0)]
    [InlineData("lora_dropout", 1.0)]
    [InlineData("val_split", 1.0)]
    [InlineData("warmup_ratio", 1.5)]
    [InlineData("min_lr_ratio", -0.1)]
    [InlineData("weight_decay", -1.0)]
    [InlineData("max_grad_norm", -1.0)]
    [InlineData("epochs", -1.0)]
    public void Real_limits_are_checked_in_records_built_in_code(string key, double value)
    {
        var setting = TrainOptions.Setting(key)!;
        var o = setting.Set(new TrainOptions { Model = "m", Data = "d", Out = "o" }, value);
        Assert.Contains($"{key} ({setting.Flag}):", Assert.Throws<ArgumentException>(() => o.Validate()).Message);
    }

    [Fact]
    public void Cross_and_name_checks()
    {
        var o = new TrainOptions { Model = "m", Data = "d", Out = "o" };
        Assert.Contains("a model is required", Assert.Throws<ArgumentException>(() => (o with { Model = "" }).Validate()).Message);
        Assert.Contains("epochs or max_steps", Assert.Throws<ArgumentException>(() => (o with { Epochs = 0 }).Validate()).Message);
        Assert.Contains("tokens; at most", Assert.Throws<ArgumentException>(() => (o with { BatchSize = 65536, SeqLen = 1 << 20 }).Validate()).Message);
        Assert.Contains("unknown module 'mpl'; did you mean 'mlp'?",
            Assert.Throws<ArgumentException>(() => (o with { FreezeTrainableModules = ["mpl"] }).Validate()).Message);
        Assert.Contains("unknown module 'lm-head'", Assert.Throws<ArgumentException>(() => (o with { FreezeExtraModules = ["lm-head"] }).Validate()).Message);
        Assert.Contains("qlora_type", Assert.Throws<ArgumentException>(() => (o with { QloraType = "q5_k" }).Validate()).Message);
        Assert.Contains("unknown LoRA target module", Assert.Throws<ArgumentException>(() => (o with { LoraTargets = ["qproj"] }).Validate()).Message);
    }

    [Fact]
    public void Model_dependent_limits_are_checked_from_the_config()
    {
        var c = new ModelConfig { Architecture = "llama", VocabSize = 100, HiddenSize = 64, IntermediateSize = 96, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 16, MaxPositions = 128 };
        var o = new TrainOptions { Model = "m", Data = "d", Out = "o", SeqLen = 64 };
        o.ValidateFor(c, "m");
        Assert.Contains("seq_len (--seq-len) 256 is more than the model's context of 128 tokens",
            Assert.Throws<ArgumentException>(() => (o with { SeqLen = 256 }).ValidateFor(c, "m")).Message);
        Assert.Contains("more than the model's 2 layers",
            Assert.Throws<ArgumentException>(() => (o with { Method = TrainingMethod.Freeze, FreezeTrainableLayers = -3 }).ValidateFor(c, "m")).Message);
        Assert.Contains("not a multiple of it",
            Assert.Throws<ArgumentException>(() => (o with { Method = TrainingMethod.QLora, QloraType = "q4_k" }).ValidateFor(c, "m")).Message);
        var huge = c with { HiddenSize = 1 << 20, IntermediateSize = 1 << 22, Layers = 1000 };
        Assert.Contains("of activations for this model, more than the",
            Assert.Throws<ArgumentException>(() => o.ValidateFor(huge, "m")).Message);
    }

    [Fact]
    public void Spelling_suggests_the_nearest_names()
    {
        Assert.Equal(["--lora-rank"], Spelling.Nearest("--lora-rnak", ["--lora-r", "--lora-rank", "--lora-alpha"]));
        Assert.Equal(["train"], Spelling.Nearest("tarin", ["train", "chat", "eval"]));
        Assert.Empty(Spelling.Nearest("--xyzzy", ["--lora-r", "--seed"]));
        Assert.Equal(1, Spelling.Distance("ab", "ba"));
    }
}
