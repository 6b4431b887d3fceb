"""Serve training batches to other machines: `centernet data-service dispatcher|worker
[options]` (or `python scripts/data_service.py ...`), TensorFlow's own disaggregated input
service (`tf.data.experimental.service`) for when one machine's cores cannot feed its
accelerators. A run uses it with `dataset.data_service=grpc://DISPATCHER:PORT`: its
training batches are then made by the workers, each taking whole batches in turn.

  dispatcher --port P --workers HOST:PORT[,HOST:PORT...]
      hands the run's input pipeline to the workers; the list names every worker (each
      worker takes its share of the batches, so the dispatcher must know them all)
  worker --dispatcher HOST:P --port Q [--address HOST:Q]
      runs the pipeline it is handed; `--address` is how the dispatcher and trainers reach it
      (default localhost:Q). It loads the native target renderer first where it builds, as a
      training process would.

Each serves until stopped (Ctrl-C, SIGTERM). Workers read the dataset files at the paths the
training process sees: put them on shared storage or at the same path on every machine.
"""

import argparse
import os
import signal
import sys
import time

from centernet.cli import configure_quiet_start


def arguments(argv):
    """The parsed command line (`argv` without the program name)."""
    parser = argparse.ArgumentParser(prog="centernet data-service",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role", required=True)
    dispatcher = roles.add_parser("dispatcher", help="the service's dispatcher")
    dispatcher.add_argument("--port", type=int, required=True)
    dispatcher.add_argument("--workers", required=True,
                            help="every worker's HOST:PORT, comma-separated")
    worker = roles.add_parser("worker", help="one worker")
    worker.add_argument("--dispatcher", required=True, help="the dispatcher's HOST:PORT")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--address", help="HOST:PORT others reach this worker at")
    return parser.parse_args(argv)


def serve(args) -> None:
    """Start the server `args` describe and serve until SIGTERM or SIGINT."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    service = tf.data.experimental.service
    if args.role == "dispatcher":
        workers = [address.strip() for address in args.workers.split(",") if address.strip()]
        server = service.DispatchServer(service.DispatcherConfig(
            port=args.port, worker_addresses=workers))
        print(f"dispatcher serving at {server.target} for {len(workers)} worker(s): "
              f"{', '.join(workers)}", flush=True)
    else:
        from centernet.data import native  # pylint: disable=import-outside-toplevel

        native.targets_op()  # the op the training pipeline's graph may hold
        dispatcher = args.dispatcher.removeprefix("grpc://")
        address = args.address or f"localhost:{args.port}"
        server = service.WorkerServer(service.WorkerConfig(
            dispatcher_address=dispatcher, worker_address=address, port=args.port))
        print(f"worker serving at {address} for dispatcher {dispatcher}", flush=True)
    # The server runs on its own threads; this one waits in Python (where `server.join()`
    # would wait in C++, out of reach of the signal handlers) until SIGTERM or Ctrl-C.
    signal.signal(signal.SIGTERM, _stop_at_once)
    signal.signal(signal.SIGINT, _stop_at_once)
    while True:
        time.sleep(3600)


def _stop_at_once(signum, frame) -> None:  # pylint: disable=unused-argument
    """End the process now, status 0. These servers keep no state to save (no `work_dir`, so
    the dispatcher writes no journal; every line printed is flushed), and the interpreter's
    orderly exit tears down tf.data's threads first: with a task in flight on a loaded
    2-core machine a worker outlasted a 30-second wait for its end (the test suite, 2026-12-07)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pylint: disable=protected-access


def main() -> None:
    """`centernet data-service`: run a dispatcher or a worker of the tf.data service."""
    configure_quiet_start(sys.argv)
    serve(arguments(sys.argv[1:]))
