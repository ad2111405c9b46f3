"""One federated run's settings, in one place.

The same dataclass drives the in-process engine, Flower's simulation engine and a
deployment: in deployment it travels as Flower's *run config* (``flwr run
--run-config 'num-rounds=5 ...'``, keys with hyphens), which :meth:`FedConfig.from_run_config`
reads back on the SuperLink's ServerApp.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class FedConfig:
    num_clients: int = 10          # SuperNodes, one data partition each
    num_rounds: int = 20
    fraction: float = 1.0          # clients sampled per round (at least min_clients)
    min_clients: int = 2
    strategy: str = "fedavg"       # fedavg | fedprox | fedavgm | fedadam
    mu: float = 0.1                # FedProx's proximal coefficient
    partitioning: str = "iid"      # iid | dirichlet:<alpha> | classes:<k>
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.2
    seed: int = 0
    straggler_fraction: float = 0.0  # fixed share of clients that only do partial work
    clip_norm: float = 0.0           # > 0: clip each update to this L2 norm (DP)
    noise_multiplier: float = 0.0    # Gaussian noise std = noise_multiplier * clip_norm
    round_timeout: float = 0.0       # > 0: replies later than this many seconds are dropped
    fail_partitions: str = ""        # comma-separated partition ids whose ClientApp raises
    fail_round: int = 0              # ... in this round only (0: every round)
    results_path: str = ""           # where the deployment ServerApp writes its history JSON

    def to_run_config(self) -> dict:
        """Flower run-config form: hyphenated keys, TOML-able values."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_run_config(cls, run_config) -> "FedConfig":
        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for key, value in dict(run_config).items():
            name = key.replace("-", "_")
            if name in known:
                default = getattr(cls(), name)
                values[name] = type(default)(value)
        return cls(**values)

    def replace(self, **changes) -> "FedConfig":
        return FedConfig(**{**asdict(self), **changes})
