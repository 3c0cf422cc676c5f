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
        var type = CliSupport.MatrixType("weight type (default: keep each tensor's). Norms stay f32; rows that do not fit a block are stored as q8_0/f16, and each such tensor is listed");
        var noVerify = new Option<bool>("--no-verify") { Description = "skip reloading the output and comparing its logits with the source" };
        var baseModel = new Option<string?>("--base") { Description = "converting a PEFT adapter directory to a llama.cpp LoRA .gguf: the base model it was trained on (" +
            string.Join("; ", Hone.Model.AdapterKinds.All.Where(k => k.LlamaCppType == null).Select(k => $"{k} adapters have no llama.cpp form")) + ")" };
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("convert",
            "Convert between Hugging Face directories and GGUF files, and requantize. GGUF files written here load in llama.cpp unchanged " +
            "(llama q/k rows are permuted for its rope, as its own converter does).")
        {
            output, type, noVerify, baseModel, threads, json,
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
            var options = new ConvertOptions(source, r.GetValue(output)!, CliSupport.ParseType(r.GetValue(type)), !r.GetValue(noVerify), r.GetValue(threads));
            var report = ModelConverter.Convert(options, m => Console.Error.WriteLine(m), cancel);
            if (r.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(report, CliSupport.JsonOptions)); return 0; }
            Console.WriteLine($"wrote {report.Output} ({report.Format}, {report.Tensors} tensors, {CliSupport.Bytes(report.Bytes)})");
            foreach (var n in report.Notes) Console.WriteLine($"  {n}");
            return 0;
        }));
        return cmd;
    }
}
