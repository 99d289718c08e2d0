"""The authorisations' error codes (stable)."""

from __future__ import annotations

from shared.errors import ErrorCode

VOUCHER_NAMES_ITS_VENDOR = ErrorCode(
    "voucher_names_its_vendor",
    409,
    "券 {code} 只能由合同供应商 {vendor} 使用，无需授权",
    "Voucher {code} is spent only by its contract's vendor {vendor}: there is nothing to authorise",
)
AUTHORISATION_NOT_FOUND = ErrorCode(
    "authorisation_not_found",
    404,
    "券 {code} 没有对供应商 {vendor} 的有效授权",
    "Voucher {code} has no standing authorisation for vendor {vendor}",
)
