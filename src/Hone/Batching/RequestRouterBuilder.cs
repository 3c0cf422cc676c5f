using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Formats;
using Hone.Inference;
using Hone.Tokenization;

namespace Hone.Batching;

/// <param name="Routes">(route name — an adapter's name as served, or "base" — and a JSONL file of its example prompts)</param>
/// <param name="Check">held-out prompts per route, to measure how often the router picks the right one</param>
/// <param name="Limit">examples read per file (0 = all)</param>
public sealed record RequestRouterOptions(string Model, IReadOnlyList<(string Name, string File)> Routes, string Output, int Limit = 256,
    IReadOnlyList<(string Name, string File)>? Check = null, string? Template = null, int Threads = 0, int Context = 0);

/// <param name="Accuracy">per checked route: (prompts, routed to it)</param>
public sealed record RequestRouterReport(string Output, IReadOnlyList<RequestRoute> Routes, IReadOnlyList<(string Name, int Prompts, int Correct)> Accuracy);

/// <summary>
/// Builds a <see cref="RequestRouter"/> from example prompts per route: each prompt — JSONL records with "messages" or
/// "prompt_messages" (rendered with the model's chat template up to the last user turn, as the server renders a chat
/// request) or "prompt" / "text" (plain) — is embedded as the server's /v1/embeddings does (the base model's mean
/// final hidden state), and each route's centroid is the normalized mean of its prompts' normalized embeddings.
/// </summary>
public static class RequestRouterBuilder
{
    public static RequestRouterReport Build(RequestRouterOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        using var loaded = LoadedModel.Open(o.Model, null, o.Threads, o.Context);
        var template = ChatConversation.ResolveTemplate(loaded.Tokenizer, o.Template).Template;
        float[] Embed(int[] ids)
        {
            var e = new float[loaded.Weights.Config.HiddenSize];
            loaded.Model.Reset();
            loaded.Model.ForwardMeanHidden(ids, e);
            return e;
        }
        var routes = new List<RequestRoute>();
        foreach (var (name, file) in o.Routes)
        {
            var prompts = Prompts(file, o.Limit, loaded, template).ToList();
            log($"route '{name}': {prompts.Count} example prompts from {file}");
            routes.Add(new RequestRoute(name, RequestRouter.Centroid(prompts.Select(Embed)), prompts.Count));
        }
        var router = new RequestRouter(routes);
        var accuracy = new List<(string, int, int)>();
        foreach (var (name, file) in o.Check ?? [])
        {
            if (!routes.Any(r => r.Name == name)) throw new ArgumentException($"--check names route '{name}', which the router does not have");
            int total = 0, correct = 0;
            foreach (var ids in Prompts(file, o.Limit, loaded, template))
            {
                total++;
                if (router.Route(Embed(ids)).Route.Name == name) correct++;
            }
            accuracy.Add((name, total, correct));
        }
        router.Save(o.Output);
        return new RequestRouterReport(o.Output, routes, accuracy);
    }

    /// <summary>The prompt ids of a JSONL file's records (at most <paramref name="limit"/>; 0 = all).</summary>
    static IEnumerable<int[]> Prompts(string file, int limit, LoadedModel loaded, Tokenization.Templates.ChatTemplate template)
    {
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: no such file", file);
        int line = 0, read = 0;
        foreach (var text in File.ReadLines(file))
        {
            line++;
            if (text.Trim().Length == 0) continue;
            if (limit > 0 && read >= limit) yield break;
            JsonObject record;
            try { record = JsonNode.Parse(text) as JsonObject ?? throw new DataFormatException(file, line, "not a JSON object"); }
            catch (JsonException e) { throw new DataFormatException(file, line, $"not valid JSON: {e.Message}"); }
            int[] ids;
            if ((record["prompt_messages"] ?? record["messages"]) is JsonArray messages)
            {
                var prompt = new JsonArray();
                int last = messages.Count;
                while (last > 0 && messages[last - 1]?["role"]?.GetValue<string>() == "assistant") last--;
                for (int i = 0; i < last; i++) prompt.Add(messages[i]!.DeepClone());
                if (prompt.Count == 0) throw new DataFormatException(file, line, "the messages hold no prompt (only assistant turns)");
                ids = ChatPrompt.Encode(loaded.Tokenizer, template, prompt);
            }
            else if ((record["prompt"] ?? record["text"]) is JsonValue v && v.TryGetValue(out string? plain) && plain.Length > 0)
                ids = loaded.EncodePrompt(plain);
            else throw new DataFormatException(file, line, "a record needs \"messages\", \"prompt_messages\", \"prompt\" or \"text\"");
            if (ids.Length > loaded.Model.MaxContext) ids = ids[..loaded.Model.MaxContext];
            read++;
            yield return ids;
        }
        if (read == 0) throw new DataFormatException(file, 0, "no example prompts");
    }
}
