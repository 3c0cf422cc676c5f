using System.CommandLine;
using System.Text.Json;
using Hone.Batching;

namespace Hone.Cli.Commands;

internal static class RouterCommand
{
    public static Command Create()
    {
        var cmd = new Command("router", "Request-level routing between a model's adapters: build a router for `hone serve --router`.");
        cmd.Subcommands.Add(Build());
        return cmd;
    }

    static (string Name, string File) Pair(string value, string flag)
    {
        int eq = value.IndexOf('=');
        if (eq <= 0 || eq == value.Length - 1) throw new ArgumentException($"{flag} '{value}': expected NAME=FILE");
        return (value[..eq], value[(eq + 1)..]);
    }

    static Command Build()
    {
        var model = new ModelInput("the base model the server serves");
        var routes = new Option<string[]>("--route")
        {
            Description = "NAME=FILE: a route (an adapter's name as served, or \"base\") and a JSONL file of its example prompts (records with " +
                          "\"messages\" or \"prompt_messages\" — rendered with the chat template up to the last user turn — or \"prompt\" / \"text\"); repeatable",
            Required = true, AllowMultipleArgumentsPerToken = false,
        };
        var check = new Option<string[]>("--check") { Description = "NAME=FILE: held-out prompts of a route, to report how often the router picks it (repeatable)", AllowMultipleArgumentsPerToken = false };
        var output = new Option<string>("--out", "-o") { Description = "the router file (JSON)", Required = true };
        var limit = new Option<int>("--limit") { Description = "example prompts read per file (0 = all)", DefaultValueFactory = _ => 256 }.Within(0, int.MaxValue);
        var template = new Option<string?>("--template") { Description = "a chat template file instead of the model's (as hone serve --template)" };
        var ctx = CliSupport.Context();
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("build",
            "Build a request router: every example prompt is embedded as /v1/embeddings does (the base model's mean final hidden state after " +
            "the output norm), each route's centroid is the normalized mean of its prompts' normalized embeddings, and a request goes to the " +
            "route of highest cosine similarity (nearest centroid).")
        {
            routes, check, output, limit, template, ctx, threads, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var report = RequestRouterBuilder.Build(new RequestRouterOptions(model.Read(r)!, r.GetValue(routes)!.Select(v => Pair(v, "--route")).ToList(),
                r.GetValue(output)!, r.GetValue(limit), (r.GetValue(check) ?? []).Select(v => Pair(v, "--check")).ToList(), r.GetValue(template),
                r.GetValue(threads), r.GetValue(ctx)), m => Console.Error.WriteLine(m));
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    output = report.Output, routes = report.Routes.Select(x => new { name = x.Name, examples = x.Examples }),
                    check = report.Accuracy.Select(a => new { route = a.Name, prompts = a.Prompts, correct = a.Correct, accuracy = (double)a.Correct / Math.Max(1, a.Prompts) }),
                }, CliSupport.JsonOptions));
                return 0;
            }
            Console.WriteLine($"wrote {report.Output}: routes {string.Join(", ", report.Routes.Select(x => $"{x.Name} ({x.Examples} examples)"))}");
            foreach (var (name, prompts, correct) in report.Accuracy)
                Console.WriteLine($"  held-out {name}: {correct} of {prompts} routed to it ({(double)correct / Math.Max(1, prompts):P1})");
            return 0;
        }));
        return cmd;
    }
}
