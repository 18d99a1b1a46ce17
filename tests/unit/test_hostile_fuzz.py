"""Issue #9, fuzzing: hypothesis mutates real corpus files (byte flips, splices, duplicated and
dropped chunks/segments/boxes, lying length fields and dimensions; see tests.fuzz.mutators) and
random bytes, and the intake must return a clean re-encode or raise its own IntakeError with a
4xx code - never anything else (tests.fuzz.oracle).

A fixed number of examples, derandomised (the same inputs on every run), runs in a guarded
worker process: each example within 20 s and 1.5 GiB of RSS growth, so a hang fails this test
instead of hanging the suite. ``make fuzz`` runs the long, randomly seeded campaign.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.guard import Bounds, MiB
from tests.fuzz.hypo import FuzzConfig, FuzzReport, run_fuzz
from tests.fuzz.mutators import MUTATIONS, hostile_inputs, seed_files, synthetic_seeds
from tests.fuzz.structure import file_format, units

EXAMPLES = 1500  # ~5 s at ~400 examples/s on this 2-core machine
BOUNDS = Bounds(seconds=20.0, rss_growth=1536 * MiB)


def test_intake_returns_a_clean_image_or_its_own_4xx_for_fuzzed_inputs() -> None:
    report: FuzzReport = run_fuzz(FuzzConfig(examples=EXAMPLES, derandomize=True), BOUNDS)
    assert not report.failure, f"{report.failure_kind}: {report.failure}"
    assert report.examples == EXAMPLES, report.summary()
    # Both sides of the property were exercised, and inputs got past the sniffer and the headers.
    kinds = Counter(label.split()[0] for label in report.outcomes.elements())
    assert kinds["accepted"] >= EXAMPLES // 10, report.summary()
    codes = {label.split()[1] for label in report.outcomes if label.startswith("refused")}
    assert {"corrupt_image", "unsupported_type", "dimensions_too_large"} <= codes, report.summary()
    assert report.peak_growth < BOUNDS.rss_growth


def test_seeds_cover_every_accepted_format() -> None:
    formats = {file_format(data) for _, data in seed_files(64 * 1024)}
    assert formats >= {"jpeg", "png", "gif", "webp", "bmp", "tiff", "heif", "avif"}
    assert all(units(data) for _, data in synthetic_seeds())


SEEDS = synthetic_seeds()


@st.composite
def one_mutation(draw: st.DrawFn) -> tuple[str, bytes, str, bytes]:
    name, seed = draw(st.sampled_from(SEEDS))
    mutation = draw(st.sampled_from(MUTATIONS))
    return name, seed, mutation.__name__, mutation(draw, seed, SEEDS)


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(one_mutation())
def test_mutations_keep_the_format_when_they_keep_the_magic_number(
    mutated: tuple[str, bytes, str, bytes],
) -> None:
    """So inputs reach a decoder, not just the sniffer: a mutation that leaves the first 16
    bytes alone leaves a file of the same format."""
    name, seed, mutation, out = mutated
    if out[:16] == seed[:16] and len(out) >= 16:
        assert file_format(out) == file_format(seed), (name, mutation)


def test_the_strategy_produces_a_mix_of_inputs() -> None:
    seeds = seed_files(64 * 1024)
    formats: Counter[str | None] = Counter()

    @settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_inputs(seeds))
    def collect(data: bytes) -> None:
        formats[file_format(data)] += 1

    collect()
    assert formats[None] < 100  # most inputs carry a format's magic number
    assert len([f for f in formats if f]) >= 7, formats
