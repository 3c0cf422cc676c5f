using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Inference;
using Hone.Tensors;

namespace Hone.Bench;

/// <summary>
/// <c>data [MB] [threads]</c>: generate a synthetic JSONL corpus (deterministic; 1024 MB by default) in a temporary
/// folder, run the data tools over it — each in a child process, so each one's peak resident memory (VmHWM) is its
/// own — and print MB/s of input and peak RSS per tool. The folder is deleted afterwards.
/// The corpus: Zipf-distributed words from a 30,000-word vocabulary, 30–930 words a document (about 2 KB),
/// 3% exact copies and 3% near copies (1–4% of words replaced) of recent documents, a lognormal "ppl" field; an
/// evaluation file of excerpts from every 2,000th document for decontamination.
/// </summary>
internal static class DataBench
{
    public const string ChildMode = "data-child";

    public static int Run(string[] args)
    {
        long megabytes = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 1024;
        int threads = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 0;
        var dir = Directory.CreateTempSubdirectory("hone-data-bench-").FullName;
        try
        {
            var input = Path.Combine(dir, "corpus.jsonl");
            var eval = Path.Combine(dir, "eval.jsonl");
            var sw = Stopwatch.StartNew();
            var (records, bytes) = Generate(input, eval, megabytes << 20);
            double mb = bytes / 1e6;
            Console.WriteLine($"corpus: {records:N0} records, {mb:F0} MB, generated in {sw.Elapsed.TotalSeconds:F1} s");
            Console.WriteLine($"machine: {Environment.ProcessorCount} cores, load average before: {LoadAverage()}; threads {(threads == 0 ? "all" : threads)}");
            Console.WriteLine($"{"tool",-22} {"seconds",8} {"MB/s",8} {"cpu s",8} {"MB/cpu-s",9} {"peak RSS",10}  result");
            var runs = new (string Name, string[] Args)[]
            {
                ("stats", ["stats"]),
                ("dedup (exact)", ["dedup-exact"]),
                ("dedup (exact + near)", ["dedup-near"]),
                ("filter (quantiles)", ["filter"]),
                ("split", ["split"]),
                ("decontaminate", ["decontaminate"]),
            };
            foreach (var (name, toolArgs) in runs)
            {
                var result = Child([toolArgs[0], input, eval, dir, threads.ToString(CultureInfo.InvariantCulture)], out string error);
                if (result == null) { Console.WriteLine($"{name,-22} failed: {error}"); return 1; }
                double seconds = (double)result["seconds"]!;
                long peak = (long)result["peak_rss"]!;
                double cpu = (double)result["cpu_seconds"]!;
                Console.WriteLine($"{name,-22} {seconds,8:F1} {mb / seconds,8:F1} {cpu,8:F1} {mb / cpu,9:F1} {peak / (double)(1 << 20),7:F0} MiB  {(string)result["summary"]!}");
                foreach (var f in Directory.GetFiles(dir).Where(f => f != input && f != eval)) File.Delete(f);
            }
            Console.WriteLine($"load average after: {LoadAverage()}");
            Console.WriteLine("MB/s = input MB / the tool's own wall time (filter with quantiles reads the input twice); cpu s = the child " +
                              "process's CPU time, all threads, startup and JIT included (steadier than wall time on a shared machine); " +
                              "peak RSS = VmHWM of the child process that ran the tool (runtime included).");
            return 0;
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary>Run one tool in a child process; its last stdout line is a JSON object with seconds, peak_rss, summary.</summary>
    static JsonObject? Child(string[] args, out string error)
    {
        var self = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(DataBench).Assembly.Location);
        psi.ArgumentList.Add(ChildMode);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        error = stderr.Result;
        var last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (p.ExitCode != 0 || last == null) { error = $"exit {p.ExitCode}: {error}"; return null; }
        return JsonNode.Parse(last)!.AsObject();
    }

    /// <summary>The child side: run one tool and report its time and this process's peak resident memory.</summary>
    public static int Child(string[] args)
    {
        string tool = args[0], input = args[1], eval = args[2], dir = args[3];
        int threads = int.Parse(args[4], CultureInfo.InvariantCulture);
        string Out(string name) => Path.Combine(dir, name);
        double seconds;
        string summary;
        switch (tool)
        {
            case "stats":
            {
                var r = DataStats.Run(new DataStatsOptions(input, Threads: threads));
                seconds = r.Seconds;
                summary = $"{r.Records:N0} records, {r.DuplicateRecords:N0} exact duplicates, median {r.CharacterLengths!.Median:F0} chars";
                break;
            }
            case "dedup-exact" or "dedup-near":
            {
                var r = DataDedup.Run(new DataDedupOptions(input, Out("dedup.jsonl"), Near: tool == "dedup-near", Threads: threads));
                seconds = r.Seconds;
                summary = $"kept {r.Kept:N0}, removed {r.ExactDuplicates:N0} exact + {r.NearDuplicates:N0} near" +
                          (r.Near ? $" ({r.Bands!.Value.Bands}×{r.Bands.Value.Rows}, index {r.IndexBytes >> 20} MiB)" : "");
                break;
            }
            case "filter":
            {
                var r = DataFilter.Run(new DataFilterOptions(input, Out("filter.jsonl"), KeepQuantiles: (0.1, 0.9), Threads: threads));
                seconds = r.Seconds;
                summary = $"kept {r.Kept:N0} with ppl in [{r.QuantileBounds!.Value.Low:F2}, {r.QuantileBounds.Value.High:F2}] (2 passes)";
                break;
            }
            case "split":
            {
                var r = DataSplit.Run(new DataSplitOptions(input, Out("train.jsonl"), Out("val.jsonl"), 0.1, Seed: 1, Threads: threads));
                seconds = r.Seconds;
                summary = $"train {r.Train:N0}, validation {r.Validation:N0}";
                break;
            }
            case "decontaminate":
            {
                var r = Decontaminate.Run(new DecontaminateOptions(input, [eval], Out("clean.jsonl"), Threads: threads));
                seconds = r.Seconds;
                summary = $"dropped {r.Dropped:N0} records sharing a 13-gram with {r.EvalSets[0].Segments:N0} evaluation excerpts";
                break;
            }
            default: throw new ArgumentException($"unknown data tool '{tool}'");
        }
        var peak = PeakResidentBytes();
        double cpu = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        Console.WriteLine(new JsonObject { ["seconds"] = seconds, ["cpu_seconds"] = cpu, ["peak_rss"] = peak, ["summary"] = summary }.ToJsonString());
        return 0;
    }

    static long PeakResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return Process.GetCurrentProcess().PeakWorkingSet64;
    }

