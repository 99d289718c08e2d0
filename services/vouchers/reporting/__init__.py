"""Reporting, the read side: the projector (`projector.py`) and the aggregates API (`endpoints.py`).

The aggregates API (issue #6): where the programme's money goes, at a glance.

Every answer is read from the projections (`projector.py`), never by scanning the ledger,
and says how fresh it is: `as_of` = the last entry projected, when, and how many entries lie
beyond it. Money is integer fen; `year` is the calendar year, in Shenzhen time, of the event
(an entry's time), as the ledger's annual ceilings count it, except in `budget`, where it is
the budget's year (the budget account the money left or returned to).

Flows (issued, redeemed, settled, expired, voided, granted) are what happened in the year;
`held_fen` and `remaining_fen` are stocks at the end of the year (or now, for the current
year): what holds still reserve, and what vouchers still hold, over this year and the years
before it (remaining = issued − redeemed − expired − voided − held). `granted_fen` is net of
reversed grants. Nothing here names an enterprise except `top-enterprises`, which a dashboard
client may read only with the `dashboard:detail` grant.

Two endpoints are the eligibility service's, forwarded with the caller's own token so a
dashboard reads one origin: `applications` and `review-queue`. Eligibility down → 503.
"""
