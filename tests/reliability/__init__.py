"""Fault-injection suite: real worker processes are killed, restarted, flooded and fed bad
input, and the tasks table and a ledger of runs show that nothing was lost or run twice."""
