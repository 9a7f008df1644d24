"""`python -m avvp.commands ...` runs the `avvp` command line, as the console script does."""

from avvp.commands.entry import avvp

avvp()
