"""Governance: what every request costs and who made it — the usage ledger (`ledger`, `sqlite_store`), the price
table (`prices`), and the meter the gateway reports to (`meter`). Budgets, caller keys, rate limits and the
response cache join this room behind protocols of their own. Knows nothing of HTTP or providers' wire formats.
"""

from rhetor import native

native.activate(__name__, __path__)  # compiled limits and spend (rhetor.native), when built and fresh
