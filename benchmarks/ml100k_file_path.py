"""Write ml-100k as a stranger's plain files, for benchmarking it through the file path (issue 11's check).

    python benchmarks/ml100k_file_path.py --data-dir $EMBREC_DATA --out /tmp/ml
    cd /tmp/ml && embrec benchmark --protocol leave-last-out --data ratings.csv --user-col user_id \\
        --item-col movie_id --time-col unix_time --rating-col rating [--item-features movies.csv]

``ratings.csv``: user_id, movie_id, rating, unix_time (u.data as is). ``movies.csv``: movie_id, title, year,
genres (the 19 genre flags of u.item as one ``A|B|C`` column). Nothing of embrec's own ml-100k reader is
used on the way, so the benchmark sees what any user's CSV would give it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger("ml100k_file_path")


def write_files(folder: Path, out: Path) -> tuple[Path, Path]:
    """(ratings.csv, movies.csv) written under ``out`` from the official ``folder/u.data`` and ``u.item``."""
    out.mkdir(parents=True, exist_ok=True)
    ratings = pd.read_csv(
        folder / "u.data", sep="\t", names=["user_id", "movie_id", "rating", "unix_time"]
    )
    ratings.to_csv(out / "ratings.csv", index=False)
    genres = [
        line.split("|")[0]
        for line in (folder / "u.genre").read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    rows = []
    for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        if len(parts) < 5 + len(genres):
            continue
        flags = parts[5 : 5 + len(genres)]
        rows.append(
            {
                "movie_id": int(parts[0]),
                "title": parts[1],
                "year": parts[2][-4:] if parts[2] else "",
                "genres": "|".join(g for g, f in zip(genres, flags) if f == "1"),
            }
        )
    pd.DataFrame(rows).to_csv(out / "movies.csv", index=False)
    return out / "ratings.csv", out / "movies.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding ml-100k/")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write ratings.csv and movies.csv"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ratings, movies = write_files(args.data_dir / "ml-100k", args.out)
    logger.info("wrote %s and %s", ratings, movies)


if __name__ == "__main__":
    main()
