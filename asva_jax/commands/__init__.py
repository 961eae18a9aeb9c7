"""The command layer: each command is `define_flags(fv)` + `main(argv, fv)` that builds an options value
and calls a plain library function (see runner.py)."""
