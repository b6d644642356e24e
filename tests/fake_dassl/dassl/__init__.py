"""A test double of Dassl.pytorch 0.6.3 (github.com/KaiyangZhou/Dassl.pytorch), for CI, where the
real package cannot be installed (it is not on PyPI). The tests put ``tests/fake_dassl`` on
``PYTHONPATH``, so ``import dassl`` finds this package and the seam (``disakit/dassl_api.py``)
treats it as a real Dassl: the trainers register into its registries and run on its engine.

It is a reduced re-implementation, written for these tests, of the behaviours of Dassl 0.6.3 that
decide whether this toolkit runs on it, with their failures on current torch intact:

* ``dassl.optim.lr_scheduler``: the warm-up schedulers pass ``verbose`` positionally to torch's
  ``_LRScheduler.__init__`` (so building one raises ``TypeError`` on a torch without it), and keep
  torch's ``state_dict`` / ``load_state_dict``: the successor *object* is part of the state, and
  loading is ``self.__dict__.update(state)``;
* ``dassl.utils.torchtools``: ``save_checkpoint`` (``torch.save`` in place, then the
  ``checkpoint`` pointer), ``load_checkpoint`` (``torch.load`` with torch's default
  ``weights_only``), ``resume_from_checkpoint``, ``load_pretrained_weights``; the names are bound
  again in ``dassl.utils`` (star import) and ``dassl.engine.trainer`` (``from dassl.utils import``),
  as in the real package;
* ``dassl.utils.Registry``: ``KeyError`` on a duplicate name;
* ``dassl.engine``: ``TrainerBase`` (``save_model`` without extra entries,
  ``resume_model_if_exist`` that looks only for the folders, ``load_model``), ``SimpleTrainer``
  (build order, ``before_train`` / ``after_epoch`` that saves only at ``CHECKPOINT_FREQ`` and the
  last epoch / ``after_train``, ``test``), ``TrainerX.run_epoch``, ``build_trainer``;
* ``dassl.config``: Dassl's defaults, including the domain-adaptation, domain-generalisation and
  semi-supervised trainer nodes that the bundled engine leaves out;
* ``dassl.data``: ``DataManager`` building the dataset from *this* package's registry.

What these tests do not exercise is borrowed from the bundled engine, which mirrors Dassl
(docs/engine.md): the common config keys, transforms, samplers and loaders, ``Datum`` /
``DatasetBase``, the evaluator, meters, the logger and file helpers. Real Dassl imports
TensorBoard's ``SummaryWriter`` at import time; here it is used when installed and skipped
otherwise. Nothing here is Dassl's code.
"""

__version__ = "0.6.3"
