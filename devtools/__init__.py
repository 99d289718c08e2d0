"""Developer tooling: `make run`/`make demo` (devrun, demo), the embedded PostgreSQL (devdb), local keys and
clients (devauth), `make backup`/`make restore` (backup). The services and the kernel (shared/) never import it.
"""
