"""OAuth2 clients administered over HTTP (issue #15), and `private_key_jwt` client authentication.

    POST /v1/clients                  create (201, Location; the secret shown once)
    GET  /v1/clients                  list (never a secret or its digest)
    GET  /v1/clients/{id}             read
    POST /v1/clients/{id}/rotate      a new secret (shown once); the old one works for a grace period
    POST /v1/clients/{id}/revoke      no new tokens (idempotent)
    PUT  /v1/clients/{id}/jwks        the public keys it signs token-endpoint assertions with

Administrators only. The changes are `services.registry.identity`'s functions, the ones the CLI
runs, each audited in its own transaction; admin clients are the CLI's alone.

    endpoints.py   routes
    service.py     the checks and the calls to identity's functions
    repository.py  its SQL: clients as read, the Idempotency-Keys, the assertions' jti
    keys.py        public keys: which are accepted, loaded for verifying
    assertions.py  RFC 7523 client assertions at the token endpoint
    schemas.py     payloads
    errors.py      error codes
"""
