"""`python -m avvp_cli ...` runs the `avvp` command line, as the console script does."""

from avvp_cli.entry import avvp

avvp()
