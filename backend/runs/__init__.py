"""Runs: the engine that runs them step by step (engine: a run's course; records: runs
read, written and published; attempts: one attempt at a step on a leased worker),
launching and planning them (launch), slots on workers (leases), their logs (logtext:
lines cut, masked and cleaned; logstore: stored and read; loghub: followed live;
logsearch), stored runbooks (runbooks), steps left running by a stopped server
(orphans), secrets (vault).
"""
