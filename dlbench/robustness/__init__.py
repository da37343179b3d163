"""Adversarial and corruption robustness on every framework and domain.

* :mod:`~dlbench.robustness.estimator`: one ART estimator over any :class:`dlbench.framework.Model`
  (predict, loss and class gradients through the Model contract), so every framework gets the
  Adversarial Robustness Toolbox's attacks without per-framework code;
* :mod:`~dlbench.robustness.embedding`: attacks in embedding space (NLP, recommendation): the spec
  is split at its embedding lookups and the remainder is built on the cell's framework;
* :mod:`~dlbench.robustness.budgets`: epsilon in each domain's units, the random-noise baseline;
* :mod:`~dlbench.robustness.attacks`: FGSM, PGD, APGD-CE, Square and noise (registered by
  ``plugins/attacks.py`` through ``dlbench_register_attacks``);
* :mod:`~dlbench.robustness.audit`: the gradient-masking audit;
* :mod:`~dlbench.robustness.tokens`: the token-level attack on text (greedy substitution
  from the training vocabulary), beside the embedding-space figures;
* :mod:`~dlbench.robustness.training`: adversarial training for the accuracy scenario;
* :mod:`~dlbench.robustness.target`: what a robustness cell attacks (estimator, eval subset,
  metric with its 95% CI).

No framework, and not ART, is imported at module level.
"""
