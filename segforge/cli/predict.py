"""`segforge_predict` (not built yet)."""

import sys

from segforge.cli._runner import not_implemented


def main(argv=None) -> int:
    return not_implemented("segforge_predict")


if __name__ == "__main__":
    sys.exit(main())
