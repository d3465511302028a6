"""Ray for ft-train: start a cluster of our own (or join the one --address names), run the
workers on it through Ray Train, and shut it down again, with as few processes as training needs.

A cluster of our own lives exactly as long as the command: Ray Train's preemption watcher,
its metrics, the idle workers Ray prestarts, Ray Data's dataset manager and the placement-group
cleaner each cost a Python process that imports Ray (about a CPU-second each) and serve nothing
here, so they are left out; on a cluster we joined only the dataset manager is.

One worker without --address needs no cluster at all: it runs in this process through Ray
Train's local mode (Plan.in_process), the same train function and ray.train calls.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from ft_train.plan import Plan


def fit_on_ray(plan: Plan, marks: dict) -> None:
    """Run worker.train_loop_per_worker on plan.cfg.workers Ray Train workers (in this process
    when plan.in_process); `marks` gets the wall-clock times of ray_init, fit_returned and ray_shutdown."""
    if plan.in_process:
        _fit_in_process(plan, marks)
        return
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from ft_train.worker import train_loop_per_worker

    cfg, use_gpu = plan.cfg, plan.device == "cuda"
    # Ray Train notices the workers have finished at its next health check (2 s by default).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    own = not ray.is_initialized() and not cfg.address  # a cluster of our own, gone when we are
    if not ray.is_initialized():
        if cfg.address:
            ray.init(address=cfg.address, logging_level="WARNING")
        else:
            if not use_gpu:
                # Ray sets OMP_NUM_THREADS to a worker's CPUs (1) when it is unset: on the CPU that
                # left one of 2 cores idle. The local workers share the machine's cores instead.
                os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.workers)))
            # Off on a cluster of our own (one machine): the preemption watcher (a process of its
            # own, for nodes a cloud takes back) and Ray Train's Prometheus metrics (no one reads them).
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
            os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
            ray.init(num_cpus=max(cfg.workers, os.cpu_count() or 1), include_dashboard=False, logging_level="WARNING",
                     # one idle Python worker a CPU, started with the node, that Ray Train never uses: its
                     # actors run with their own environment variables, so in processes of their own
                     _system_config={"prestart_worker_first_driver": False})
    marks["ray_init"] = time.time()
    trainer = _trainer_class(own)(
        train_loop_per_worker,
        train_loop_config={"plan": plan},  # Ray's config is a dict
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"ft-train-{int(time.time() * 1000)}",
                             storage_path=str(Path(cfg.out_dir) / ".work" / "ray"),
                             failure_config=FailureConfig(max_failures=0)),
    )
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit()
        marks["fit_returned"] = time.time()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)
        if own:
            _stop_monitor()
        ray.shutdown()  # stops the log forwarding too (only disconnects from a cluster given with --address)
        marks["ray_shutdown"] = time.time()


def _fit_in_process(plan: Plan, marks: dict) -> None:
    """Ray Train's local mode (num_workers=0): the training function runs here, with the same
    ray.train API (context, report) and no cluster: on the CPU machine ~11 s sooner to the first
    step. The worker sets up its own one-rank process group (worker.Worker.__init__)."""
    import gc

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ft_train.worker import train_loop_per_worker

    marks["ray_init"] = time.time()  # nothing to start
    trainer = TorchTrainer(train_loop_per_worker, train_loop_config={"plan": plan},
                           scaling_config=ScalingConfig(num_workers=0),
                           run_config=RunConfig(name=f"ft-train-{int(time.time() * 1000)}",
                                                storage_path=str(Path(plan.cfg.out_dir) / ".work" / "ray")))
    try:
        trainer.fit()
        marks["fit_returned"] = time.time()
    finally:
        import torch

        if torch.distributed.is_initialized():  # the worker's one-rank group (DeepSpeed)
            torch.distributed.destroy_process_group()
        gc.collect()  # the model and optimizer, if this process goes on (a library caller, a bench)
        if plan.device == "cuda":
            torch.cuda.empty_cache()
    marks["ray_shutdown"] = time.time()


def _stop_monitor() -> None:
    """Stop our cluster's autoscaler monitor now. ray.shutdown stops the GCS before it and then
    gives it 1 s to exit on SIGTERM, which it spends trying to tell the gone GCS; it keeps no
    state worth that. (A private API: should it change, ray.shutdown stops the monitor as before.)"""
    import contextlib

    with contextlib.suppress(Exception):
        from ray._private import ray_constants, worker

        worker._global_node._kill_process_type(ray_constants.PROCESS_TYPE_MONITOR, allow_graceful=False,
                                               check_alive=False)


def _trainer_class(own_cluster: bool):
    """TorchTrainer without the callbacks whose actors (a Python process each, started while the
    workers start) do nothing for ft-train: Ray Data's dataset manager (we pass no datasets) and,
    on a cluster of our own, the placement-group cleaner (the cluster goes when we do; without the
    dashboard it cannot reach the state API it polls anyway). Should a Ray release rename the
    private hook, nothing is dropped and training runs as before."""
    from ray.train.torch import TorchTrainer

    unused = {"DatasetsCallback"} | ({"PlacementGroupCleanerCallback"} if own_cluster else set())

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [cb for cb in super()._create_default_callbacks() if type(cb).__name__ not in unused]

        def _register_sigint_handler(self, controller):
            _abort_on_sigint(controller)

    return Trainer


def _abort_on_sigint(controller) -> None:
    """Ctrl-C: stop the workers, as Ray Train does, then interrupt as any ft command is
    interrupted ("ft-train: aborted", exit 130). Ray Train's own handler swallows it and exits 1
    with no word; the handler is put back after fit (fit_on_ray)."""
    import ray

    def on_sigint(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts the abort
        try:
            ray.get(controller.abort.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - the controller may be gone already; ray.shutdown follows
            pass
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
