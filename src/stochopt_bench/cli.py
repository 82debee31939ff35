"""The ``stochopt`` command line."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stochopt", description="stochopt's harness.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="compare stochopt's optimizers with torch AdamW on digits")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from stochopt_bench import demo

        demo.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
