"""Write a run's few-shot subset (its subset.jsonl) as 2SFS's split pair, so 2SFS's own code
trains on the very same images:

    python -m datasets.to_2sfs RUN/subset.jsonl DATASET_DIR OUT_DIR

writes OUT_DIR/shot_K-seed_S_train.jsonl and ..._val.jsonl with absolute paths under DATASET_DIR
(the dataset's folder on the machine that will read them); existing files are never replaced."""
import argparse
import json
import os
import sys

from datasets.subset_files import SPLITS, DatasetError, read_subset, write_2sfs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m datasets.to_2sfs",
                                     description="Convert a run's subset.jsonl to 2SFS's split format.")
    parser.add_argument("subset_file", help="a run's subset.jsonl")
    parser.add_argument("dataset_dir", help="the dataset's folder on the machine that will read the files")
    parser.add_argument("out_dir", help="where shot_K-seed_S_{train,val}.jsonl are written")
    args = parser.parse_args(argv)
    try:
        with open(args.subset_file) as f:
            header = json.loads(f.readline())
        train, val, header = read_subset(args.subset_file, header.get("dataset"), None)
    except (ValueError, OSError, DatasetError) as e:
        sys.exit(f"error: {e}")
    targets = [os.path.join(args.out_dir, f"shot_{header['shots']}-seed_{header['seed']}_{s}.jsonl")
               for s in SPLITS]
    existing = [t for t in targets if os.path.exists(t)]
    if existing:
        sys.exit(f"error: {existing[0]} exists; remove it or choose another OUT_DIR (nothing was written).")
    os.makedirs(args.out_dir, exist_ok=True)
    for path in write_2sfs(args.out_dir, args.dataset_dir, header["shots"], header["seed"], train, val):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
