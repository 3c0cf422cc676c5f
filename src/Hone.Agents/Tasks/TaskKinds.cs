namespace Hone.Agents;

/// <summary>The kinds of generated tasks (docs/agent-benchmark.md describes each).</summary>
public static class TaskKinds
{
    public const string OrderStatus = "order_status";
    public const string CancelPending = "cancel_pending";
    public const string ModifyAddress = "modify_order_address";
    public const string ModifyItems = "modify_order_items";
    public const string ModifyPayment = "modify_order_payment";
    public const string ModifyUserAddress = "modify_user_address";
    public const string Return = "return_items";
    public const string ReturnWithTotal = "return_with_refund_total";
    public const string Exchange = "exchange_items";
    public const string RefuseCancelNotPending = "refuse_cancel_not_pending";
    public const string RefuseSecondModification = "refuse_second_modification";
    public const string RefuseOtherUser = "refuse_other_users_order";
    public const string RefuseRefundMethod = "refuse_refund_to_other_method";
    public const string Transfer = "transfer_out_of_scope";

    public static readonly IReadOnlyList<string> All =
    [
        OrderStatus, CancelPending, ModifyAddress, ModifyItems, ModifyPayment, ModifyUserAddress, Return, ReturnWithTotal, Exchange,
        RefuseCancelNotPending, RefuseSecondModification, RefuseOtherUser, RefuseRefundMethod, Transfer,
    ];

    /// <summary>Kinds where the right answer is to refuse (no write) — the customer still asks for the write.</summary>
    public static bool IsRefusal(string kind) => kind.StartsWith("refuse_", StringComparison.Ordinal);
}
