"""Perturbation label parsing: examples and property tests (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdae_sc.data import encode_conditions, format_condition, label_vector, parse_condition

CONTROL = "ctrl"
DELIMITERS = ["+", "|", "_", "; "]

# token names from a small alphabet; never the control, never containing a delimiter
tokens = st.text(alphabet="ABCKLFab019-.", min_size=1, max_size=5).filter(
    lambda t: t.casefold() != CONTROL
)
doses = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False).filter(
    lambda d: d != 0.0
)
labels = st.dictionaries(tokens, doses, max_size=4)
labels_dose_one = st.lists(tokens, unique=True, max_size=4).map(
    lambda names: dict.fromkeys(names, 1.0)
)
FAST = settings(max_examples=60, deadline=None, database=None)  # no .hypothesis/ dir


@FAST
@given(label=st.one_of(labels, labels_dose_one), delimiter=st.sampled_from(DELIMITERS))
def test_parse_format_parse_is_identity(label, delimiter):
    condition, dosage = format_condition(label, control_group=CONTROL, delimiter=delimiter)
    parsed = parse_condition(condition, control_group=CONTROL, delimiter=delimiter, dosage=dosage)
    assert parsed == label
    again = format_condition(parsed, control_group=CONTROL, delimiter=delimiter)
    assert again == (condition, dosage)


@FAST
@given(label=labels, data=st.data())
def test_token_order_does_not_change_the_label_vector(label, data):
    names = list(label)
    order = data.draw(st.permutations(names))
    vocabulary = sorted(names)
    condition = "+".join(order) if order else CONTROL
    dosage = "+".join(repr(label[n]) for n in order) if order else None
    parsed = parse_condition(condition, control_group=CONTROL, dosage=dosage)
    expected = np.array([label[n] for n in vocabulary])
    np.testing.assert_array_equal(label_vector(parsed, vocabulary), expected)


@FAST
@given(names=st.lists(tokens, unique=True, min_size=2, max_size=4), data=st.data())
def test_permuted_combinations_share_a_condition(names, data):
    if len({n.casefold() for n in names}) < len(names):
        return  # case variants are refused (tested below)
    shuffled = data.draw(st.permutations(names))
    cells = [CONTROL, "+".join(names), "+".join(shuffled), f"{CONTROL}+{shuffled[0]}"]
    enc = encode_conditions(cells, control_group=CONTROL)
    assert enc.codes[1] == enc.codes[2]
    assert enc.labels[enc.codes[0]].sum() == 0
    assert enc.labels[enc.codes[1]].sum() == len(names)


def test_doses_round_trip_exactly():
    label = {"A": 0.1, "B": 1 / 3, "C": 1e16, "D": 2.5e-7}
    condition, dosage = format_condition(label, control_group=CONTROL)
    assert "e" not in dosage  # no exponent: "1e+16" would contain the delimiter
    assert parse_condition(condition, control_group=CONTROL, dosage=dosage) == label


@pytest.mark.parametrize(
    ("condition", "dosage", "error", "match"),
    [
        ("A++B", None, ValueError, r"empty token.*'A\+B'"),
        ("A+A", None, ValueError, "'A' appears twice"),
        (" A", None, ValueError, "surrounding whitespace"),
        ("", None, ValueError, "is empty"),
        ("A+B", "1+x", ValueError, "does not parse as numbers"),
        ("A+B", "1+2+3", ValueError, "has 3 values but condition 'A\\+B' has 2"),
        ("A", "nan", ValueError, "not finite"),
        ("A", [1.0], TypeError, "has type list"),
        (3, None, TypeError, "must be strings"),
    ],
)
def test_parse_errors(condition, dosage, error, match):
    with pytest.raises(error, match=match):
        parse_condition(condition, control_group=CONTROL, dosage=dosage)


def test_case_variants_are_refused():
    with pytest.raises(ValueError, match=r"differ only by letter case: \[\['KLF1', 'Klf1'\]\]"):
        encode_conditions(["ctrl", "KLF1", "Klf1+A"], control_group=CONTROL)
    with pytest.raises(ValueError, match=r"'Ctrl'.*only by letter case"):
        encode_conditions(["ctrl", "Ctrl", "A"], control_group=CONTROL)
    # with a known vocabulary a case variant is an unknown name, with the close match listed
    with pytest.raises(KeyError, match=r"Closest known names: \['KLF1'\]"):
        encode_conditions(["klf1"], control_group=CONTROL, vocabulary=["KLF1", "A"])
