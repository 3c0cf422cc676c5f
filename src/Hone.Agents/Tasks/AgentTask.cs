using System.Text.Json.Nodes;

namespace Hone.Agents;

/// <summary>One tool call with its arguments, as a gold action or a required read (τ-bench's Action).</summary>
public sealed record ToolCall(string Name, JsonObject Arguments);

/// <summary>A postal address as the store keeps it (τ-bench's six fields).</summary>
public sealed record Address(string Address1, string Address2, string City, string State, string Country, string Zip);

/// <summary>
/// What the simulated customer is and wants (docs/agent-benchmark.md). <see cref="Knows"/> holds what the customer can
/// say when asked, keyed by what it answers ("email", "name", "zip", "order_id", "reason", "payment", "address",
/// "items", "new_items"); <see cref="DoesNotKnow"/> names what it cannot say (e.g. "email", "order_id").
/// <see cref="Desired"/> is the write the customer asks for (and says yes to when proposed); for a refusal task it is
/// the write the policy forbids, so an agent that proposes it gets a yes and fails by the database hash.
/// </summary>
public sealed record CustomerScenario(
    string FirstName, string LastName, string Instruction, string Request,
    IReadOnlyDictionary<string, string> Knows, IReadOnlyList<string> DoesNotKnow,
    ToolCall? Desired, IReadOnlyList<string> WantsToKnow);

/// <summary>
/// One benchmark task (a line of tasks_train.jsonl / tasks_test.jsonl). Graded as τ-bench: replay <see cref="Actions"/>
/// (reads and writes, in order) on a fresh store and compare the database hash with the agent's; then every
/// <see cref="Outputs"/> fact must appear in the agent's texts and every <see cref="RequiredReads"/> call must have been
/// made (same name, same arguments).
/// </summary>
public sealed record AgentTask(
    string Id, string Split, string Kind, string UserId, CustomerScenario Customer,
    IReadOnlyList<ToolCall> Actions, IReadOnlyList<string> Outputs, IReadOnlyList<ToolCall> RequiredReads);
