using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Experts;

/// <summary>One destination of a request router: an adapter's name (or <see cref="RequestRouter.BaseRoute"/>) and the
/// unit-length centroid [D] of its example prompts' embeddings.</summary>
public sealed record RequestRoute(string Name, float[] Centroid, int Examples);

/// <summary>
/// Request-level routing: a prompt's embedding (the base model's mean final hidden state, after the output norm —
/// what `/v1/embeddings` returns) goes to the route whose centroid is nearest by cosine similarity (nearest-centroid
/// classification; ties to the first route). Each centroid is the normalized mean of the normalized embeddings of that
/// route's example prompts. Saved as JSON: {"format": "hone-request-router", "version": 1, "embedding": ..., "routes":
/// [{"name", "examples", "centroid": [D floats]}]}.
/// </summary>
public sealed class RequestRouter
{
    public const string Format = "hone-request-router";
    public const int Version = 1;
    /// <summary>The route name that means the base model without an adapter.</summary>
    public const string BaseRoute = "base";
    public const string EmbeddingProtocol = "mean over the prompt's tokens of the base model's final hidden state after the output norm";

    public IReadOnlyList<RequestRoute> Routes { get; }
    public int Dimension { get; }

    public RequestRouter(IReadOnlyList<RequestRoute> routes)
    {
        if (routes.Count < 2) throw new ArgumentException($"a router needs at least 2 routes, got {routes.Count}");
        Dimension = routes[0].Centroid.Length;
        foreach (var r in routes)
        {
            if (r.Centroid.Length != Dimension) throw new ArgumentException($"route '{r.Name}' has a centroid of {r.Centroid.Length} values, the first {Dimension}");
            if (!r.Centroid.All(float.IsFinite)) throw new ArgumentException($"route '{r.Name}' has a non-finite centroid");
        }
        var duplicate = routes.GroupBy(r => r.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null) throw new ArgumentException($"route '{duplicate.Key}' is given twice");
        Routes = routes;
    }

    /// <summary>The unit-length mean of the unit-length embeddings (each example counts once, whatever its norm).</summary>
    public static float[] Centroid(IEnumerable<float[]> embeddings)
    {
        double[]? sum = null;
        foreach (var e in embeddings)
        {
            sum ??= new double[e.Length];
            double norm = Math.Sqrt(e.Sum(x => (double)x * x));
            if (norm == 0) continue;
            for (int i = 0; i < e.Length; i++) sum[i] += e[i] / norm;
        }
        if (sum == null) throw new ArgumentException("no examples to make a centroid of");
        double total = Math.Sqrt(sum.Sum(x => x * x));
        return sum.Select(x => (float)(total == 0 ? 0 : x / total)).ToArray();
    }

    /// <summary>The nearest route by cosine similarity, and that similarity.</summary>
    public (RequestRoute Route, double Similarity) Route(ReadOnlySpan<float> embedding)
    {
        if (embedding.Length != Dimension) throw new ArgumentException($"an embedding of {embedding.Length} values for a router of {Dimension}");
        double norm = 0;
        foreach (float x in embedding) norm += (double)x * x;
        norm = Math.Sqrt(norm);
        RequestRoute best = Routes[0];
        double bestSimilarity = double.NegativeInfinity;
        foreach (var r in Routes)
        {
            double dot = 0;
            for (int i = 0; i < Dimension; i++) dot += (double)embedding[i] * r.Centroid[i];
            double similarity = norm == 0 ? 0 : dot / norm;
            if (similarity > bestSimilarity) { best = r; bestSimilarity = similarity; }
        }
        return (best, bestSimilarity);
    }

    public void Save(string path)
    {
        var json = new JsonObject
        {
            ["format"] = Format, ["version"] = Version, ["embedding"] = EmbeddingProtocol, ["dimension"] = Dimension,
            ["routes"] = new JsonArray(Routes.Select(r => (JsonNode)new JsonObject
            {
                ["name"] = r.Name, ["examples"] = r.Examples, ["centroid"] = new JsonArray(r.Centroid.Select(x => (JsonNode)x).ToArray()),
            }).ToArray()),
        };
        AtomicFile.WriteAllText(path, json.ToJsonString());
    }

    public static RequestRouter Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such router file", path);
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelFormatException(path, "not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON: {e.Message}"); }
        if (json["format"] is not JsonValue f || !f.TryGetValue(out string? format) || format != Format)
            throw new ModelFormatException(path, $"not a {Format} file", "format");
        int version = json["version"] is JsonValue v && v.TryGetValue(out int n) ? n : 0;
        if (version != Version) throw new ModelFormatException(path, $"version {version} is not supported (expected {Version})", "version");
        var routes = new List<RequestRoute>();
        if (json["routes"] is not JsonArray list) throw new ModelFormatException(path, "is missing or not a list", "routes");
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject r) throw new ModelFormatException(path, "is not an object", $"routes[{i}]");
            string name = r["name"] is JsonValue nv && nv.TryGetValue(out string? s) && s.Length > 0 ? s : throw new ModelFormatException(path, "has no name", $"routes[{i}].name");
            if (r["centroid"] is not JsonArray c) throw new ModelFormatException(path, "is missing or not a list", $"routes[{i}].centroid");
            var centroid = new float[c.Count];
            for (int j = 0; j < c.Count; j++)
                centroid[j] = c[j] is JsonValue x && x.TryGetValue(out double d) && double.IsFinite(d) ? (float)d
                    : throw new ModelFormatException(path, $"element {j} is not a finite number", $"routes[{i}].centroid");
            int examples = r["examples"] is JsonValue ev && ev.TryGetValue(out int e) ? e : 0;
            routes.Add(new RequestRoute(name, centroid, examples));
        }
        try { return new RequestRouter(routes); }
        catch (ArgumentException e) { throw new ModelFormatException(path, e.Message, "routes"); }
    }
}
