"""Several calibrations at once: one per class (docs: several classes) or one per group (docs: groups).

``calibrate`` (``methods.py``) hands its request here when it is given
``groups=`` or ``family=``, or per-case dicts of class statistics; this module
splits the cases and calls back the single-set ``calibrate`` on each part, so
every member is an ordinary ``Calibration`` with its own digest and checks.

- **Classes**: each case is a mapping ``class name -> VolumeStats`` (or a
  critical threshold), as ``clskern.classes.class_stats`` returns. Each class
  is calibrated on its own statistics; ``epsilon`` may be a number or a
  mapping ``class -> epsilon``. ``family="none"``: each class at the asked
  ``alpha`` (and ``delta``), each with its own promise. ``family="bonferroni"``:
  the probabilities are shared out over the ``C`` classes (union bound), so
  that the promise holds for every class of a new case at once:

  ==========  ===========================  ==============================================
  method      each class calibrated at     family-wise promise
  ==========  ===========================  ==============================================
  cls         ``alpha / C``                ``P(every class FNR_c <= eps_c) >= 1 - alpha``
  cls-pac     ``alpha / C``, ``delta / C`` w.p. ``>= 1 - delta``,
                                           ``P(some class FNR_c > eps_c | cal) <= alpha``
  rcps        ``delta / C``                w.p. ``>= 1 - delta``, every ``E[FNR_c] <= eps_c``
  crc         refused                      ``E[FNR_c] <= eps_c`` already hold together
  ==========  ===========================  ==============================================

  A case without lesion voxels of a class follows the empty policy for that
  class only (its other classes are used).
- **Groups** (Mondrian calibration): ``groups`` maps each case id to its
  group; each group is calibrated on its own cases only, so each group keeps
  the promise for a new case of that group. A group whose cases cannot
  certify the request is refused by name.

Both return ``{name: Calibration}`` in sorted-name order for groups and in
the classes' order for classes.
"""

from collections.abc import Mapping

from ..errors import ArgumentError, ArgumentTypeError, CalibrationError

FAMILIES = ("none", "bonferroni")


def holds_classes(volumes):
    """Whether ``volumes`` are per-case dicts of class statistics (a mapping or sequence of mappings)."""
    if isinstance(volumes, Mapping):
        items = volumes.values()
    elif isinstance(volumes, (str, bytes)) or not hasattr(volumes, "__iter__") or hasattr(volumes, "n_fg"):
        return False
    else:
        items = volumes
    try:
        first = next(iter(items))
    except (StopIteration, TypeError):
        return False
    return isinstance(first, Mapping)


def calibrate_many(calibrate_one, volumes, *, groups=None, family=None, epsilon, **request):
    """Per-group or per-class calibrations: ``{name: Calibration}``.

    ``calibrate_one`` is the single-set ``calibrate``; ``request`` its other
    keywords (``alpha``, ``method``, ``delta``, ``empty``).
    """
    classes = holds_classes(volumes)
    if groups is not None:
        if classes:
            raise ArgumentError("groups= with several classes is not supported: calibrate each class's "
                                "statistics by group separately")
        if family not in (None, "none"):
            raise ArgumentError(f"family={family!r} applies to several classes; each group keeps its own promise "
                                "(a case belongs to one group)")
        return calibrate_groups(calibrate_one, volumes, groups, epsilon=epsilon, **request)
    if not classes:
        if family not in (None, "none"):
            raise ArgumentError(f"family={family!r} needs several classes: per-case dicts class name -> statistics "
                                "(clskern.classes.class_stats)")
        return calibrate_one(volumes, epsilon=epsilon, **request)
    return calibrate_classes(calibrate_one, volumes, epsilon=epsilon, family=family or "none", **request)


# -- groups ---------------------------------------------------------------------------------


def _group_names(groups):
    if not isinstance(groups, Mapping):
        raise ArgumentTypeError(f"groups must be a mapping case id -> group, got {type(groups).__name__}")
    out = {}
    for case, group in groups.items():
        if group is None or (isinstance(group, str) and not group.strip()):
            raise ArgumentError(f"case {case!r}: empty group name")
        out[str(case)] = str(group)
    return out


def split_by_group(volumes, groups):
    """``{group: {case: item}}`` (groups sorted by name, cases in their given order).

    Every case needs a group (refused, naming the case, otherwise); groups
    may name cases that are not among ``volumes`` (test cases, say).
    """
    if not isinstance(volumes, Mapping):
        raise ArgumentTypeError("with groups=, volumes must be a mapping case id -> statistics "
                                "(the groups are looked up by case id)")
    groups = _group_names(groups)
    parts = {}
    for case, item in volumes.items():
        group = groups.get(str(case))
        if group is None:
            raise ArgumentError(f"case {str(case)!r} has no group; give every calibration case a group")
        parts.setdefault(group, {})[case] = item
    if not parts:
        raise ArgumentError("no calibration cases to group")
    return {group: parts[group] for group in sorted(parts)}


