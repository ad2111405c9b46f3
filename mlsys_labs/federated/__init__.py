"""Lab 7 — federated learning on Flower: FedAvg/FedProx on non-IID clients, stragglers,
differential privacy; in Flower's simulation engine and as real SuperLink/SuperNode processes.

The lesson — what a learner writes:

- ``strategies``   server-side aggregation: FedAvg's weighted average (McMahan et al. 2017, Alg. 1),
                   FedProx (Li et al. 2020), FedAvgM (Hsu et al. 2019), FedAdam (Reddi et al. 2021, Alg. 2)
- ``train``        client-side local SGD with FedProx's proximal term μ/2·‖w − w_t‖² (Li et al. 2020, Alg. 2)
- ``privacy``      update clipping + Gaussian noise (the Gaussian mechanism; DP-FedAvg, McMahan et al. 2018)
- ``data``         IID, Dirichlet(α) and k-classes partitioners (Hsu et al. 2019; McMahan et al. §3)

What they run in — the Flower app (Flower's quickstart shape):

- ``server_app``   the ServerApp: rounds, sampling, stragglers, failures, evaluation
- ``client_app``   the ClientApp (Message API handlers)
- ``model``        the MLP; weights ↔ Flower ArrayRecord
- ``config``       one run's settings (``FedConfig``) ↔ Flower run config
- ``centralized``  the baseline: the same model on all the data

The plumbing — the environment Flower and Ray run in, the simulation engines, the
SuperLink/SuperNode deployment and the demo — lives in :mod:`plumbing`.
"""
from .plumbing.environment import configure_environment

configure_environment()  # before anything imports Flower or Ray

from .centralized import train_centralized  # noqa: E402
from .config import FedConfig  # noqa: E402
from .data import (client_data, federation_digits, label_histograms, make_partitions,  # noqa: E402
                   partition_dirichlet, partition_iid, partition_pathological)
from .model import DigitsMLP, from_record, get_weights, new_model, set_weights, to_record  # noqa: E402
from .privacy import add_gaussian_noise, clip_update, global_norm, privatize  # noqa: E402
from .server_app import rounds_to_accuracy  # noqa: E402
from .strategies import FedAdam, FedAvg, FedAvgM, FedProx, make_strategy, weighted_average  # noqa: E402
from .train import evaluate, local_steps, proximal_term, train_local  # noqa: E402

__all__ = ["DigitsMLP", "FedAdam", "FedAvg", "FedAvgM", "FedConfig", "FedProx", "add_gaussian_noise",
           "client_data", "clip_update", "configure_environment", "evaluate", "federation_digits", "from_record",
           "get_weights", "global_norm", "label_histograms", "local_steps", "make_partitions", "make_strategy",
           "new_model", "partition_dirichlet", "partition_iid", "partition_pathological", "privatize",
           "proximal_term", "rounds_to_accuracy", "set_weights", "to_record", "train_centralized", "train_local", "weighted_average"]
