"""One module per ``pnn`` subcommand; each defines ``NAME``, ``HELP``, ``add_arguments(p)`` and
``run(args) -> int``. Modules import heavy packages (torch, amaranth) inside ``run`` only, so that
``pnn --help`` stays fast."""

#: subcommands in the order ``pnn --help`` lists them
COMMANDS = (
    "train", "retrain_bn", "eval", "export", "verilog", "sim", "build", "asic", "dynamic", "bench",
    "run", "demo",
)
