"""The client administration API's error codes (stable; clients match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode

CLIENT_NOT_FOUND = ErrorCode("client_not_found", 404, "客户端不存在：{client_id}", "No such client: {client_id}")
CLIENT_EXISTS = ErrorCode("client_exists", 409, "客户端已存在：{client_id}", "A client {client_id} exists already")
CLIENT_REVOKED = ErrorCode(
    "client_revoked", 409, "客户端 {client_id} 已吊销，不能再更改", "Client {client_id} is revoked and cannot change"
)
CLIENT_KEY_ONLY = ErrorCode(
    "client_key_only",
    409,
    "客户端 {client_id} 只能用签名断言（private_key_jwt）认证，没有可轮换的密钥；如需密钥，先把认证方式改为 "
    "client_secret_basic",
    "Client {client_id} authenticates with private_key_jwt only and has no secret to rotate; set its "
    "token_endpoint_auth_method to client_secret_basic first",
)
ADMIN_CLIENT_CLI_ONLY = ErrorCode(
    "admin_client_cli_only",
    403,
    "管理员客户端只能用命令行工具创建和更改（python -m services.registry.identity）",
    "Admin clients are created and changed with the admin CLI only (python -m services.registry.identity)",
)