    static (long Records, long Bytes) Generate(string path, string evalPath, long targetBytes)
    {
        var rng = new Xoshiro256(20240601);
        const int vocabulary = 30_000;
        var words = new string[vocabulary];
        var letters = new char[12];
        for (int i = 0; i < vocabulary; i++)
        {
            int length = 2 + rng.NextInt(8);
            for (int c = 0; c < length; c++) letters[c] = (char)('a' + rng.NextInt(26));
            words[i] = new string(letters, 0, length);
        }
        // Zipf(1) ranks through a quantized inverse CDF: one table lookup a word.
        var cumulative = new double[vocabulary];
        double total = 0;
        for (int i = 0; i < vocabulary; i++) cumulative[i] = total += 1.0 / (i + 1);
        var inverse = new int[1 << 20];
        for (int i = 0, r = 0; i < inverse.Length; i++)
        {
            double u = (i + 0.5) / inverse.Length * total;
            while (cumulative[r] < u) r++;
            inverse[i] = r;
        }
        string Word() => words[inverse[(int)(rng.NextUInt64() >> 44)]];

        var recent = new string[2000];
        int recentCount = 0;
        long records = 0, written = 0;
        var sb = new StringBuilder(16 << 10);
        var utf8 = new UTF8Encoding(false);
        using var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        using var eval = new StreamWriter(evalPath, false, utf8);
        while (written < targetBytes)
        {
            string text;
            double kind = rng.NextDouble();
            if (kind < 0.03 && recentCount > 0) text = recent[rng.NextInt(Math.Min(recentCount, recent.Length))];
            else if (kind < 0.06 && recentCount > 0)
            {
                var source = recent[rng.NextInt(Math.Min(recentCount, recent.Length))].Split(' ');
                double rate = 0.01 + 0.03 * rng.NextDouble();
                for (int i = 0; i < source.Length; i++) if (rng.NextDouble() < rate) source[i] = Word();
                text = string.Join(' ', source);
            }
            else
            {
                sb.Clear();
                int count = 30 + (int)(Math.Pow(rng.NextDouble(), 2) * 900);
                for (int i = 0; i < count; i++)
                {
                    if (i > 0) sb.Append(rng.NextInt(14) == 0 ? ". " : " ");
                    sb.Append(Word());
                }
                text = sb.ToString();
                recent[recentCount++ % recent.Length] = text;
            }
            if (records % 2000 == 1000)
            {
                var tokens = text.Split(' ');
                if (tokens.Length > 60) eval.WriteLine(new JsonObject { ["question"] = string.Join(' ', tokens.Skip(10).Take(40)) }.ToJsonString());
            }
            double normal = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            double ppl = Math.Exp(2.5 + 0.5 * normal);
            string line = $"{{\"id\":{records},\"text\":\"{text}\",\"ppl\":{ppl.ToString("R", CultureInfo.InvariantCulture)}}}\n";
            var bytes = utf8.GetBytes(line);
            output.Write(bytes);
            written += bytes.Length;
            records++;
        }
        return (records, written);
    }
}
