"""Exit 0 when every model has READY workers, else print why and exit 1.

    python -m deploy.readiness                       # check once (a probe)
    python -m deploy.readiness --wait 120 mnist      # wait for mnist (make serve)
    python -m deploy.readiness --live                # only: the frontend answers (a liveness probe)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import requests

from deploy.client import DEFAULT_KEY_FILE, TorchServeClient


def live(client: TorchServeClient) -> int:
    try:
        client.registered_models()
    except (requests.RequestException, OSError, KeyError, ValueError) as error:
        print(f"not alive: management API not answering: {error}", file=sys.stderr)
        return 1
    print("alive")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="models that must be READY (default: all registered)")
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    parser.add_argument("--no-auth", action="store_true", help="token authorization is off")
    parser.add_argument("--wait", type=float, default=0, help="seconds to keep polling before giving up")
    parser.add_argument("--live", action="store_true",
                        help="check only that the frontend answers, not that models are READY: a model that "
                             "cannot load makes the pod unready, it is no reason to restart the server")
    args = parser.parse_args(argv)

    client = TorchServeClient(management_url=args.management, key_file=None if args.no_auth else args.key_file,
                              timeout=5)
    if args.live:
        return live(client)
    status = client.wait_until_ready(args.models or None, timeout=args.wait)
    if status:
        print("ready")
        return 0
    print("not ready: " + "; ".join(status.reasons), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
