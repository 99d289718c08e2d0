"""Who may spend a voucher: the holder's authorisations (issue #12, finding 7).

A model voucher (M3) names its vendor, the one on the holder's contract: only that vendor
spends it. A compute voucher (M1) names none, and any registered compute vendor not
affiliated with the holder used to be able to redeem or hold it once it knew the code. Now a
compute voucher is spent only by a vendor its holder authorised:

- at issuance, the compute providers the holder named on its own application (the M1
  invoices' `provider_credit_code`) are authorised (`basis: application`);
- the holder (an `applicant` client bound to the holder's credit code) authorises others:
  `POST /v1/vouchers/{code}/authorisations {vendor}` with an `Idempotency-Key`
  (`basis: holder`), and revokes them: `DELETE /v1/vouchers/{code}/authorisations/{vendor}`
  (the holder, or an officer);
- vouchers issued before: vouchers migration 0014 authorised the vendors that had already
  redeemed from them (`basis: migration`); any other vendor needs the holder's authorisation.

The check is in `vouchers.redeem()` itself (one probe of a unique index, in the same
conditional UPDATE: no extra round trip); an unauthorised vendor is refused
`vendor_not_authorised` (403) and nothing changes. Revoking stops new holds and redemptions;
holds already made stay until captured, released or ended by the bureau.

The package: `endpoints.py` (the routes), `service.py` (authorise, list, revoke; the providers an
application named), `repository.py` (all its SQL), `schemas.py`, `errors.py`.
"""
