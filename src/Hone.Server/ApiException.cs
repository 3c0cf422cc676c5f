using System.Text.Json.Nodes;

namespace Hone.Server;

/// <summary>An answer other than success, in OpenAI's error shape: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    /// <summary>Seconds a client should wait before trying again (429, 503).</summary>
    public int? RetryAfterSeconds { get; init; }

    public static ApiException BadValue(string param, string message) => new(400, message, param, "invalid_value");
    public static ApiException BadType(string param, string expected) => new(400, $"'{param}' must be {expected}", param, "invalid_type");

    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject { ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code },
    };
}
