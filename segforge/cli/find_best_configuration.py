"""`segforge_find_best_configuration ID [-c CONFIG ...] [-tr TRAINER] [-f FOLD ...] [--no-ensembles]`.

Compares the dataset's trained configurations and their pairwise ensembles by cross-validation
Dice, decides each one's connected-component postprocessing, and writes the choice with the
table of figures to ``segforge_results/DatasetNNN_Name/best_configuration.json``, which
``segforge_predict -d ID`` then uses. The steps:
:func:`segforge.workflows.best_configuration.find_best_configuration`. Exit code 2 with one line
when nothing can be compared.
"""

from __future__ import annotations

import argparse
import sys

from segforge.cli._runner import CommandParser, run_command

PROG = "segforge_find_best_configuration"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Choose the configuration (or pairwise ensemble of configurations) "
                      "with the highest cross-validation Dice, decide its postprocessing, and make it the model "
                      "segforge_predict -d ID uses.")
    p.add_argument("dataset", help="dataset id (901) or name (Dataset901_Name)")
    p.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                   help="configurations to compare (default: every trained segmentation configuration)")
    p.add_argument("-tr", "--trainer", default=None, help="only model folders of this trainer")
    p.add_argument("-f", "--folds", nargs="+", default=None, metavar="FOLD",
                   help="folds whose validation predictions are compared (default: every fold of splits.json)")
    p.add_argument("--no-ensembles", dest="ensembles", action="store_false",
                   help="compare single configurations only")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from segforge.workflows.best_configuration import find_best_configuration

        find_best_configuration(args.dataset, args.configurations, args.trainer, args.folds, args.ensembles)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
