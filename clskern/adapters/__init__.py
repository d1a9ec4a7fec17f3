"""Adapters for the places clskern is called from; each imports its toolkit lazily.

- ``clskern.adapters.torch``: PyTorch / MONAI, a ``CalibratedThreshold``
  transform (``AsDiscrete(threshold=...)`` with a calibrated threshold,
  MetaTensor metadata kept) and ``ValidationStats``, which gathers statistics
  in a validation loop and calibrates at the end. Needs ``torch`` only when
  given tensors; ``monai`` never.
- ``clskern.adapters.nnunet``: calibrate from an nnU-Net v2
  ``--save_probabilities`` folder and its ``labelsTr``; write masks next to
  nnU-Net's own predictions.

Importing this package imports neither torch nor monai. Runnable examples
for every caller, the C++ host program included, are in ``python_api/``.
"""
