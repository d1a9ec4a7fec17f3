"""``--nnunet-results``: a trained model's cross-validation predictions as nnU-Net lays them out.

``clskern stats --nnunet-results nnUNet_results --dataset 42 --configuration 3d_fullres``
reads ``Dataset042_*/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_*/validation/CASE.npz``
(``nnUNetv2_train ... --npz``), every fold pooled as nnU-Net's cross-validation
pools them, against ``--labels`` or ``$nnUNet_raw/Dataset042_*/labelsTr``. When
``dataset.json`` (the model folder's copy, else the raw dataset's) names several
classes or regions, and no ``--label``/``--channel``/``--classes`` picks one,
every class is gathered (as ``--dataset-json``). ``--allow-unmatched`` is
refused: a prediction without its label is always an error here. ``--folds``
names each fold once, each a ``fold_N`` with a ``validation/`` folder.
"""

import sys

from ..errors import InputError

OPTIONS = ("dataset", "configuration")


def add_results_options(parser):
    g = parser.add_argument_group("nnU-Net results (in place of --scores)")
    g.add_argument("--nnunet-results", metavar="DIR", default=None,
                   help="nnUNet_results: pool every fold's validation predictions (CASE.npz + CASE.pkl, "
                        "nnUNetv2_train ... --npz) of DATASET/TRAINER__PLANS__CONFIGURATION; --labels "
                        "defaults to $nnUNet_raw/DatasetXXX_Name/labelsTr")
    g.add_argument("--dataset", metavar="ID", default=None, help="dataset number (42) or name (Dataset042_Name)")
    g.add_argument("--configuration", metavar="C", default=None, help="as trained: 2d, 3d_fullres, 3d_lowres, ...")
    g.add_argument("--trainer", metavar="T", default="nnUNetTrainer", help="default nnUNetTrainer")
    g.add_argument("--plans", metavar="P", default="nnUNetPlans", help="default nnUNetPlans")
    g.add_argument("--folds", metavar="F", nargs="+", type=int, default=None,
                   help="folds to pool (default: every fold_N there)")


def resolve(args):
    """Fill ``args.scores``/``args.labels`` (and ``args.nnunet``) from --nnunet-results, or check --scores/--labels."""
    args.nnunet = None
    if getattr(args, "nnunet_results", None) is None:
        given = [f"--{o}" for o in OPTIONS if getattr(args, o, None) is not None]
        if getattr(args, "folds", None) is not None:
            given.append("--folds")
        if given:
            raise InputError(f"{', '.join(given)}: only with --nnunet-results DIR")
        missing = [f"--{o}" for o in ("scores", "labels") if getattr(args, o, None) is None]
        if missing:
            raise InputError(f"{' and '.join(missing)} required (or --nnunet-results DIR --dataset ID "
                             "--configuration C)")
        from ..io.cases import dataset_json_beside

        read_dataset_json(args, dataset_json_beside(args.labels))
        return None
    from ..adapters.nnunet import results_folder

    if args.scores is not None:
        raise InputError("--scores and --nnunet-results: give one")
    if getattr(args, "allow_unmatched", False):
        raise InputError("--allow-unmatched: with --nnunet-results every validation prediction needs its label "
                         "(labels without a prediction are left out anyway); a prediction without one is an error")
    missing = [f"--{o}" for o in OPTIONS if getattr(args, o) is None]
    if missing:
        raise InputError(f"--nnunet-results needs {' and '.join(missing)}")
    results = results_folder(args.nnunet_results, args.dataset, args.configuration, trainer=args.trainer,
                             plans=args.plans, folds=args.folds)
    args.labels = results.labels_folder(args.labels)
    args.scores = results.model
    args.nnunet = results
    if not args.quiet:
        print(f"stats: {results.model}: {len(results.cases)} case(s) in fold(s) "
              f"{', '.join(map(str, results.folds))}, labels {args.labels}", file=sys.stderr)
    read_dataset_json(args, results.dataset_json_for(args.labels))
    return results


def read_dataset_json(args, dataset_json, what="stats"):
    """What to read by ``dataset.json`` (``clskern.classes.dataset_reading``, the rule
    ``adapters.nnunet`` follows too) when --classes/--dataset-json do not say: fills
    --channel/--label of one class, or ``args.implied_classes`` (several classes, or one
    region), and says which on stderr.
    """
    from ..classes import classes_from_dataset_json, dataset_reading

    if dataset_json is None or getattr(args, "classes", None) is not None or args.dataset_json is not None:
        return
    if args.label is not None and args.channel is not None:
        return
    try:
        classes_from_dataset_json(dataset_json)
    except InputError as exc:
        raise InputError(f"{exc}; pass --label and --channel to read one class without it") from None
    asked = ("" if args.channel is None and args.label is None else
             f"--channel {args.channel}" if args.channel is not None else f"--label {args.label:g}")
    reading = dataset_reading(dataset_json, args.channel, args.label, spell=lambda option: f"--{option} ")
    if reading.kind == "classes":
        args.implied_classes, args.implied_from = (reading.classes, reading.regions_class_order), dataset_json
        args.channel = args.label = None  # a region they named: read as a class, its channel and values known
        if not args.quiet:
            n = len(reading.classes)
            hint = "" if asked else " (--label with --channel picks one)"
            print(f"{what}: {asked + ': ' if asked else ''}{dataset_json}: {n} {'class' if n == 1 else 'classes'} "
                  f"({', '.join(reading.classes)}), each gathered{hint}", file=sys.stderr)
        return
    if reading.channel is None:  # the plain binary dataset: the defaults read it
        return
    args.channel, args.label = reading.channel, reading.label
    if not args.quiet:
        print(f"{what}: {asked + ' is ' if asked else ''}class {reading.name!r} in {dataset_json}: channel "
              f"{reading.channel} against label {reading.label:g}", file=sys.stderr)
