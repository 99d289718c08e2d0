"""The change feed's and the webhook endpoints' error codes."""

from shared.errors import ErrorCode, FieldError

WEBHOOK_NOT_FOUND = ErrorCode(
    "webhook_not_found", 404, "Webhook 订阅不存在：{id}", "No such webhook subscription: {id}"
)
WEBHOOK_DELIVERY_NOT_FOUND = ErrorCode(
    "webhook_delivery_not_found", 404, "投递记录不存在：{id}", "No such webhook delivery: {id}"
)
WEBHOOK_DEACTIVATED = ErrorCode(
    "webhook_deactivated", 409, "Webhook 订阅 {id} 已停用", "Webhook subscription {id} is deactivated"
)
WEBHOOK_LIMIT = ErrorCode(
    "webhook_limit",
    409,
    "每个客户端最多 {limit} 个 Webhook 订阅",
    "A client may have at most {limit} webhook subscriptions",
)
IDEMPOTENCY_KEY_REQUIRED = ErrorCode(
    "idempotency_key_required",
    400,
    "该操作须带 Idempotency-Key 请求头（重试时使用同一个值）",
    "This call needs an Idempotency-Key header (reuse the same value when retrying)",
)
IDEMPOTENCY_KEY_REUSED = ErrorCode(
    "idempotency_key_reused",
    409,
    "该幂等键已用于另一个请求：{key}",
    "This Idempotency-Key was used for a different request: {key}",
)

CURSOR_EXPIRED = ErrorCode(
    "cursor_expired",
    410,
    "游标之前的事件已按保留期限删除：请从头（不带 after）或更新的游标重新读取",
    "Events after this cursor were deleted by retention: read again from the start (no `after`) or a newer "
    "cursor, and reconcile what you missed",
)
EVENT_EXPIRED = ErrorCode(
    "event_expired",
    410,
    "该投递的事件已按保留期限删除：{id}",
    "The event of this delivery was deleted by retention: {id}",
)

PRIVATE_ADDRESS = FieldError(
    "body.url",
    "url_not_allowed",
    "Webhook 地址必须是公网地址（不能是本机、内网或链路本地地址）",
    "A webhook URL must point to a public address (not loopback, private or link-local)",
)
