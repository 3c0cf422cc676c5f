using System.Diagnostics;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>
/// `convert` writes its whole output to a hidden temporary sibling, verifies it there, and only then renames it:
/// a failed, cancelled or killed run leaves nothing that looks like a model (no .gguf, no config.json +
/// model.safetensors under the final name, no *.tmp left behind).
/// </summary>
public partial class AtomicConvertTests
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    static readonly WorkerPool Pool = new(2);

    static string[] Entries(string dir) => Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order().ToArray()!;

    [Theory]
    [InlineData("out.gguf")]
    [InlineData("out-hf")]
    public void Cancelled_during_verification_leaves_nothing(string output)
    {
        using var dir = new TempDirectory();
        using var cancel = new CancellationTokenSource();
        var target = dir.File(output);
        // Cancel at the moment the output is complete but not yet verified: the state a killed run used to leave
        // as a finished-looking model.
        Assert.Throws<OperationCanceledException>(() => ModelConverter.Convert(
            new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), target),
            m => { if (m.StartsWith("verifying", StringComparison.Ordinal)) cancel.Cancel(); }, cancel.Token));
        Assert.Empty(Entries(dir.Path));
    }

    [Fact]
    public void Failed_conversion_keeps_an_existing_output_directory_as_it_was()
    {
        using var dir = new TempDirectory();
        var target = Directory.CreateDirectory(dir.File("out")).FullName;
        File.WriteAllText(Path.Combine(target, "config.json"), "{\"old\": true}");
        File.WriteAllText(Path.Combine(target, "notes.txt"), "mine");
        using var cancel = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() => ModelConverter.Convert(
            new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), target),
            m => { if (m.StartsWith("verifying", StringComparison.Ordinal)) cancel.Cancel(); }, cancel.Token));
        Assert.Equal(["out"], Entries(dir.Path));
        Assert.Equal(["config.json", "notes.txt"], Entries(target));
        Assert.Equal("{\"old\": true}", File.ReadAllText(Path.Combine(target, "config.json")));
    }

    [Fact]
    public void Converting_into_a_directory_with_other_files_replaces_the_model_and_keeps_the_rest()
    {
        using var dir = new TempDirectory();
        var target = Directory.CreateDirectory(dir.File("out")).FullName;
        File.WriteAllText(Path.Combine(target, "config.json"), "{\"old\": true}");
        File.WriteAllText(Path.Combine(target, "model.safetensors.index.json"), "{\"weight_map\": {}}"); // a stale sharded model
        File.WriteAllText(Path.Combine(target, "notes.txt"), "mine");
        var report = ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), target));
        Assert.InRange(report.MaxLogitDifference!.Value, 0, 1e-4);
        Assert.Equal(["out"], Entries(dir.Path));
        Assert.Equal(["config.json", "model.safetensors", "notes.txt"], Entries(target));
        var (tokens, expected) = ReferenceLogitsTests.Expected("llama-gguf-f32");
        using var c = Checkpoint.Open(target);
        using var w = LlamaWeights.Load(c);
        using var m = new LlamaModel(w, Pool, maxContext: 64);
        var logits = new float[expected.Length];
        m.Forward(tokens, logits, allLogits: true);
        TestData.AssertClose(expected, logits, ReferenceLogitsTests.BatchedLogitTolerance("llama-gguf-f32"), "converted into an existing directory");
    }

    [Fact]
    public void Successful_conversion_leaves_only_the_output()
    {
        using var dir = new TempDirectory();
        ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), dir.File("out.gguf")));
        ModelConverter.Convert(new ConvertOptions(dir.File("out.gguf"), dir.File("hf")));
        Assert.Equal(["hf", "out.gguf"], Entries(dir.Path));
        Assert.Equal(["config.json", "model.safetensors"], Entries(dir.File("hf")));
    }

    /// <summary>A random model big enough that writing it takes a while (about 40 MB of f32).</summary>
    static readonly Lazy<string> BigModel = new(() =>
    {
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 16000, HiddenSize = 256, IntermediateSize = 768, Layers = 4, Heads = 4, KvHeads = 4,
            HeadDim = 64, RotaryDims = 64, MaxPositions = 256,
        };
        var path = Path.Combine(Path.GetTempPath(), $"hone-convert-source-{Environment.ProcessId}");
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, 5);
        ModelConverter.Write(w, null, path, TensorType.F32, new List<string>());
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(path, true); } catch (IOException) { } };
        return path;
    });

    /// <summary>Whether the signal is set to be ignored in this process (/proc/self/status SigIgn, bit signal − 1).</summary>
    static bool IgnoredHere(int signal)
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line != null && ((Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) >> (signal - 1)) & 1) == 1;
    }

    [SkippableTheory]
    [InlineData("out.gguf", "q4_k", 15)] // SIGTERM
    [InlineData("out-hf", "f16", 15)]
    [InlineData("out.gguf", "q4_k", 2)]  // SIGINT (Ctrl+C)
    [InlineData("out-hf", "f16", 2)]
    public async Task Sigterm_or_sigint_while_writing_leaves_nothing_that_looks_like_a_model(string output, string type, int signal)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "sends the signal through Linux libc");
        Skip.If(IgnoredHere(signal), $"signal {signal} is ignored in this test process (a shell without job control starts background " +
                                     "commands with SIGINT ignored), and the child would inherit that");
        // Under load the child can finish (write and verify) before the signal lands: then there was nothing to
        // interrupt, and the attempt is repeated in a fresh folder.
        for (int attempt = 1; ; attempt++)
        {
            using var dir = new TempDirectory();
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "hone.dll"), "convert", BigModel.Value, "--out", dir.File(output), "--type", type, "--threads", "1" })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var seen = new System.Text.StringBuilder();
            // The converter logs "writing ..." just before the first byte of the output: signal it then.
            var writing = Task.Run(async () =>
            {
                while (await p.StandardError.ReadLineAsync() is { } line)
                {
                    seen.AppendLine(line);
                    if (line.StartsWith("writing", StringComparison.Ordinal)) return true;
                }
                return false;
            });
            // The suite's hang guard only: a slow machine may take long to get there.
            Assert.True(await writing.WaitAsync(HangGuard.Limit), $"the run ended before writing: {seen}");
            if (Kill(p.Id, signal) != 0)
            {
                await p.WaitForExitAsync().WaitAsync(HangGuard.Limit);
                Assert.True(p.ExitCode == 0 && attempt < 3, $"the signal could not be sent (attempt {attempt}, exit {p.ExitCode}): {seen}");
                continue;
            }
            var rest = p.StandardError.ReadToEndAsync();
            try { await p.WaitForExitAsync().WaitAsync(HangGuard.Limit); }
            catch (TimeoutException) { p.Kill(true); throw new TimeoutException($"convert did not stop after signal {signal}: {seen}{await rest}"); }
            string errors = seen + await rest;
            if (p.ExitCode == 0 && attempt < 3) continue; // the signal arrived as the run was ending
            Assert.True(p.ExitCode == 130, $"exit {p.ExitCode}: {errors} {await stdout}");
            Assert.Contains("cancelled: nothing written", errors);
            Assert.Empty(Entries(dir.Path));
            return;
        }
    }
}
