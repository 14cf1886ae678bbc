"""The docs' generated tables (seqimpute.reporting.docs), from the repository root:

    python benchmarks/results_tables.py                           # every results/cpu/*.json that exists
    python benchmarks/results_tables.py --results results/cpu table1 sweep
    python benchmarks/results_tables.py --write docs/RESULTS.md   # regenerate its marked tables in place
    python benchmarks/results_tables.py --check docs/RESULTS.md   # exit 1 if one differs (tests/test_results_doc.py)

The markers in the Markdown files name this script: `<!-- generated: python benchmarks/results_tables.py NAME -->`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from seqimpute.reporting.docs import main  # noqa: E402

if __name__ == "__main__":
    main()
