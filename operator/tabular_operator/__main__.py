"""``python -m tabular_operator`` / ``tabular-operator``: run the operator (Kopf) with its handlers.

The same as the chart's ``kopf run --standalone --all-namespaces -m tabular_operator.handlers``
with ``--liveness`` on port 8080 and JSON logs; ``--namespace`` (repeatable) limits the watch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tabular-operator``."""
    import kopf

    parser = argparse.ArgumentParser(prog="tabular-operator", description=__doc__)
    parser.add_argument("--namespace", action="append", default=[], help="watch only these")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz")
    parser.add_argument("--log-format", choices=("json", "plain", "full"), default="json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    import tabular_operator.handlers  # noqa: F401 - registers the handlers

    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
