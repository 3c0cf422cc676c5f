using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Bench;

public static unsafe class Program
{
    public static int Main(string[] args)
    {
        var mode = args.Length > 0 ? args[0] : "gemm";
        switch (mode)
        {
            case "gemm": return GemmBench(args.Skip(1).ToArray());
            case "tokenize": return TokenizeBench(args.Skip(1).ToArray());
            case "quant": QuantBenchmark.Run(args.Skip(1).ToArray()); return 0;
            case "matvec": return MatVecBench.Run(args.Skip(1).ToArray());
            case "rows": return RowsBench.Run(args.Skip(1).ToArray());
            case "attention": return AttentionBench.Run(args.Skip(1).ToArray());
            case "emitted": return EmittedBench.Run(args.Skip(1).ToArray());
            case "data": return DataBench.Run(args.Skip(1).ToArray());
            case DataBench.ChildMode: return DataBench.Child(args.Skip(1).ToArray());
            default:
                Console.Error.WriteLine($"unknown benchmark '{mode}'; known: gemm, matvec, rows, attention, emitted, tokenize, quant, data");
                return 2;
        }
    }

    static int GemmBench(string[] args)
    {
        int threads = args.Length > 0 ? int.Parse(args[0]) : 1;
        using var pool = new WorkerPool(threads);
        for (int rep = 0; rep < 5; rep++)
        {
            var sw0 = Stopwatch.StartNew();
            // HONE_KC: the depth of the micro-kernel run (256 = the GEMM's block; its 64 KB B sliver streams from L2)
            int kcOnly = int.TryParse(Environment.GetEnvironmentVariable("HONE_KC"), out var kcv) && kcv > 0 && kcv <= 256 ? kcv : 256;
            double flops = Gemm.KernelOnly(20000 * 256 / kcOnly, kcOnly);
            Console.WriteLine($"micro-kernel alone (kc {kcOnly}): {flops / sw0.Elapsed.TotalSeconds / 1e9:F1} GFLOP/s");
        }
        var layouts = args.Length > 1 && args[1] == "narrow"
            ? new[] { (1024, 16, 576, GemmBLayout.NByK, false), (576, 16, 1024, GemmBLayout.KByN, true), (1024, 16, 1536, GemmBLayout.KByN, false),
                      (16, 576, 1024, GemmBLayout.KByN, true), (1024, 576, 16, GemmBLayout.KByN, false) }
            : args.Length > 1 && args[1] == "head"
            ? new[] { (256, 49152, 576, GemmBLayout.NByK, false), (256, 576, 49152, GemmBLayout.KByN, false), (49152, 576, 256, GemmBLayout.KByN, true) }
            : args.Length > 1 && args[1] == "train"
            ? new[] { (1024, 1536, 576, GemmBLayout.NByK, false), (1024, 576, 1536, GemmBLayout.NByK, false), (1024, 576, 576, GemmBLayout.NByK, false),
                      (1024, 192, 576, GemmBLayout.NByK, false), (1024, 576, 1536, GemmBLayout.KByN, false), (1024, 576, 192, GemmBLayout.KByN, false),
                      (1536, 576, 1024, GemmBLayout.KByN, true), (192, 576, 1024, GemmBLayout.KByN, true), (576, 1536, 1024, GemmBLayout.KByN, true) }
            : new[] { (512, 1536, 576, GemmBLayout.NByK, false), (512, 576, 1536, GemmBLayout.NByK, false), (512, 576, 576, GemmBLayout.NByK, false),
                      (512, 192, 576, GemmBLayout.NByK, false), (512, 49152, 576, GemmBLayout.NByK, false) };
        // compare: even and balanced shares alternated; compare-blocking: shallow and deep packed-weight blocks alternated.
        bool compareBlocking = args.Contains("compare-blocking");
        bool compareSchedules = args.Contains("compare") || compareBlocking;
        foreach (var (m, n, k, layout, transposeA) in layouts)
        {
            var a = new NativeBuffer((long)m * k * 4); var b = new NativeBuffer((long)n * k * 4); var c = new NativeBuffer((long)m * n * 4);
            int lda = transposeA ? m : k, ldb = layout == GemmBLayout.NByK ? k : n;
            var rng = new Random(1);
            for (long i = 0; i < (long)m * k; i++) a.AsFloats[i] = (float)rng.NextDouble();
            for (long i = 0; i < (long)n * k; i++) b.AsFloats[i] = (float)rng.NextDouble();
            if (compareSchedules)
            {
                // Even and balanced (learned-speed) shares alternated call by call, so host noise hits both alike; medians.
                var times = new[] { new List<double>(), new List<double>() };
                for (int rep = 0; rep < 30; rep++)
                {
                    if (compareBlocking) Gemm.ShallowWeightBlocks = rep % 2 == 0;
                    else pool.Balancing = rep % 2 == 1;
                    var sw = Stopwatch.StartNew();
                    Gemm.Multiply(pool, m, n, k, a.AsFloats, lda, transposeA, b.AsFloats, ldb, layout, c.AsFloats, n, false);
                    times[rep % 2].Add(sw.Elapsed.TotalSeconds);
                }
                pool.Balancing = true; Gemm.ShallowWeightBlocks = false;
                var (first, second) = compareBlocking ? ("shallow", "deep") : ("even", "balanced");
                double Median(List<double> t) { t.Sort(); return t[t.Count / 2]; }
                Console.WriteLine($"M={m} N={n} K={k} {layout}{(transposeA ? " Aᵀ" : "")} threads={threads}: {first} {2.0 * m * n * k / Median(times[0]) / 1e9:F1}, {second} {2.0 * m * n * k / Median(times[1]) / 1e9:F1} GFLOP/s (medians of 15; speeds {string.Join("/", pool.Speeds.Select(v => v.ToString("F2")))})");
            }
            else
            {
                double best = double.MaxValue;
                for (int rep = 0; rep < 10; rep++)
                {
                    var sw = Stopwatch.StartNew();
                    Gemm.Multiply(pool, m, n, k, a.AsFloats, lda, transposeA, b.AsFloats, ldb, layout, c.AsFloats, n, false);
                    best = Math.Min(best, sw.Elapsed.TotalSeconds);
                }
                double gflops = 2.0 * m * n * k / best / 1e9;
                Console.WriteLine($"M={m} N={n} K={k} {layout}{(transposeA ? " Aᵀ" : "")} threads={threads}: {best * 1e3:F2} ms, {gflops:F1} GFLOP/s");
            }
            a.Dispose(); b.Dispose(); c.Dispose();
        }
        return 0;
    }

