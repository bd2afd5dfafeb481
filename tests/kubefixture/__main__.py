"""Run the fixture on its own:  cd tests && python -m kubefixture --kubeconfig /tmp/kf.yaml
(or `python tests/kubefixture …` from the repository root). Stops on SIGINT/SIGTERM and
removes every container it made."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

if not __package__:  # run as `python tests/kubefixture`: import it as a package from tests/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "kubefixture"

from kubefixture import DEFAULT_PROTOCOLS, KubeFixture  # noqa: E402


def _labels(text: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in text.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"labels must be k=v[,k=v…], got {text!r}")
    return {k: v for k, v in pairs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kubefixture", description=__doc__)
    ap.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    ap.add_argument("--port", type=int, default=0, help="plain HTTP port (0: a free one)")
    ap.add_argument("--tls-port", type=int, default=0, help="HTTPS port the kubeconfig names (0: a free one)")
    ap.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS), help="exec subprotocols, preference order")
    ap.add_argument("--pods", type=int, default=0, help="demo pods to create: NAME-0 … NAME-(N-1)")
    ap.add_argument("--name", default="web", help="demo pod name prefix")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--image", default="syncd-test/busybox:latest")
    ap.add_argument("--labels", type=_labels, default={"app": "web"}, help="demo pod labels, k=v[,k=v…]")
    args = ap.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fx = KubeFixture(protocols=[p for p in args.protocols.split(",") if p], kubeconfig=args.kubeconfig,
                     port=args.port, tls_port=args.tls_port)
    fx.start()
    try:
        for i in range(args.pods):
            fx.create_pod(f"{args.name}-{i}", namespace=args.namespace, labels=args.labels,
                          containers=[{"name": "app", "image": args.image}])
        print(f"kubefixture serving {fx.url} (plain) and {fx.https_url} (TLS, in the kubeconfig)", flush=True)
        print(f"export KUBECONFIG={fx.kubeconfig}", flush=True)
        print(f"# bearer token: {fx.token}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        fx.stop()
        print("kubefixture stopped; containers removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
