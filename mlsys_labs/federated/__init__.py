"""Lab 7 — federated learning on Flower: FedAvg/FedProx on non-IID clients, stragglers,
differential privacy; in Flower's simulation engine and as real SuperLink/SuperNode processes.

Files, one role each:

- ``environment``  Flower/Ray/scikit-learn state under ``.mlsys/lab7`` (set on import)
- ``data``         digits; IID, Dirichlet(α) and k-classes partitioners; label histograms
- ``model``        the MLP; weights ↔ Flower ArrayRecord
- ``train``        local SGD with FedProx's proximal term; evaluation
- ``strategies``   FedAvg, FedProx, FedAvgM, FedAdam aggregation (numpy, float64)
- ``privacy``      update clipping + Gaussian noise
- ``config``       one run's settings (``FedConfig``) ↔ Flower run config
- ``client_app``   the ClientApp (Message API handlers)
- ``server_app``   the ServerApp: rounds, sampling, stragglers, failures, evaluation
- ``simulation``   Flower's Ray engine, or the same apps in-process
- ``deployment``   a SuperLink and N SuperNodes as processes, ``flwr run``, stop all
- ``centralized``  the baseline: the same model on all the data
- ``demo``         ``mlsys-labs run 7``
"""
from .environment import configure_environment

configure_environment()  # before anything imports Flower or Ray

from .config import FedConfig  # noqa: E402

__all__ = ["FedConfig", "configure_environment"]
