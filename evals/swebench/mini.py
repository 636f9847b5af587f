"""``python -m mdap.evals.swebench.mini --out DIR``: write the swe_mini suite (repos, instances, gold predictions).

The implementation is :mod:`._mini` (so ``-m`` runs this module without it being imported twice).
"""

from __future__ import annotations

import sys

from ._mini import MINI_MODEL_NAME, MiniSuite, build_mini, main, mini_data_dir, read_tree

__all__ = ["MINI_MODEL_NAME", "MiniSuite", "build_mini", "main", "mini_data_dir", "read_tree"]

if __name__ == "__main__":
    sys.exit(main())
