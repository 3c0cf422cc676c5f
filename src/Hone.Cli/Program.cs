using System.CommandLine;
using Hone.Cli.Commands;

namespace Hone.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("hone — turn a small Llama-family language model into a specialist, in pure .NET.\n" +
                                   "Models are Hugging Face directories (config.json + safetensors) or .gguf files.");
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(PerplexityCommand.Create());
        root.Subcommands.Add(ImatrixCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(DistillCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(MergeAdapterCommand.Create());
        root.Subcommands.Add(MoeCommand.Create());
        root.Subcommands.Add(PruneCommand.Create());
        root.Subcommands.Add(RouterCommand.Create());
        root.Subcommands.Add(DataCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(AgentCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        root.Subcommands.Add(SynthCommand.Create());
        root.Subcommands.Add(QuickstartCommand.Create());
        var result = root.Parse(args);
        return CliSupport.ReportUsageErrors(result, args) ?? result.Invoke();
    }
}
