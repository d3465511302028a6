"""Probe the GPU machine: the carried Ray + DeepSpeed stack runs a ZeRO step on one GPU.

Run there after tools/airgap-gpu/gpu_unstage.sh:  python3 tools/airgap-gpu/gpu_probe.py
"""

import json
import os
import time

os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")  # the image's 9.0a breaks FusedAdam's build

import ray  # noqa: E402
import torch  # noqa: E402
from ray.train import ScalingConfig  # noqa: E402
from ray.train.torch import TorchTrainer  # noqa: E402


def loop(config):
    import deepspeed
    import ray.train

    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024)).cuda()
    start = time.time()
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config={
        "train_micro_batch_size_per_gpu": 8, "bf16": {"enabled": True},
        "zero_optimization": {"stage": config["stage"]},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
    })
    init_s = time.time() - start
    x = torch.randn(8, 1024, device=engine.device, dtype=torch.bfloat16)
    for _ in range(3):
        loss = engine(x).float().pow(2).mean()
        engine.backward(loss)
        engine.step()
    ray.train.report({"loss": loss.item(), "init_s": init_s})


if __name__ == "__main__":
    print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.get_device_name(0),
                      "ray": ray.__version__}), flush=True)
    ray.init(num_gpus=1, include_dashboard=False)
    for stage in (0, 3):
        t = time.time()
        result = TorchTrainer(loop, train_loop_config={"stage": stage},
                              scaling_config=ScalingConfig(num_workers=1, use_gpu=True)).fit()
        print(json.dumps({"stage": stage, "metrics": result.metrics, "wall_s": round(time.time() - t, 1)}), flush=True)
