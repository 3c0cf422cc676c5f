using System.CommandLine;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Training;

namespace Hone.Cli.Commands;

/// <summary>`hone distill cache`: a teacher's top-K tokens over a training run's rows, for hone train --teacher-cache.</summary>
internal static class DistillCommand
{
    public static Command Create()
    {
        var cmd = new Command("distill", "Knowledge-distillation helpers: (cache) run a teacher once over a training run's data and store its top-K tokens, " +
                                         "so that hone train --stage distill --teacher-cache learns from it without running the teacher every step.");
        cmd.Subcommands.Add(Cache());
        return cmd;
    }

    static Command Cache()
    {
        var defaults = new TrainOptions { Stage = TrainingStage.Distill };
        var teacher = new ModelInput("the teacher (a Hugging Face directory or .gguf; default: the recipe's teacher)", required: false);
        var adapter = new Option<string?>("--adapter") { Description = "a PEFT adapter applied to the teacher (default: the recipe's teacher_adapter)" };
        var config = new Option<string?>("--config", "-c")
        {
            Description = "the training recipe (YAML) the cache is for: its data settings are used (flags override them), and its teacher, teacher_adapter, " +
                          "kd_temperature and teacher_cache give the defaults of TEACHER, --adapter, --temperature and --out",
        };
        var topK = new Option<int>("--top-k", "-k")
        {
            Description = "ids kept per target position, the teacher's most likely at --temperature; the rest of the vocabulary becomes one bucket holding its total " +
                          "probability (K = the vocabulary size keeps every id: the loss is then the live teacher's)",
            DefaultValueFactory = _ => 32,
        }.Within(1, int.MaxValue);
        var temperature = new Option<double?>("--temperature", "-T")
        {
            Description = "temperature T of the stored log-probabilities, softmax(logits/T); the training run's --kd-temperature must be the same " +
                          $"(default: the recipe's kd_temperature, else {defaults.KdTemperature:G})",
        }.Within(0, 100, minExclusive: true);
        var output = new Option<string?>("--out", "-o")
        {
            Description = "the cache file to write (written under a temporary name, renamed when complete; default: the recipe's teacher_cache)",
        };
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("cache",
            "Run the teacher (inference, exact precision, every thread) over exactly the rows hone train --stage distill draws with the same data settings " +
            "(--data, --replay-data, --seq-len, --packing, --train-on-prompt, --template, --seed, …; with --packing every epoch cuts new windows, so the rows of " +
            "--max-steps or --epochs steps of --batch-size × --grad-accum rows are cached; without, one epoch's rows cover any run), and store for every target position " +
            "the teacher's --top-k ids and log-probabilities at --temperature and the log of the rest's mass. Rows are keyed by a hash of their tokens and targets. " +
            "Train from it with hone train STUDENT --stage distill --teacher-cache FILE (and the same data settings).")
        {
            adapter, config, topK, temperature, output,
        };
        teacher.AddTo(cmd);
        var flags = new List<(SettingSpec<TrainOptions> Setting, Option Option)>();
        foreach (var key in DistillationCacheBuilder.RowSettings)
        {
            var setting = TrainOptions.Setting(key)!;
            var option = TrainCommand.Generate(setting, defaults);
            option.Description = "as in hone train: " + option.Description;
            cmd.Options.Add(option);
            flags.Add((setting, option));
        }
        cmd.Options.Add(threads);
        cmd.Options.Add(json);
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            var o = defaults;
            if (r.GetValue(config) is string recipePath)
            {
                var recipe = TrainRecipe.Apply(YamlRecipe.Read(recipePath), o);
                o = recipe.Options with { Stage = TrainingStage.Distill };
                foreach (var note in recipe.Notes) Console.Error.WriteLine($"recipe: {note}");
            }
            foreach (var (setting, option) in flags)
            {
                var given = r.GetResult(option);
                if (given == null || given.Implicit) continue;
                object? value = option switch
                {
                    Option<bool> b => r.GetValue(b),
                    Option<string?> t => setting.Parse(r.GetValue(t)),
                    _ => throw new InvalidOperationException(setting.Key),
                };
                o = setting.Set(o, value);
            }
            string teacherPath = teacher.Read(r) ?? o.Teacher
                ?? throw new ArgumentException("a teacher is required: hone distill cache TEACHER (or -m TEACHER, or teacher: in the --config recipe)");
            string outPath = r.GetValue(output) ?? o.TeacherCache
                ?? throw new ArgumentException("an output file is required: --out FILE (or teacher_cache: in the --config recipe)");
            var options = new DistillationCacheOptions
            {
                Run = o, Teacher = teacherPath, Adapter = r.GetValue(adapter) ?? o.TeacherAdapter, TopK = r.GetValue(topK),
                Temperature = (float)(r.GetValue(temperature) ?? o.KdTemperature), Out = outPath, Threads = r.GetValue(threads),
            };
            var report = DistillationCacheBuilder.Build(options, TrainingDataLoader.Load, m => Console.Error.WriteLine(m), CliSupport.Progress("teacher"), cancel);
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["output"] = report.Output, ["rows"] = report.Rows, ["sequences"] = report.Sequences, ["positions"] = report.Positions,
                    ["bytes"] = report.Bytes, ["seconds"] = Math.Round(report.Seconds, 3), ["top_k"] = options.TopK, ["temperature"] = options.Temperature,
                    ["mean_top_k_mass"] = Math.Round(report.MeanTopMass, 6), ["least_top_k_mass"] = Math.Round(report.LeastTopMass, 6),
                }.ToJsonString());
                return 0;
            }
            Console.WriteLine($"wrote {report.Output}: {report.Sequences:N0} rows ({report.Rows:N0} drawn by the run), {report.Positions:N0} target positions, " +
                              $"{CliSupport.Bytes(report.Bytes)} in {report.Seconds:F1} s");
            Console.WriteLine($"the top {options.TopK} ids hold {100 * report.MeanTopMass:F2}% of the teacher's probability at T = {options.Temperature:G4} on average " +
                              $"(least {100 * report.LeastTopMass:F2}%)");
            Console.WriteLine($"train with: hone train STUDENT --stage distill --teacher-cache {report.Output} --kd-temperature {options.Temperature:G} and the same data options");
            return 0;
        }));
        return cmd;
    }
}
