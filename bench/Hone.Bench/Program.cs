using Hone.Bench;

// Benchmarks that are never part of the unit tests. Usage: dotnet run -c Release --project bench/Hone.Bench -- <mode>
var modes = new Dictionary<string, Action<string[]>>(StringComparer.OrdinalIgnoreCase)
{
    ["quant"] = QuantBenchmark.Run,
};
if (args.Length == 0 || !modes.TryGetValue(args[0], out var run))
{
    Console.Error.WriteLine($"usage: Hone.Bench <mode> [options]; modes: {string.Join(", ", modes.Keys)}");
    return 2;
}
run(args[1..]);
return 0;
