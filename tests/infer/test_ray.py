"""--ray: the hf engine over a Ray Data dataset, on CPU actors (one replica here)."""

from __future__ import annotations

import pytest
from ft_common.errors import InputError
from ft_infer import GenerationOptions, Stats, infer, make_engine
from infer_support import viggo_records


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_matches_local_and_keeps_order(ray_local, varied_model):
    from ft_infer.ray_runner import infer_ray

    records = viggo_records(7)
    options = GenerationOptions(max_new_tokens=6)
    engine_args = {"name": "hf", "model": str(varied_model), "options": options, "dtype": "float32",
                   "batch_size": 2, "quiet": True}
    stats = Stats()
    # Batches of 3 records, chunks of 5: several map_batches calls and two datasets.
    got = list(infer_ray(records, engine_args, replicas=1, batch_records=3, chunk=5, stats=stats, quiet=True))
    local = list(infer(records, make_engine("hf", str(varied_model), options, dtype="float32", quiet=True)))
    assert [r["id"] for r in got] == [r["id"] for r in records]
    assert got == local
    assert stats.records == 7 and stats.completion_tokens == sum(r["completion_tokens"] for r in local)


def test_ray_reports_a_bad_record_before_starting(varied_model):
    from ft_infer.ray_runner import infer_ray

    with pytest.raises(InputError, match="record x/1: no 'prompt'"):
        list(infer_ray([{"id": "x/1"}], {"name": "hf", "model": str(varied_model)}, quiet=True))
