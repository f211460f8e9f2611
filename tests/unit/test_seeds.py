import json

from training import report, seeds
from training.catalog import CATALOG


def fake_run(folder, seed: int, validation: float) -> None:
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"train_config": {"seed": seed},
                                                      "validation": {"mean_domain_accuracy": validation}}))
    (folder / "weights.pt").write_text(f"seed {seed}")


def test_the_seed_best_on_validation_is_shipped_and_says_so(tmp_path):
    model = next(name for name, entry in CATALOG.items() if entry.ship_best_of > 1)
    scores = [0.81, 0.84, 0.79, 0.83][: CATALOG[model].ship_best_of]
    for seed, score in enumerate(scores):  # finished seeds are not trained again
        fake_run(seeds.seed_folder(tmp_path, model, seed), seed, score)
    (tmp_path / model).mkdir()
    (tmp_path / model / "stale.pt").write_text("an older run")

    shipped = seeds.main([model, "--artifacts", str(tmp_path)])

    best = scores.index(max(scores))
    assert (shipped / "weights.pt").read_text() == f"seed {best}" and not (shipped / "stale.pt").exists()
    record = json.loads((shipped / "metadata.json").read_text())
    assert record["shipped_seed"]["seed"] == best
    assert record["shipped_seed"]["validation_by_seed"] == {str(s): v for s, v in enumerate(scores)}
    # the spread counts every seed once, the shipped one first
    assert [seed for seed, _ in report.seed_records(tmp_path, model)] == [best] + [
        s for s in range(len(scores)) if s != best]
