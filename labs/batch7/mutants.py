"""Lab 7's mutation catalogue: realistic learner bugs, one exact edit each (see `mlsys-labs mutants`).

Every solution region of ``mlsys_labs/federated/`` (partitioners, FedAvg's average, FedAvgM,
FedAdam, the proximal term, local training, clipping, noise) has entries, and so do the
pieces around them where the issue saw bugs: the order of clipping and noise in
``privatize`` and what the server lets into its aggregate.  The hints point at the fast
unit tests; none needs Flower's engines (Ray, the deployment)."""
from mlsys_labs.grading.mutants import Mutant

F = "mlsys_labs/federated/"
PART = "labs/batch7/test_partition.py"
ALGO = "labs/batch7/test_algorithms.py"
FED = "labs/batch7/test_federation.py"

MUTANTS = [
    # ------------------------------------------------------------- partition_iid (step 1)
    Mutant(
        name="iid-not-shuffled",
        file=F + "data.py",
        old="    order = rng.permutation(len(labels))\n",
        new="    order = np.arange(len(labels))\n",
        why="splits the indices in file order: with data stored class by class each client gets one "
            "or two classes — not IID at all",
        tests=(PART + "::test_iid_is_balanced",),
    ),
    Mutant(
        name="iid-global-numpy-random",
        file=F + "data.py",
        old="    order = rng.permutation(len(labels))\n",
        new="    order = np.random.permutation(len(labels))\n",
        why="draws from numpy's global generator instead of the rng passed in: the split is not "
            "a function of the seed, so a SuperNode cannot rebuild its own partition",
        tests=(PART + "::test_iid_is_balanced",),
    ),
    Mutant(
        name="iid-drops-the-remainder",
        file=F + "data.py",
        old="np.array_split(order, num_partitions)]",
        new="np.split(order[: len(order) - len(order) % num_partitions], num_partitions)]",
        why="np.split needs equal parts, so the learner trims the n mod K leftover samples: "
            "they belong to no client when K does not divide n",
        tests=(PART + "::test_partitions_cover_the_data_exactly_once",),
    ),
    Mutant(
        name="iid-parts-not-sorted",
        file=F + "data.py",
        old="    return [np.sort(part) for part in np.array_split(order, num_partitions)]\n",
        new="    return list(np.array_split(order, num_partitions))\n",
        why="returns each client's indices in shuffled order, against the contract (sorted arrays)",
        tests=(PART + "::test_partitions_cover_the_data_exactly_once",),
    ),
    # ------------------------------------------------------- partition_dirichlet (step 1)
    Mutant(
        name="dirichlet-alpha-ignored",
        file=F + "data.py",
        old="shares = rng.dirichlet(np.full(num_partitions, alpha))",
        new="shares = rng.dirichlet(np.ones(num_partitions))",
        why="draws Dir(1) whatever α is: the skew no longer depends on α",
        tests=(PART + "::test_dirichlet_alpha_controls_the_skew",),
    ),
    Mutant(
        name="dirichlet-one-draw-for-all-classes",
        file=F + "data.py",
        old="        for c in np.unique(labels):\n            idx = rng.permutation(np.flatnonzero(labels == c))\n"
            "            shares = rng.dirichlet(np.full(num_partitions, alpha))\n",
        new="        shares = rng.dirichlet(np.full(num_partitions, alpha))\n"
            "        for c in np.unique(labels):\n            idx = rng.permutation(np.flatnonzero(labels == c))\n",
        why="draws the client shares once instead of per class: clients differ in size but every "
            "client has the global label mix — quantity skew, no label skew",
        tests=(PART + "::test_dirichlet_alpha_controls_the_skew",),
    ),
    Mutant(
        name="dirichlet-shares-over-classes",
        file=F + "data.py",
        old="shares = rng.dirichlet(np.full(num_partitions, alpha))",
        new="shares = rng.dirichlet(np.full(len(np.unique(labels)), alpha))",
        why="confuses the axes: draws a Dirichlet over the classes instead of over the clients "
            "(right only when there are as many clients as classes)",
        tests=(PART + "::test_partitions_cover_the_data_exactly_once",),
    ),
    Mutant(
        name="dirichlet-min-size-ignored",
        file=F + "data.py",
        old="        if min(len(p) for p in result) >= min_partition_size:\n",
        new="        if min(len(p) for p in result) > 0:\n",
        why="redraws only when a client is empty, not when it has fewer than min_partition_size samples",
        tests=(PART + "::test_dirichlet_respects_the_minimum_partition_size",),
    ),
    Mutant(
        name="dirichlet-undersized-after-max-tries",
        file=F + "data.py",
        old="    raise ValueError(f\"no Dirichlet(α={alpha}) split",
        new="    return result\n    raise ValueError(f\"no Dirichlet(α={alpha}) split",
        why="when no draw qualifies returns the last one instead of raising: clients below the minimum",
        tests=(PART + "::test_dirichlet_respects_the_minimum_partition_size",),
    ),
    Mutant(
        name="dirichlet-class-not-shuffled",
        file=F + "data.py",
        old="            idx = rng.permutation(np.flatnonzero(labels == c))\n            shares",
        new="            idx = np.flatnonzero(labels == c)\n            shares",
        why="cuts each class's samples in file order: a client gets a run of consecutive samples "
            "(the same writers), not a random subset of the class",
        tests=(PART + "::test_samples_of_a_class_are_shuffled_before_the_split",),
    ),
    # ---------------------------------------------------- partition_pathological (step 1)
    Mutant(
        name="pathological-sliding-window",
        file=F + "data.py",
        old="order[(k * classes_per_partition + j) % len(classes)]",
        new="order[(k + j) % len(classes)]",
        why="deals overlapping windows (client k: classes k..k+m−1): fine with at least as many "
            "clients as classes, but with fewer some classes have no holder",
        tests=(PART + "::test_pathological_with_fewer_clients_than_classes",),
    ),
    Mutant(
        name="pathological-modulo-clients",
        file=F + "data.py",
        old="order[(k * classes_per_partition + j) % len(classes)]",
        new="order[(k * classes_per_partition + j) % num_partitions]",
        why="wraps around modulo the number of clients instead of the number of classes",
        tests=(PART + "::test_pathological_with_fewer_clients_than_classes",),
    ),
    Mutant(
        name="pathological-first-holder-takes-all",
        file=F + "data.py",
        old="        for k, chunk in zip(ks, np.array_split(idx, len(ks))):\n            parts[k].append(chunk)\n",
        new="        parts[ks[0]].append(idx)\n",
        why="gives a class's samples to its first holder only: the other holders end up with fewer "
            "than k classes",
        tests=(PART + "::test_pathological_gives_k_classes_each",),
    ),
    Mutant(
        name="pathological-class-order-not-shuffled",
        file=F + "data.py",
        old="    order = rng.permutation(classes)\n",
        new="    order = classes\n",
        why="deals the classes in label order: client 0 always holds classes 0 and 1, whatever the seed",
        tests=(PART + "::test_pathological_with_fewer_clients_than_classes",),
    ),
    Mutant(
        name="pathological-class-not-shuffled",
        file=F + "data.py",
        old="        idx = rng.permutation(np.flatnonzero(labels == c))\n        for k, chunk",
        new="        idx = np.flatnonzero(labels == c)\n        for k, chunk",
        why="splits a class among its holders in file order (consecutive runs), not at random",
        tests=(PART + "::test_samples_of_a_class_are_shuffled_before_the_split",),
    ),
    # ------------------------------------------------------- weighted_average (step 2)
    Mutant(
        name="fedavg-weighted-by-client-count",
        file=F + "strategies.py",
        old="np.asarray(w[name], dtype=np.float64) * (n / total) for w, n in results)",
        new="np.asarray(w[name], dtype=np.float64) * (1 / len(results)) for w, n in results)",
        why="averages the clients equally (by count) instead of weighting by their examples",
        tests=(ALGO + "::test_weighted_average_matches_flower",),
    ),
    Mutant(
        name="fedavg-in-float32",
        file=F + "strategies.py",
        old="np.asarray(w[name], dtype=np.float64) * (n / total) for w, n in results)",
        new="np.asarray(w[name], dtype=np.float32) * np.float32(n / total) for w, n in results)",
        why="aggregates in float32 (the model's dtype) instead of float64",
        tests=(ALGO + "::test_weighted_average_matches_flower",),
    ),
    Mutant(
        name="fedavg-accumulates-into-a-reply",
        file=F + "strategies.py",
        old="    return {name: sum(np.asarray(w[name], dtype=np.float64) * (n / total) for w, n in results)\n"
            "            for name in names}\n",
        new="    out = {}\n"
            "    for name in names:\n"
            "        acc = np.asarray(results[0][0][name], dtype=np.float64)\n"
            "        acc *= results[0][1] / total\n"
            "        for w, n in results[1:]:\n"
            "            acc += np.asarray(w[name], dtype=np.float64) * (n / total)\n"
            "        out[name] = acc\n"
            "    return out\n",
        why="accumulates in place into the first client's array (np.asarray does not copy): the "
            "average is right but the first reply's weights are overwritten",
        tests=(ALGO + "::test_weighted_average_matches_flower",),
    ),
    # ---------------------------------------------------------------- FedAvgM (step 3)
    Mutant(
        name="fedavgm-server-lr-ignored",
        file=F + "strategies.py",
        old="return {k: global_weights[k] - self.server_lr * self.velocity[k] for k in avg}",
        new="return {k: global_weights[k] - self.velocity[k] for k in avg}",
        why="forgets the server learning rate η (right only for η = 1)",
        tests=(ALGO + "::test_fedavgm_is_sgd_momentum_on_the_pseudo_gradient",),
    ),
    Mutant(
        name="fedavgm-dampened-velocity",
        file=F + "strategies.py",
        old="self.momentum * self.velocity[k] + delta[k] for k in avg}",
        new="self.momentum * self.velocity[k] + (1 - self.momentum) * delta[k] for k in avg}",
        why="an exponential moving average (Adam's first moment) instead of SGD momentum's v ← βv + Δ",
        tests=(ALGO + "::test_fedavgm_is_sgd_momentum_on_the_pseudo_gradient",),
    ),
    Mutant(
        name="fedavgm-velocity-not-kept",
        file=F + "strategies.py",
        old="        if self.velocity is None:\n            self.velocity = delta\n",
        new="        if True:\n            self.velocity = delta\n",
        why="restarts the velocity every round: no momentum across rounds",
        tests=(ALGO + "::test_fedavgm_is_sgd_momentum_on_the_pseudo_gradient",),
    ),
    Mutant(
        name="fedavgm-pseudo-gradient-sign",
        file=F + "strategies.py",
        old="        delta = {k: global_weights[k] - avg[k] for k in avg}\n        if self.velocity",
        new="        delta = {k: avg[k] - global_weights[k] for k in avg}\n        if self.velocity",
        why="takes Δ = avg − w_t (FedAdam's convention) with FedAvgM's w − ηv: steps away from the clients",
        tests=(ALGO + "::test_fedavgm_is_sgd_momentum_on_the_pseudo_gradient",),
    ),
    # ----------------------------------------------------------------- FedAdam (step 3)
    Mutant(
        name="fedadam-server-lr-ignored",
        file=F + "strategies.py",
        old="global_weights[k] + self.server_lr * self.m[k] / (np.sqrt(self.v[k]) + self.tau)",
        new="global_weights[k] + self.m[k] / (np.sqrt(self.v[k]) + self.tau)",
        why="forgets the server learning rate η",
        tests=(ALGO + "::test_fedadam_follows_reddi_et_al",),
    ),
    Mutant(
        name="fedadam-tau-inside-sqrt",
        file=F + "strategies.py",
        old="(np.sqrt(self.v[k]) + self.tau)",
        new="np.sqrt(self.v[k] + self.tau)",
        why="puts the adaptivity τ under the square root (√(v + τ) instead of √v + τ)",
        tests=(ALGO + "::test_fedadam_follows_reddi_et_al",),
    ),
    Mutant(
        name="fedadam-betas-swapped",
        file=F + "strategies.py",
        old="self.m = {k: self.beta1 * self.m[k] + (1 - self.beta1) * delta[k] for k in avg}",
        new="self.m = {k: (1 - self.beta1) * self.m[k] + self.beta1 * delta[k] for k in avg}",
        why="swaps β₁ and 1 − β₁ in the first moment: m follows the latest Δ, barely any memory",
        tests=(ALGO + "::test_fedadam_follows_reddi_et_al",),
    ),
    Mutant(
        name="fedadam-moments-reset",
        file=F + "strategies.py",
        old="        if self.m is None:\n",
        new="        if True:\n",
        why="starts m and v from zero every round instead of carrying them",
        tests=(ALGO + "::test_fedadam_follows_reddi_et_al",),
    ),
    # ----------------------------------------------------------- proximal_term (step 4)
    Mutant(
        name="prox-wrong-sign",
        file=F + "train.py",
        old="    return 0.5 * mu * total\n",
        new="    return -0.5 * mu * total\n",
        why="subtracts the proximal term: the gradient −μ(w − w_t) pushes clients away from w_t",
        tests=(ALGO + "::test_proximal_term_value_and_gradient",),
    ),
    Mutant(
        name="prox-no-half",
        file=F + "train.py",
        old="    return 0.5 * mu * total\n",
        new="    return mu * total\n",
        why="μ‖w − w_t‖² without the ½: the gradient is 2μ(w − w_t)",
        tests=(ALGO + "::test_proximal_term_value_and_gradient",),
    ),
    Mutant(
        name="prox-norm-not-squared",
        file=F + "train.py",
        old="    return 0.5 * mu * total\n",
        new="    return 0.5 * mu * torch.sqrt(total)\n",
        why="μ/2‖w − w_t‖ (the norm) instead of its square",
        tests=(ALGO + "::test_proximal_term_value_and_gradient",),
    ),
    Mutant(
        name="prox-anchor-detached-current",
        file=F + "train.py",
        old="        total = total + ((w - w_t) ** 2).sum()\n",
        new="        total = total + ((w - w.detach()) ** 2).sum()\n",
        why="anchors on the current weights (detached) instead of w_t: the term and its gradient are 0",
        tests=(ALGO + "::test_proximal_term_value_and_gradient",),
    ),
    # ------------------------------------------------------------- train_local (step 5)
    Mutant(
        name="train-prox-anchor-moves",
        file=F + "train.py",
        old="                if mu > 0:\n                    loss = loss + proximal_term(model, global_params, mu)\n",
        new="                if mu > 0:\n                    global_params = [p.detach().clone() for p in model.parameters()]\n"
            "                    loss = loss + proximal_term(model, global_params, mu)\n",
        why="takes the anchor at the current step instead of the global weights at the round's start: "
            "the proximal term never pulls back",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    Mutant(
        name="train-mu-ignored",
        file=F + "train.py",
        old="                if mu > 0:\n",
        new="                if False:\n",
        why="never adds the proximal term: FedProx clients train as FedAvg's",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    Mutant(
        name="train-one-shuffle-for-all-epochs",
        file=F + "train.py",
        old="        done = 0\n        while done < steps:\n            order = torch.randperm(len(ys), generator=gen)\n",
        new="        done = 0\n        order = torch.randperm(len(ys), generator=gen)\n        while done < steps:\n",
        why="shuffles once: every epoch repeats the same batches",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    Mutant(
        name="train-drops-the-last-partial-batch",
        file=F + "train.py",
        old="            for start in range(0, len(ys), batch_size):\n",
        new="            for start in range(0, len(ys) - batch_size + 1, batch_size):\n",
        why="skips the epoch's last, smaller batch (drop_last) although it is a step too",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    Mutant(
        name="train-whole-epochs",
        file=F + "train.py",
        old="                if done == steps:\n                    break\n",
        new="",
        why="finishes the epoch it is in: more than `steps` steps (a straggler's partial work is not partial)",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    Mutant(
        name="train-no-zero-grad",
        file=F + "train.py",
        old="                opt.zero_grad()\n",
        new="",
        why="forgets zero_grad: every step adds the gradients of all earlier steps",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    Mutant(
        name="train-returns-last-loss",
        file=F + "train.py",
        old="        return float(np.mean(losses)) if losses else float(\"nan\")\n",
        new="        return float(losses[-1]) if losses else float(\"nan\")\n",
        why="returns the last step's loss instead of the mean over the steps",
        tests=(ALGO + "::test_local_training_matches_a_plain_torch_loop",),
    ),
    # ------------------------------------------------------- clip_update (step 6)
    Mutant(
        name="clip-per-array",
        file=F + "privacy.py",
        old="    norm = global_norm(update)\n    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0\n"
            "    return {k: np.asarray(a, dtype=np.float64) * scale for k, a in update.items()}\n",
        new="    out = {}\n    for k, a in update.items():\n        norm = global_norm({k: a})\n"
            "        scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0\n"
            "        out[k] = np.asarray(a, dtype=np.float64) * scale\n    return out\n",
        why="clips each tensor to C separately: the whole update's norm can reach C·√(#arrays)",
        tests=(ALGO + "::test_clipping_bounds_the_norm_and_keeps_the_direction",),
    ),
    Mutant(
        name="clip-scales-small-updates-up",
        file=F + "privacy.py",
        old="    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0\n",
        new="    scale = clip_norm / norm if norm > 0 else 1.0\n",
        why="normalises every update to norm C, inflating the ones already inside the ball",
        tests=(ALGO + "::test_clipping_bounds_the_norm_and_keeps_the_direction",),
    ),
    Mutant(
        name="clip-zero-update-divides-by-zero",
        file=F + "privacy.py",
        old="    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0\n",
        new="    scale = min(1.0, clip_norm / max(norm, 0.0))\n",
        why="no guard for a zero update (a client that did not move): division by zero",
        tests=(ALGO + "::test_clipping_bounds_the_norm_and_keeps_the_direction",),
    ),
    # -------------------------------------------------- add_gaussian_noise (step 6)
    Mutant(
        name="noise-std-ignores-clip-norm",
        file=F + "privacy.py",
        old="    std = noise_multiplier * clip_norm\n",
        new="    std = noise_multiplier\n",
        why="noise of std z instead of z·C: its scale is not relative to the clip norm (the sensitivity)",
        tests=(ALGO + "::test_gaussian_noise_has_the_stated_std",),
    ),
    Mutant(
        name="noise-variance-as-std",
        file=F + "privacy.py",
        old="    std = noise_multiplier * clip_norm\n",
        new="    std = (noise_multiplier * clip_norm) ** 2\n",
        why="passes the variance (zC)² where numpy's normal takes the standard deviation",
        tests=(ALGO + "::test_gaussian_noise_has_the_stated_std",),
    ),
    Mutant(
        name="noise-one-draw-per-array",
        file=F + "privacy.py",
        old="rng.normal(0.0, std, size=np.shape(a))",
        new="rng.normal(0.0, std)",
        why="draws one scalar per array and adds it to every element: not independent noise per coordinate",
        tests=(ALGO + "::test_gaussian_noise_has_the_stated_std",),
    ),
    Mutant(
        name="noise-fresh-generator",
        file=F + "privacy.py",
        old="rng.normal(0.0, std, size=np.shape(a))",
        new="np.random.default_rng().normal(0.0, std, size=np.shape(a))",
        why="draws from a fresh unseeded generator instead of the rng passed in: not reproducible",
        tests=(ALGO + "::test_gaussian_noise_has_the_stated_std",),
    ),
    # --------------------------------------------- privatize: the order (step 6)
    Mutant(
        name="dp-noise-before-clip",
        file=F + "privacy.py",
        old="    noisy = add_gaussian_noise(clip_update(update, clip_norm), clip_norm, noise_multiplier, rng)\n",
        new="    noisy = clip_update(add_gaussian_noise(update, clip_norm, noise_multiplier, rng), clip_norm)\n",
        why="adds the noise first and clips after: the noise is clipped away with the update "
            "(no privacy from it), the order of the Gaussian mechanism reversed",
        tests=(ALGO + "::test_privatize_clips_then_adds_noise_of_scale_z_times_c",),
    ),
    Mutant(
        name="dp-clips-the-weights",
        file=F + "privacy.py",
        old="    update = {k: local[k] - global_weights[k] for k in local}\n",
        new="    update = dict(local)\n",
        why="clips (and noises) the local weights themselves, not the update w_local − w_t",
        tests=(ALGO + "::test_privatize_without_noise_is_pure_clipping",),
    ),
    # ------------------------------------- the server's aggregate (server_app, step 5)
    Mutant(
        name="server-weights-clients-by-count",
        file=F + "server_app.py",
        old="weights = strategy.aggregate(weights, [(w, n) for _, w, n in accepted])",
        new="weights = strategy.aggregate(weights, [(w, 1) for _, w, n in accepted])",
        why="passes every reply with weight 1: clients weighted by count, not by their examples",
        tests=(FED + "::test_the_server_averages_the_accepted_replies_by_examples",),
    ),
    Mutant(
        name="server-failed-client-counted",
        file=F + "server_app.py",
        old="            if reply.has_error():\n                failed.append(reply.error.reason)\n                continue\n",
        new="            if reply.has_error():\n                failed.append(reply.error.reason)\n"
            "                stale = {k: np.array(v) for k, v in weights.items()}\n"
            "                n_avg = int(np.mean([c['num-examples'] for c in clients.values()]))\n"
            "                accepted.append((10 ** 6 + len(failed), stale, n_avg))\n"
            "                continue\n",
        why="counts a failed client in the aggregate as if it had sent back the global weights "
            "(a zero update with an average client's weight), dragging the average back towards w_t",
        tests=(FED + "::test_the_server_averages_the_accepted_replies_by_examples",),
    ),
    Mutant(
        name="server-fedavg-keeps-partial-work",
        file=F + "server_app.py",
        old="if int(m[\"steps\"]) < clients[pid][\"full-steps\"] and not strategy.keeps_partial_work:",
        new="if int(m[\"steps\"]) < clients[pid][\"full-steps\"] and False:",
        why="ignores the strategy's keeps_partial_work: FedAvg averages the stragglers' partial work in",
        tests=(FED + "::test_the_server_averages_the_accepted_replies_by_examples",),
    ),
]
