"""Runs: the engine that runs them step by step (engine), launching and planning them
(launch), slots on workers (leases), their logs (logstore, logsearch), stored runbooks
(runbooks), steps left running by a stopped server (orphans), secrets (vault).
"""
