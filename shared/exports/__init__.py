"""Bulk exports for the municipal data platform: NDJSON and CSV, streamed from PostgreSQL's COPY.

Each service offers `GET /v1/exports/<kind>` (roles `platform`, `auditor`, `admin`) for its
own records: the registry's record kinds, eligibility's decisions and applications, the
vouchers ledger's entries. This module is what they share.

**How the bytes are made.** Rows never become Python objects. The export runs one
`COPY (SELECT …) TO STDOUT` on a connection of its own (as the service's database role,
read-only) and PostgreSQL formats every row itself: CSV with its own quoting, NDJSON as
one `row_to_json(…)` text per row. The bytes go from the database socket to the
HTTP response through a bounded queue (`QUEUE_CHUNKS` of asyncpg's socket reads, sent on in
pieces of up to `CHUNK_BYTES`). When the client reads slowly the queue fills, asyncpg
stops reading the socket and PostgreSQL waits: an export holds a few MiB of the process's
memory whatever its row count (`bench/export_bench.py` prints the peak resident memory at
10k, 100k and 1M rows, and with a slow client). One statement is one snapshot: an export
is consistent as of its start, even while rows are being written. Each export has its own
database connection (not one of the request pool's); at most 4 run at a time per process
and one may last an hour (its statement timeout). A service's settings may change both
with the fields `export_max_concurrent` and `export_timeout_seconds`.

**Formats** (`format=ndjson`, the default, or `format=csv`):

- Values: money in integer fen; instants in UTC with microseconds,
  `2026-11-27T02:45:05.953712Z`; dates `YYYY-MM-DD`; booleans `true` / `false`; UUIDs
  in lower case; JSON columns as JSON (in CSV: their JSON text, in one quoted field).
- NDJSON (`application/x-ndjson`): UTF-8, one JSON object per line, each line ending in
  `\\n`, in a stable order (each export says which). The **last line is the trailer**
  `{"end": {"kind": …, "rows": N, "from": …, "to": …, "filters": {…}, "exported_at": …}}`
  (no record has a top-level key `end`). A file is complete only if its last line is
  the trailer and `rows` equals the number of lines before it.
- CSV (`text/csv; charset=utf-8; header=present`): a header row with the column names,
  then one row per record, RFC 4180 quoting (a field with a comma, a double quote, CR or
  LF is enclosed in double quotes, double quotes inside it are doubled), lines ending
  in LF (as PostgreSQL writes them; RFC 4180 readers accept it). NULL is an empty field,
  an empty string is `""`. `bom=true` starts the file with a UTF-8 byte order mark, for
  Excel, which otherwise reads a CSV file in the local code page and garbles Chinese.
  CSV has no trailer: completeness is the HTTP transfer's (below). **Formula injection**: a
  spreadsheet opening the file would run a text cell starting with `=`, `+`, `-`, `@`, a tab or
  a carriage return as a formula (`=HYPERLINK(…)` in a vendor's contract number), so in CSV
  such a *text* cell gets a single quote in front (`'=HYPERLINK(…)`, the OWASP advice); a
  consumer that wants the stored text removes the leading `'` of a text cell that starts with
  `'` followed by one of those characters. Numbers, dates, instants, booleans, UUIDs and JSON
  cells are never changed (a negative number stays a number); NDJSON is never altered.

**Date ranges** (`from`, `to`, both optional): the half-open interval [from, to) of the
export's time column (each export names it). A bound is either a date, `2026-11-01`,
meaning the start of that day in Asia/Shanghai (the programme's dates are Shenzhen
dates), or an ISO 8601 instant with a UTC offset, `2026-11-01T08:00:00+08:00` or
`2026-11-01T00:00:00Z`. So `from=2026-11-01&to=2026-12-01` is November in Shenzhen, and
`to=2026-11-30` does *not* include the 30th. An instant without an offset, an
unparseable bound or `to` not after `from` is a 422.

**Errors.** Before the first byte: problem+json as everywhere (401, 403, 422 for bad
parameters, 429 `exports_busy` when the maximum of exports already run in this process,
503 when the database cannot be reached). The first byte is sent once
PostgreSQL has produced output (the CSV header, or the first row, or the end of an empty
export), so a query that fails to start is still a problem+json answer. After that a
failure aborts the connection without the final chunk of the chunked encoding (HTTP/1.1):
clients see a truncated transfer (curl exits with code 18, httpx raises
`RemoteProtocolError`), and an NDJSON body also lacks its trailer. A failed export never
looks like a complete file.

The modules: `query` (what is exported: columns, the query, formula neutralising, COPY options),
`params` (the parameters every export takes: format, byte order mark, date range) and `stream`
(the COPY streamed as the response, its trailer, the limit on concurrent exports).
"""
