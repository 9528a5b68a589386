"""`segforge_export -m MODEL_FOLDER -o OUT [-f FOLDS] [-chk final|best|latest]`: a model folder for deployment.

Writes one ONNX network and one safetensors file per fold, the plans, dataset.json and
export.json (every preprocessing, prediction and post-processing step) into the new folder
OUT (docs/prediction.md, "Export"). ``segforge_predict -m OUT --backend onnxruntime`` predicts from it.
"""

from __future__ import annotations

import argparse
import sys

from segforge.cli._runner import run_command

PROG = "segforge_export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a trained model folder: one ONNX network and one "
                                "safetensors weight file per fold, plus the plans and every prediction step as JSON.")
    p.add_argument("-m", "--model-folder", default=None, help="the model folder <trainer>__<configuration>")
    p.add_argument("-d", "--dataset", default=None, help="or: dataset id or name under SEGFORGE_RESULTS")
    p.add_argument("-c", "--configuration", default=None, help="with -d: configuration (default: the plans' default)")
    p.add_argument("-o", "--output", required=True, help="new (or empty) folder to write the export into")
    p.add_argument("-f", "--folds", nargs="+", default=None, help="folds to export (default: all trained)")
    p.add_argument("-chk", "--checkpoint", default="final", choices=("final", "best", "latest"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from segforge.inference.model import resolve_model_folder
        from segforge.inference.model_export import export_model

        folder = resolve_model_folder(args.dataset, args.model_folder, args.configuration)
        export_model(folder, args.output, folds=args.folds, checkpoint=args.checkpoint)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
