"""The channel simulator: the outside world Mengka's payments talk to.

Acquirers, member banks' cores, wallets, the prepaid issuer and a digital-RMB operator, as one separate HTTP process
with its own SQLite storage and its own journal. It imports nothing from the platform (no Django). Start it with
`python -m simulator --host 127.0.0.1 --port 8100 --db var/simulator.sqlite3`; see docs/simulator.md.
"""
