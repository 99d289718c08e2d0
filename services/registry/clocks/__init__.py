"""Test clocks (issue #15, docs/sandbox.md): served only in sandbox mode (`SANDBOX_MODE`, never in production).

An administrator creates a clock frozen at an instant, binds test enterprises (organisations, by
credit code) to it and advances it, forward only. Eligibility and vouchers ask `GET
/v1/test-clock-bindings/{credit_code}` (shared/testclocks.py) what time it is for an enterprise: an
application's date (A4), a voucher's year, validity and ceilings, redemptions and expiries follow it.
endpoints.py (routes), service.py (what each checks, its SQL), schemas.py, errors.py.
"""
