"""The commands of `seqimpute` (seqimpute/cli.py builds the parser from them and runs them)."""
