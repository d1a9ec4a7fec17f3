"""Hypothesis strategies for score and label volumes as real pipelines produce them."""

import numpy as np
from hypothesis import strategies as st

SCORE_DTYPES = ["<f2", ">f2", "<f4", ">f4", "<f8", ">f8"]
LABEL_DTYPES = ["|b1", "|u1", "|i1", "<i2", ">u2", "<i4", "<i8", ">i8", "<f2", ">f2", "<f4"]


@st.composite
def shapes(draw):
    ndim = draw(st.integers(1, 3))
    return tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))


@st.composite
def volumes(draw, with_lesion=True):
    """``(scores, labels, label)``: any dtype, byte order and memory layout.

    Score styles: probabilities, logits (wide range, negatives), quantised
    values (many ties), and exact duplicates of a few values.
    """
    shape = draw(shapes())
    size = int(np.prod(shape))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    style = draw(st.sampled_from(["probability", "logit", "quantised", "few"]))
    if style == "probability":
        values = rng.random(size)
    elif style == "logit":
        values = rng.normal(0, 8, size) * 10.0 ** rng.integers(-6, 4, size)
    elif style == "quantised":
        values = np.round(rng.random(size) * 20) / 20
    else:
        values = rng.choice([-0.0, 0.0, 0.25, 0.5, 1.0, 1e-40, -3.5, np.inf], size)
    score_dtype = np.dtype(draw(st.sampled_from(SCORE_DTYPES)))
    label_dtype = np.dtype(draw(st.sampled_from(LABEL_DTYPES)))
    use_label = label_dtype.kind in "iu" and draw(st.booleans())
    if use_label:
        classes = rng.integers(0, 4, size)
        label = int(draw(st.integers(1, 3)))
    else:
        classes = (rng.random(size) < draw(st.sampled_from([0.05, 0.3, 0.9, 1.0]))).astype(np.int64)
        label = None
    if with_lesion:
        positive = label if use_label else 1
        classes[rng.integers(0, size)] = positive
    scores = values.astype(score_dtype).reshape(shape)
    labels = classes.astype(label_dtype).reshape(shape)
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        scores, labels = np.asfortranarray(scores), np.asfortranarray(labels)
    elif layout == "strided":
        scores = np.repeat(scores, 2, axis=-1)[..., ::2]
    if draw(st.booleans()):
        labels = np.asfortranarray(labels) if layout != "F" else np.ascontiguousarray(labels)
    return scores, labels, label


epsilons = st.one_of(
    st.floats(0, 1, exclude_max=True, allow_nan=False),
    st.sampled_from([0.0, 0.1, 0.2, 0.29, 0.3, 0.5, 0.7, 0.9, 0.99]),
)
