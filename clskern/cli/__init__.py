"""The ``clskern`` command line (entry point ``clskern.cli.main:main``; also ``python -m clskern``).

Quick start::

    clskern demo                      # synthetic cases: stats -> calibrate -> apply, and a table

On your own data (scores paired with labels by case id; ``.nii.gz``, ``.nii``,
nnU-Net ``CASE.npz`` + ``CASE.pkl``, ``.npy``)::

    clskern stats --scores preds/ --labels labels/ -o stats.sqlite      # one pass per case, resumable
    clskern calibrate --store stats.sqlite --epsilon 0.2 --alpha 0.1 -o calibration.json
    clskern calibrate --store stats.sqlite --epsilon 0.1 --method crc -o crc.json   # no pass over volumes
    clskern apply --calibration calibration.json --scores test_preds/ -o masks/

Every subcommand shares ``-o/--output``, ``-q/--quiet`` and, where it reads
volumes, ``-j/--jobs N`` (at most one reader per core) and ``--empty
skip|pass|error``; ``--alpha`` defaults to 0.1 everywhere (``_common.py``).
Reading options: ``--label V``, ``--channel C``, ``--connectivity``,
``--classes``/``--dataset-json``. ``--overwrite`` replaces earlier outputs,
never an input; ``--debug`` shows a traceback. Every bad input ends with exit
status 1 and one line naming the file or case; outputs are written atomically.
"""