def calibrate_groups(calibrate_one, volumes, groups, **request):
    """One calibration per group, each on its own cases only: ``{group: Calibration}``."""
    out = {}
    for group, cases in split_by_group(volumes, groups).items():
        try:
            out[group] = calibrate_one(cases, **request)
        except CalibrationError as exc:
            raise CalibrationError(f"group {group!r} ({len(cases)} case(s)): {exc}") from None
    return out


# -- classes --------------------------------------------------------------------------------


def _by_class(volumes):
    """``(names, {class: mapping or list of per-case items})`` with the same classes in every case."""
    if isinstance(volumes, Mapping):
        cases = [(str(case), item) for case, item in volumes.items()]
        keyed = True
    else:
        cases = [(f"#{i}", item) for i, item in enumerate(volumes)]
        keyed = False
    if not cases:
        raise ArgumentError("no calibration cases")
    first_case, first = cases[0]
    names = [str(n) for n in first]
    if not names:
        raise ArgumentError(f"case {first_case}: no classes")
    wanted = set(names)
    per_class = {name: ({} if keyed else []) for name in names}
    for case, item in cases:
        if not isinstance(item, Mapping):
            raise ArgumentTypeError(f"case {case}: expected a mapping class name -> statistics, "
                                    f"got {type(item).__name__}")
        have = {str(n) for n in item}
        if have != wanted:
            missing = sorted(wanted - have)
            extra = sorted(have - wanted)
            what = f"lacks class {missing[0]!r}" if missing else f"has class {extra[0]!r}, which case {first_case} lacks"
            raise ArgumentError(f"case {case} {what}; every case needs the same classes "
                                "(a class absent from the ground truth has statistics with no lesion voxels)")
        for key, stats in item.items():
            if keyed:
                per_class[str(key)][case] = stats
            else:
                per_class[str(key)].append(stats)
    return names, per_class


def per_class(value, names, what):
    """``{class: value}`` from a number or a mapping naming exactly the classes."""
    if isinstance(value, Mapping):
        given = {str(k): v for k, v in value.items()}
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ArgumentError(f"{what} names class {unknown[0]!r}, which is not among the classes "
                                f"({', '.join(names)})")
        missing = [n for n in names if n not in given]
        if missing:
            raise ArgumentError(f"{what} gives no value for class {missing[0]!r}")
        return {n: given[n] for n in names}
    return {n: value for n in names}


def family_levels(family, method, alpha, delta, n_classes):
    """``(alpha, delta)`` each class is calibrated at, under ``family``."""
    if family not in FAMILIES:
        raise ArgumentError(f"family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}")
    if family == "none":
        return alpha, delta
    if method == "crc":
        raise ArgumentError("family='bonferroni' has nothing to share out with crc: its per-class promises "
                            "E[FNR_c] <= eps_c hold together already (use family='none', or rcps for a "
                            "promise with probability 1 - delta)")
    return (None if alpha is None else alpha / n_classes), (None if delta is None else delta / n_classes)


def calibrate_classes(calibrate_one, volumes, *, epsilon, family="none", alpha=None, delta=None, **request):
    """One calibration per class: ``{class: Calibration}`` in the classes' order."""
    names, stats = _by_class(volumes)
    epsilons = per_class(epsilon, names, "epsilon")
    method = request.get("method", "cls")
    if isinstance(alpha, Mapping) or isinstance(delta, Mapping):
        raise ArgumentTypeError("alpha and delta are one number for all classes (family= shares them out)")
    alpha_c, delta_c = family_levels(family, method, alpha, delta, len(names))
    out = {}
    for name in names:
        try:
            out[name] = calibrate_one(stats[name], epsilon=epsilons[name], alpha=alpha_c, delta=delta_c, **request)
        except CalibrationError as exc:
            share = f" (family='bonferroni': 1/{len(names)} of the asked level)" if family == "bonferroni" else ""
            raise CalibrationError(f"class {name!r}{share}: {exc}") from None
    return out


def family_guarantee(family, method, alpha, delta, names):
    """The promise a set of class calibrations makes together, in one sentence."""
    listed = ", ".join(names)
    if family == "none":
        return f"Each class ({listed}) keeps its own promise (family 'none'): see each calibration's guarantee."
    c = len(names)
    if method == "cls":
        return (f"For a new case exchangeable with the calibration cases, P(every class meets its tolerance) "
                f">= {1 - alpha:g} (Bonferroni over {c} classes: {listed}).")
    if method == "cls-pac":
        return (f"With probability >= {1 - delta:g} over the calibration draw, a new exchangeable case has "
                f"P(some class exceeds its tolerance) <= {alpha:g} (Bonferroni over {c} classes: {listed}).")
    return (f"With probability >= {1 - delta:g} over the calibration draw, E[FNR] <= its tolerance for every "
            f"class at once (Bonferroni over {c} classes: {listed}).")
