using System.CommandLine;
using System.Globalization;
using Hone.Tensors;
using Hone.Workflows;

namespace Hone.Cli.Commands;

internal static class QuickstartCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out", "-o") { Description = "where everything goes (data, models, adapter, evaluations, report.html)", DefaultValueFactory = _ => "runs/quickstart" };
        var model = new Option<string?>("--model", "-m") { Description = "specialize this model instead of pretraining one (HF directory, .gguf, or a folder with a .gguf)" };
        var data = new Option<string?>("--data", "-d") { Description = "domain data instead of the generated e-commerce set: SFT JSONL, or CSV with instruction/response columns (or a folder with one)" };
        var generalText = new Option<string?>("--general") { Description = "with --model: general text against forgetting, replayed among the fine-tuning data and held out for general perplexity (.txt documents separated by blank lines, or JSONL {\"text\"}; default: the generated general-English corpus)" };
        var seed = new Option<ulong>("--seed") { Description = "seed of every generator, initialization and sampler", DefaultValueFactory = _ => 7UL };
        var scale = new Option<double>("--scale") { Description = "multiply data sizes and step counts (1 = the defaults: about 9½ minutes on 2 idle cores once the base model is cached, longer on a busy machine)", DefaultValueFactory = _ => 1.0 };
        var baseCache = new Option<string?>("--base-cache") { Description = "where the generated base model is kept and reused by later runs with the same recipe, data and code (default: $HONE_CACHE, $XDG_CACHE_HOME/hone or ~/.cache/hone)" };
        var noBaseCache = new Option<bool>("--no-base-cache") { Description = "build the generated base model in this run and keep no copy" };
        var threads = CliSupport.Threads();
        var recipe = DistillationRecipe.Default;
        var distill = new Option<bool>("--distill")
        {
            Description = "after the usual stages, distil the LoRA specialist (base + adapter) into a student: the base with half its layers removed " +
                          "(block influence), trained in all its weights twice at equal steps, on the hard labels and distilled from the teacher; " +
                          "teacher and both students evaluated on domain perplexity, the policy questions and general perplexity (report section " +
                          "\"Distillation\", quickstart.json \"distillation\"). Adds about 10 minutes at the defaults (measured on 2 cores shared with other jobs, " +
                          "load average 12–22; less on idle cores)",
        };
        var unlearn = new Option<bool>("--unlearn")
        {
            Description = "after the usual stages, unlearn a quarter of the store policies (support_hours, warranty, invoice) from the specialist with " +
                          "NPO (β 0.1, lr 1e-3, the retain term, LoRA r 16, at most 150 steps) and train a model that never saw them (the specialist's " +
                          "recipe without them) to measure against: forget and retain pass@1 and perplexity, general perplexity, truth ratio and " +
                          "forget quality (report section \"Unlearning\", quickstart.json \"unlearning\"). Adds about 27 minutes at the defaults (measured on 2 " +
                          "cores shared with other jobs, load average 12–22, where the quickstart's own LoRA stage ran 5.6 times slower than on idle cores). " +
                          "With --distill or --unlearn, a folder that already holds a finished quickstart is reused as it is, and stages of the " +
                          "extension that finished earlier with the same settings (extended/stages.json) are skipped",
        };
        var distillSteps = new Option<int>("--distill-steps") { Description = "steps of each student's training (4 × 512 packed tokens each; scaled by --scale)", DefaultValueFactory = _ => recipe.Steps };
        var kdRatio = new Option<double>("--kd-ratio") { Description = "α of the distilled student: (1 − α)·cross-entropy + α·T²·divergence", DefaultValueFactory = _ => recipe.KdRatio };
        var kdTemperature = new Option<double>("--kd-temperature") { Description = "T of the distilled student: both distributions softmax(logits / T)", DefaultValueFactory = _ => recipe.KdTemperature };
        var unlearnArms = new Option<string>("--unlearn-arms")
        {
            Description = "the unlearning runs of --unlearn, as METHOD:LR pairs separated by commas (grad-ascent, grad-diff or npo; each its own stage, " +
                          "report row and quickstart.json entry)",
            DefaultValueFactory = _ => string.Join(",", UnlearningRecipe.Default.ArmsOrDefault.Select(a => $"{a.Method}:{a.Lr.ToString("0.#####", CultureInfo.InvariantCulture)}")),
        };
        var kdLoss = new Option<string>("--kd-loss") { Description = "the distilled student's divergence: forward (KL(teacher ‖ student)), reverse, symmetric", DefaultValueFactory = _ => recipe.KdLossName };
        var cmd = new Command("quickstart",
            "The whole loop on an embedded default: generate a general corpus and an e-commerce customer-service dataset (answers checked " +
            "against their facts), pretrain a small base model from scratch and teach it to copy from its context (about 30 minutes on 2 cores, " +
            "once: the base is cached), score and filter the domain data by the base model's " +
            "perplexity, evaluate, fine-tune with LoRA, evaluate again (domain answer and text perplexity, general perplexity for " +
            "forgetting, store-policy and order questions scored with pass@k and pass^k, a copying probe, and the agent benchmark: held-out " +
            "customers of a generated store served by the model as a tool-calling agent, pass^1 and pass^2 over greedy trials with a simulated " +
            "customer, before and after fine-tuning a copy of the base in all its weights on the oracle agent's conversations), and write an HTML report (report.html, report.md). " +
            "With --model and --data it runs the same loop on real inputs, replaying general text (the generated corpus, or --general) against " +
            "forgetting; the agent benchmark then runs separately (hone agent).")
        {
            output, model, data, generalText, seed, scale, baseCache, noBaseCache, threads, distill, unlearn, distillSteps, kdRatio, kdTemperature, kdLoss, unlearnArms,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            if (r.GetValue(data) != null && r.GetValue(model) == null)
                throw new ArgumentException("--data needs --model (a generated base model is only trained for the generated data)");
            if (r.GetValue(scale) is <= 0 or > 10) throw new ArgumentException("--scale must be in (0, 10]");
            if (r.GetValue(noBaseCache) && r.GetValue(baseCache) != null) throw new ArgumentException("--base-cache and --no-base-cache contradict each other");
            string? cache = r.GetValue(noBaseCache) || r.GetValue(model) != null ? null : r.GetValue(baseCache) ?? BaseModelCache.DefaultDirectory();
            if (r.GetValue(distillSteps) < 1) throw new ArgumentException("--distill-steps must be at least 1");
            if (r.GetValue(kdRatio) is < 0 or > 1) throw new ArgumentException("--kd-ratio must be in [0, 1]");
            if (!(r.GetValue(kdTemperature) > 0)) throw new ArgumentException("--kd-temperature must be above 0");
            var loss = r.GetValue(kdLoss) switch
            {
                "forward" => DistillationDivergence.Forward, "reverse" => DistillationDivergence.Reverse, "symmetric" => DistillationDivergence.Symmetric,
                var other => throw new ArgumentException($"--kd-loss '{other}': expected forward, reverse or symmetric"),
            };
            var distillation = recipe with { Steps = r.GetValue(distillSteps), KdRatio = r.GetValue(kdRatio), KdTemperature = r.GetValue(kdTemperature), KdLoss = loss };
            var arms = r.GetValue(unlearnArms)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(arm =>
            {
                var parts = arm.Split(':');
                if (parts.Length != 2 || parts[0] is not ("grad-ascent" or "grad-diff" or "npo")
                    || !float.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out float lr) || !(lr > 0) || float.IsInfinity(lr))
                    throw new ArgumentException($"--unlearn-arms: '{arm}' is not METHOD:LR (METHOD grad-ascent, grad-diff or npo; LR a positive number)");
                return new UnlearningArm(parts[0], lr);
            }).ToList();
            if (arms.Count == 0) throw new ArgumentException("--unlearn-arms names no run");
            if (arms.Select(a => a.Name).Distinct().Count() != arms.Count) throw new ArgumentException("--unlearn-arms names a run twice");
            var unlearning = UnlearningRecipe.Default with { Arms = arms };
            using var cancel = CliSupport.CancelOnCtrlC(terminateToo: true);
            QuickstartResult result;
            try
            {
                result = Quickstart.Run(new QuickstartOptions(r.GetValue(output)!, r.GetValue(model), r.GetValue(data), r.GetValue(threads), r.GetValue(seed), r.GetValue(scale), r.GetValue(generalText), cache,
                    r.GetValue(distill), r.GetValue(unlearn), distillation, unlearning),
                    line => Console.Error.WriteLine(line), cancel.Token);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                // Every stage writes through temporaries, and a base model is cached only once it is whole.
                Console.Error.WriteLine($"interrupted: {r.GetValue(output)} holds the stages finished so far; run again to start over");
                return 130;
            }
            Console.WriteLine();
            Console.WriteLine($"{"metric",-40} {"before",12} {"after",12}");
            foreach (var (name, (before, after)) in result.Metrics)
                Console.WriteLine($"{name,-40} {F(before),12} {F(after),12}");
            Console.WriteLine();
            Console.WriteLine($"done in {(int)result.Elapsed.TotalMinutes}:{result.Elapsed.Seconds:D2}; report: {result.Report}");
            return 0;
        }));
        return cmd;
    }

    static string F(double? v) => v is double d ? d.ToString("0.####", CultureInfo.InvariantCulture) : "-";
}
