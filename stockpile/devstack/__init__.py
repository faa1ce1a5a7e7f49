"""`stockpile dev`: the whole stack on one machine, from one command.

In order: take the data folder's lock, check the ports, provide PostgreSQL and Redis (the
configured URLs, or embedded servers whose data stays in the data folder), apply the migrations,
then run the API, one worker, one beat, Flower and, without an AlphaVantage key, the sandbox.

The processes run under honcho's Manager, which prefixes (and on a terminal colours) each line
with the process name, and stops every process when one ends or on SIGINT/SIGTERM (and here
SIGHUP): SIGTERM to each process group, SIGKILL after STOP_GRACE_SECONDS. The embedded servers
are stopped after that.
Secrets reach the children through the environment or files, never their command lines (which
`ps` shows to every user).

Modules: `run` (the order above), `options`, `ports`, `credentials`, `processes` (command lines
and environments), `supervisor` (honcho and the process groups), `signals`, `lock`, `banner`.
"""