    /// <summary>Single-threaded encoding speed (MB/s of UTF-8 input) of the shared tokenizers on tiny Shakespeare and on
    /// the multilingual test inputs. "cold" is the first pass of a freshly loaded tokenizer (empty word cache), "warm"
    /// the best of later passes. Argument: the shared/data folder (default: found upward from here, or HONE_SHARED_DATA).</summary>
    static int TokenizeBench(string[] args)
    {
        string? root = args.Length > 0 ? args[0] : FindSharedData();
        if (root == null || !Directory.Exists(root))
        {
            Console.Error.WriteLine("shared/data not found: pass its path or set HONE_SHARED_DATA");
            return 2;
        }
        string P(string relative) => Path.Combine(root, relative);
        var shakespeare = File.ReadAllText(P("datasets/tinyshakespeare/input.txt"));
        var inputs = JsonNode.Parse(File.ReadAllText(P("tokenizers/test-vectors/swift-transformers/multilingual/inputs.json")))!
            .AsArray().Select(n => (string)n!["text"]!).ToList();
        // The 83 inputs joined by newlines, repeated to about 1 MB.
        string oneRound = string.Join("\n", inputs);
        var multilingual = string.Concat(Enumerable.Repeat(oneRound + "\n", 1_000_000 / Encoding.UTF8.GetByteCount(oneRound) + 1));

        var tokenizers = new (string Name, Func<Tokenizer> Load)[]
        {
            ("GPT-2 (tokenizer.json)", () => Tokenizer.FromHuggingFaceDirectory(P("tokenizers/gpt2-hf"))),
            ("Llama 3 (encoder.json + vocab.bpe)", () => Tokenizer.FromGpt2Files(P("tokenizers/llama3.2-bpe/encoder.json"), P("tokenizers/llama3.2-bpe/vocab.bpe"), PreTokenizerKind.Llama3)),
            ("Llama 2 (tokenizer.json)", () => Tokenizer.FromHuggingFaceDirectory(P("tokenizers/llama2-hf"))),
            ("Llama 2 (GGUF, llama.cpp SPM)", () => { using var g = GgufFile.Open(P("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf")); return Tokenizer.FromGguf(g); }),
        };
        Console.WriteLine($"tiny shakespeare: {Encoding.UTF8.GetByteCount(shakespeare) / 1e6:F2} MB; multilingual: {Encoding.UTF8.GetByteCount(multilingual) / 1e6:F2} MB (83 inputs repeated)");
        Console.WriteLine("single thread; cold = first pass of a fresh tokenizer (empty word cache, JIT already warm); warm = best of 10 passes;");
        Console.WriteLine("cpu = mean warm pass in this thread\'s CPU time (less sensitive to other processes on the machine)");
        Console.WriteLine($"{"tokenizer",-36} {"corpus",-12} {"tokens",9} {"cold MB/s",10} {"warm MB/s",10} {"cpu MB/s",9} {"decode MB/s",12}");
        foreach (var (name, load) in tokenizers)
        {
            var warmup = load(); // compiles the code paths on another instance, so the measured one starts with an empty cache only
            for (int i = 0; i < 3; i++) warmup.Encode(shakespeare[..200_000] + multilingual[..100_000], addSpecialTokens: false, parseSpecialTokens: false);
            foreach (var (corpusName, text) in new[] { ("shakespeare", shakespeare), ("multilingual", multilingual) })
            {
                double mb = Encoding.UTF8.GetByteCount(text) / 1e6;
                var tokenizer = load();
                var sw = Stopwatch.StartNew();
                var ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
                double cold = sw.Elapsed.TotalSeconds;
                double warm = double.MaxValue;
                const int reps = 10;
                double cpu0 = ThreadCpuSeconds();
                for (int rep = 0; rep < reps; rep++)
                {
                    sw.Restart();
                    var again = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
                    warm = Math.Min(warm, sw.Elapsed.TotalSeconds);
                    if (!again.AsSpan().SequenceEqual(ids)) throw new InvalidOperationException("encoding is not deterministic");
                }
                double cpu = (ThreadCpuSeconds() - cpu0) / reps; // includes the comparisons, so slightly pessimistic
                double decode = double.MaxValue;
                for (int rep = 0; rep < 3; rep++)
                {
                    sw.Restart();
                    string decoded = tokenizer.Decode(ids);
                    decode = Math.Min(decode, sw.Elapsed.TotalSeconds);
                    if (decoded != text) throw new InvalidOperationException($"{name}: decode(encode(text)) != text on {corpusName}");
                }
                Console.WriteLine($"{name,-36} {corpusName,-12} {ids.Length,9} {mb / cold,10:F1} {mb / warm,10:F1} {mb / cpu,9:F1} {mb / decode,12:F1}");
            }
        }
        return 0;
    }

    /// <summary>CPU time of the calling thread (Linux: /proc/thread-self/stat; elsewhere the process's, which is close
    /// for single-threaded work).</summary>
    static double ThreadCpuSeconds()
    {
        const string stat = "/proc/thread-self/stat";
        if (File.Exists(stat))
        {
            var text = File.ReadAllText(stat);
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' '); // fields after the command name; utime and stime are 12 and 13 here
            return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0; // clock ticks of 1/100 s
        }
        return Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
    }

    static string? FindSharedData()
    {
        var env = Environment.GetEnvironmentVariable("HONE_SHARED_DATA");
        if (!string.IsNullOrEmpty(env)) return env;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "data");
                if (File.Exists(Path.Combine(candidate, "SOURCES.md"))) return candidate;
            }
        return null;
    }
}
