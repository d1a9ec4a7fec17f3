"""The ``clskern`` command line (entry point ``clskern.cli.main:main``; also ``python -m clskern``).

Quick start::

    clskern demo                      # synthetic cases: stats -> calibrate -> apply, and a table

On your own data (scores paired with labels by case id; ``.nii.gz``, ``.nii``,
nnU-Net ``CASE.npz`` + ``CASE.pkl``, ``.npy``)::

    clskern stats --scores preds/ --labels labels/ -o stats.sqlite      # one pass per case, resumable
    clskern calibrate --store stats.sqlite --epsilon 0.2 --alpha 0.2 -o calibration.json
    clskern calibrate --store stats.sqlite --epsilon 0.1 --method crc -o crc.json   # no pass over volumes
    clskern apply --calibration calibration.json --scores test_preds/ -o masks/

Common options: ``--label V`` (lesion label in multi-label masks), ``--channel C``
(class of multi-channel scores, default 1), ``--empty skip|pass|error`` (cases
without lesion voxels), ``--jobs N`` (reader threads; at most N + 1 cases in
memory), ``--allow-unmatched``, ``--overwrite`` (outputs are never replaced
otherwise), ``--quiet``. Every bad input ends with exit status 1 and one line
naming the file or case; outputs are written atomically.
"""
