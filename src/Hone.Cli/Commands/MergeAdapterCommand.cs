using System.CommandLine;
using Hone.Transforms;

namespace Hone.Cli.Commands;

internal static class MergeAdapterCommand
{
    public static Command Create()
    {
        var model = new ModelInput("the base model (a Hugging Face directory, a .gguf file, or a folder holding one)");
        var adapter = new Option<string>("--adapter") { Description = "the adapter directory (PEFT layout)", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "a directory (Hugging Face safetensors) or a .gguf file", Required = true };
        var type = CliSupport.MatrixType("weight type of the output (default f32; .gguf outputs may be quantized)");
        var threads = CliSupport.Threads();
        var cmd = new Command("merge-adapter",
            $"Fold an adapter ({string.Join(", ", Hone.Model.AdapterKinds.Names)}) into the base weights in fp32. Refuses non-finite results and checks that the merged " +
            "model's logits equal base+adapter's before writing.")
        {
            adapter, output, type, threads,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var report = AdapterMerger.Merge(new MergeOptions(model.Read(r)!, r.GetValue(adapter)!, r.GetValue(output)!,
                CliSupport.ParseType(r.GetValue(type)), r.GetValue(threads)), m => Console.Error.WriteLine(m));
            Console.WriteLine($"merged {report.MergedProjections} projections into {report.Output}");
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            return 0;
        }));
        return cmd;
    }
}
