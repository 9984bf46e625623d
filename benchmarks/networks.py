"""Forward + backward time of every network at one batch size on this machine's CPU.

    python benchmarks/networks.py [--batch 1024] [--repeats 10] [--threads N]

Prints one row per network: parameters, median and best milliseconds per forward+backward
(train mode, synthetic inputs, gradients of a sum loss), after 2 warm-up passes.
"""

import argparse
import platform
import statistics
import time

import torch

from poseaug_pl.data import generate
from poseaug_pl.evaluation.report import format_table
from poseaug_pl.models import ESTIMATORS, Augmentor, KCSDiscriminator, Pose2DDiscriminator


def time_step(fn, params, repeats):
    """Median and best seconds of ``fn().sum().backward()``."""
    times = []
    for i in range(repeats + 2):
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        fn().sum().backward()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = generate(sequences=max(1, args.batch // 200 + 1), frames=50)
    pose3d, pose2d, cam = (
        data.pose3d[: args.batch],
        data.pose2d[: args.batch],
        data.cam[: args.batch],
    )
    nets = {name: (cls(), lambda m: m(pose2d)) for name, cls in ESTIMATORS.items()}
    nets["augmentor"] = (Augmentor(), lambda m: m(pose3d, cam)["rt_2d"])
    nets["kcs_discriminator"] = (KCSDiscriminator(), lambda m: m(pose3d))
    nets["2d_discriminator"] = (Pose2DDiscriminator(), lambda m: m(pose2d))
    rows = []
    for name, (net, call) in nets.items():
        net.train()
        params = list(net.parameters())
        med, best = time_step(lambda net=net, call=call: call(net), params, args.repeats)
        rows.append({"network": name, "params": f"{sum(p.numel() for p in params):,}",
                     "median_ms": f"{med * 1e3:.1f}", "best_ms": f"{best * 1e3:.1f}"})  # fmt: skip
    cpu = platform.processor() or platform.machine()
    print(f"batch {args.batch}, forward+backward, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {cpu}")  # fmt: skip
    print(format_table(rows))


if __name__ == "__main__":
    main()
