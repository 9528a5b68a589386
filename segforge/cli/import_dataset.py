"""`segforge_import`: bring a plain images/labels (or DICOM) dataset into segforge_raw.

    segforge_import -i SRC -d 901 -n Liver [--modality CT] [--match name|sorted]
                    [--split 70,15,15 --seed 0] [--labels liver=1,tumour=2] [--overwrite]
"""

import argparse
import sys

from segforge.cli._runner import CommandParser, run_command
from segforge.io.importer import import_plain_dataset

PROG = "segforge_import"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog=PROG,
        description="Import SRC holding images/ + labels/ (or train/ val/ test/ each holding them; test may lack "
        "labels) into segforge_raw/DatasetNNN_NAME in the nnU-Net layout. Images may be image files or DICOM "
        "series folders; everything is written as .nii.gz. See docs/dataset_format.md.",
    )
    p.add_argument("-i", "--input", required=True, help="source folder (only read, never modified)")
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="dataset number 0..999")
    p.add_argument("-n", "--name", required=True, help="dataset name (letters, digits, _ and -)")
    p.add_argument("--modality", help="CT, MR, ... or one per channel (T1,T2); default: guessed from intensities "
                   "(CT when the lowest value is below -500, which looks like HU), with a warning")
    p.add_argument("--match", choices=("name", "sorted"), default="name",
                   help="pair images with labels by name (default) or by sorted order")
    p.add_argument("--split", help="TRAIN,VAL,TEST percentages (e.g. 70,15,15) for a source not split yet")
    p.add_argument("--seed", type=int, default=0, help="seed of --split (default 0)")
    p.add_argument("--labels", help="label names, e.g. liver=1,tumour=2 (default: background, label_1, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder with other content")
    p.add_argument("--series-uid", nargs="+", default=(), metavar="UID",
                   help="for DICOM folders holding several series: the SeriesInstanceUID(s) to read (in each folder "
                   "the one among them it holds)")
    p.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        result = import_plain_dataset(
            args.input, args.dataset_id, args.name, modality=args.modality, match=args.match, split=args.split,
            seed=args.seed, labels=args.labels, overwrite=args.overwrite, num_processes=args.num_processes,
            log=lambda line: print(f"{PROG}: {line}", file=sys.stderr), series_uids=args.series_uid,
        )
        for note in result.notes:
            print(f"{PROG}: {note}")
        for line in result.summary_lines():
            print(line)

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
