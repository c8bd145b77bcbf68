"""No model file can crash the server: the malformed-GGUF corpus through the real store (header checks +
child-process trial load), each refused with one line and the store unchanged, or accepted and runnable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from haven.errors import InvalidModelFileError
from haven.models.store import ModelStore, snapshot
from haven.models.trial_load import trial_load
from tests.support import bad_gguf
from tests.support.engine_run import generate, tiny_engine

REFUSED = [c for c in bad_gguf.CASES if c.expect == "refused"]
ACCEPTED = [c for c in bad_gguf.CASES if c.expect == "accepted"]


@pytest.fixture
def store(tmp_path: Path, make_test_model: Callable[..., Path]) -> ModelStore:
    store = ModelStore(tmp_path / "models", trial_load_timeout=60)
    store.import_file(make_test_model(), "good:latest")
    return store


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_each_malformed_file_is_refused_with_one_line(
    case: bad_gguf.Case, store: ModelStore, tmp_path: Path, make_test_model: Callable[..., Path]
) -> None:
    bad = bad_gguf.build(case, make_test_model(), tmp_path / f"{case.name}.gguf")
    before = snapshot(store.root)
    with pytest.raises(InvalidModelFileError) as caught:
        store.import_file(bad, "bad:latest")
    message = caught.value.message
    assert "\n" not in message and len(message) < 500 and bad.name in message
    assert snapshot(store.root) == before


@pytest.mark.parametrize("name", ["block_count_zero", "expert_used_without_experts", "rope_scaling_unknown"])
def test_the_trial_load_survives_files_that_abort_llama_cpp(
    name: str, tmp_path: Path, make_test_model: Callable[..., Path]
) -> None:
    # The header checks refuse these first; the child process is the net for what they would miss.
    case = next(c for c in bad_gguf.CASES if c.name == name)
    failure = trial_load(bad_gguf.build(case, make_test_model(), tmp_path / "abort.gguf"), timeout=60)
    assert failure is not None and failure.startswith("llama.cpp crashed loading it (SIGABRT: GGML_ASSERT(")


def test_a_missing_tensor_is_named_by_the_trial_load(tmp_path: Path, make_test_model: Callable[..., Path]) -> None:
    case = next(c for c in bad_gguf.CASES if c.name == "tensor_missing")
    failure = trial_load(bad_gguf.build(case, make_test_model(), tmp_path / "missing.gguf"), timeout=60)
    assert failure == "llama.cpp could not load it (check_tensor_dims: tensor 'blk.0.attn_q.weight' not found)"


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.name for c in ACCEPTED])
async def test_odd_but_runnable_files_are_accepted_and_serve(
    case: bad_gguf.Case, store: ModelStore, tmp_path: Path, make_test_model: Callable[..., Path]
) -> None:
    odd = bad_gguf.build(case, make_test_model(), tmp_path / f"{case.name}.gguf")
    manifest = store.import_file(odd, "odd:latest")
    engine = tiny_engine(store.blob_path(manifest))
    try:
        result = await generate(engine, engine.tokenize("Hello", add_special=False), max_tokens=4)
        assert result.finished.reason in ("stop", "length")
    finally:
        await engine.close()


def test_the_round_trip_of_the_generator_is_exact(tmp_path: Path, make_test_model: Callable[..., Path]) -> None:
    good = make_test_model()
    copy = bad_gguf.write_model(bad_gguf.read_model(good), tmp_path / "copy.gguf")
    assert trial_load(copy, timeout=60) is None
