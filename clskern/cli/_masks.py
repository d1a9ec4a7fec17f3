"""What every ``clskern apply`` path shares (one calibration, per group, per class): the plan of
masks with its refusals, and writing them all or none."""

import os

from ..io import prefetch
from ..io._atomic import StagedFolder
from ..io.masks import reference_index, resolve_geometry, save_mask
from ._output import MASK, guard_outputs
from ._progress import Progress


def plan_masks(args, inputs, *extra_sources):
    """``[(case_id, score path, geometry, mask path)]`` for ``inputs`` (``{case_id: score path}``),
    masks named ``OUTPUT/CASE.nii.gz``, each case's geometry resolved (``--reference``, ``CASE.pkl``).

    Refused before anything is read (``_output.guard_outputs``): an output
    that is an input (the files read, ``extra_sources``, ``--reference``'s,
    the ``.pkl``\\ s), a file in the way that is not a mask clskern wrote,
    and an existing mask of clskern's without ``--overwrite``.
    """
    references = reference_index(args.reference) if args.reference else None
    plan = [(case_id, path, resolve_geometry(path, case_id, references), os.path.join(args.output, case_id + ".nii.gz"))
            for case_id, path in inputs.items()]
    sources = [args.scores, args.reference, args.calibration, *extra_sources, *inputs.values(),
               *(references or {}).values()]
    sources += [p for _, _, geometry, _ in plan for p in (geometry.path, geometry.pkl)]
    guard_outputs(args, "output", MASK, names=[os.path.basename(out) for *_, out in plan], extra_inputs=sources)
    return plan


def write_masks(args, plan, load, cut, nbytes):
    """Write every case's mask, all or none (``StagedFolder``: a late failure leaves no mask).

    ``load(item)`` reads a case on ``args.jobs`` reader threads (``prefetch``);
    ``cut(case_id, loaded)`` gives ``(mask, score volume)``, the volume lending
    its geometry to ``save_mask``; ``nbytes(loaded)`` is the memory a loaded
    case holds (progress, and how far reads may run ahead).
    """
    progress = Progress(len(plan), "apply", quiet=args.quiet)
    stream = prefetch(plan, load, jobs=args.jobs, nbytes=nbytes)
    try:
        with StagedFolder(args.output) as staged:
            for (case_id, _, geometry, out), loaded, error in stream:
                if error is not None:
                    raise error
                mask, volume = cut(case_id, loaded)
                save_mask(mask, staged.path(os.path.basename(out)), geometry, volume)
                progress.step(case_id, "done", nbytes(loaded))
    finally:
        stream.close()
        progress.close()
