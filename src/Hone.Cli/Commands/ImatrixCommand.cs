using System.CommandLine;
using System.Text.Json.Nodes;
using Hone.Transforms;

namespace Hone.Cli.Commands;

internal static class ImatrixCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a .gguf file or Hugging Face model directory (the model whose activations are measured)", required: false);
        var data = new Option<string?>("--data", "-f") { Description = "calibration text (UTF-8), tokenized once and cut into chunks of --ctx tokens" };
        var output = new Option<string>("--out", "-o") { Description = "the imatrix .gguf to write (llama.cpp's layout: llama-quantize --imatrix reads it)", Required = true };
        var ctx = new Option<int>("--ctx", "-c") { Description = "tokens per chunk; each chunk runs from an empty cache, its first token replaced by BOS", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var chunks = new Option<int?>("--chunks") { Description = "at most this many chunks (default: every whole chunk of the text)" }.Within(1, int.MaxValue);
        var inFiles = new Option<string[]>("--in-file")
        {
            Description = "an imatrix file (GGUF or legacy .dat) to add, repeatable: sums and counts add, as llama-imatrix --in-file does. " +
                          "With --data the new text's sums are added to them; without, two or more files are merged",
        };
        var processOutput = new Option<bool>("--process-output") { Description = "also collect the output head's input (llama-imatrix --process-output)" };
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("imatrix",
            "Compute an importance matrix: for every projection in the layers and every input column, the sum of squared activations and the number " +
            "of rows, over calibration text (per expert for a mixture of experts). Same chunking as llama-imatrix: the text is tokenized (BOS first when the tokenizer adds one), cut " +
            "into chunks of --ctx tokens (a partial last chunk is dropped), each chunk's first token replaced by BOS; activations are fp32. " +
            "hone convert --imatrix and llama-quantize --imatrix use it to weigh rounding errors at 4 and 6 bits.")
        {
            data, output, ctx, chunks, inFiles, processOutput, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            var files = r.GetValue(inFiles) ?? [];
            string? modelPath = model.Read(r);
            if (r.GetValue(data) != null && modelPath == null) throw new ArgumentException("--data needs the model (MODEL or -m MODEL)");
            var options = new ImatrixOptions(modelPath, r.GetValue(data), r.GetValue(output)!, r.GetValue(ctx), r.GetValue(chunks), r.GetValue(threads), files,
                r.GetValue(processOutput));
            var report = ImportanceMatrixBuilder.Build(options, m => Console.Error.WriteLine(m), CliSupport.Progress("imatrix"), cancel);
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["output"] = report.Output, ["entries"] = report.Entries, ["chunks_computed"] = report.ChunksComputed,
                    ["chunk_count"] = report.ChunkCount, ["tokens"] = report.TokensEvaluated,
                }.ToJsonString());
                return 0;
            }
            foreach (var n in report.Notes) Console.WriteLine(n);
            Console.WriteLine($"wrote {report.Output} ({report.Entries} tensors, {report.ChunkCount} chunks{(report.ChunksComputed > 0 ? $", {report.TokensEvaluated:N0} tokens evaluated here" : "")})");
            return 0;
        }));
        return cmd;
    }
}
