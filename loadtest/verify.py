"""Served equals offline: every held-out sample over HTTP against the eager model, for every model.

    python -m loadtest.verify [--artifacts artifacts] [--limit N] [--out loadtest/results/verify.json]

For each model of the catalog that the server has, the raw held-out samples (PNG bytes, texts)
go to the running server over HTTP, and the exported state_dict runs eagerly on the same
examples prepared by the training pipeline's own dataset code (`offline_heldout` of its training
module). Both must give the same label on every sample and the same probability for it within
1e-4. A generator's held-out requests ({"digit", "count", "seed"}) must be answered with the
eager generator's images, pixel for pixel within one grey level; its served accuracy is the share
of them its judge (the mnist classifier) labels as the requested digit. One line per model, and
every figure in --out; exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deploy.client import DEFAULT_KEY_FILE, TorchServeClient
from training.catalog import CATALOG, REPO, ModelEntry
from training.heldout import Sample, evenly_spread

PROBABILITY_TOLERANCE = 1e-4
PIXEL_TOLERANCE = 1  # grey levels: TorchScript and another batch shape may round a pixel the other way


def top_answer(answer) -> tuple[str, float]:
    """(label, its probability) from any model's JSON answer: {"label", "score"}, {"label",
    "probabilities"}, or a top-k list of {"label", "score"}, most likely first."""
    best = answer[0] if isinstance(answer, list) else answer
    label = str(best["label"])
    return label, float(best["score"] if "score" in best else best["probabilities"][label])


def send_all(client: TorchServeClient, model: str, samples: list[Sample], concurrency: int = 8) -> list:
    """Each sample's HTTP status and JSON answer, in order."""
    def send(sample: Sample):
        response = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type})
        return response.status_code, response.json()

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(send, samples))


def count_correct(samples: list[Sample], answers: list) -> int:
    """How many of send_all's answers are 200s whose top label is the sample's true one."""
    return sum(status == 200 and top_answer(answer)[0] == sample.expected
               for sample, (status, answer) in zip(samples, answers))


@dataclass
class Verdict:
    model: str
    unit: str
    count: int
    labels_agree: int
    max_probability_delta: float
    served_accuracy: float
    failures: list[str]
    compared: str = "labels agree"              # what agrees between served and offline
    delta: str = "|p_served - p_offline|"       # and what max_probability_delta measures

    @property
    def passed(self) -> bool:
        return not self.failures and self.labels_agree == self.count

    def line(self) -> str:
        return (f"{self.model:10s} {self.count:5d} held-out {self.unit}: "
                f"{self.compared} {self.labels_agree}/{self.count}, "
                f"max {self.delta} {self.max_probability_delta:.1e}, served accuracy "
                f"{self.served_accuracy:.1%}  {'OK' if self.passed else 'FAIL: ' + '; '.join(self.failures[:3])}")


def decode_images(answer: dict) -> np.ndarray:
    """A generator's JSON answer -> its images as uint8 (N, 28, 28)."""
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(image)))) for image in answer["images"]])


def verify_generator(client: TorchServeClient, entry: ModelEntry, artifact_dir: Path,
                     limit: int | None = None) -> Verdict:
    training = entry.training()
    generator = training.offline_generator(artifact_dir)
    judge = training.Judge(Path(artifact_dir).parent / entry.judge)
    samples = entry.heldout_requests(limit)
    answers = send_all(client, entry.name, samples)
    agree, worst, correct, failures = 0, 0, 0.0, []
    for index, (sample, (status, answer)) in enumerate(zip(samples, answers)):
        if status != 200:
            failures.append(f"request {index}: HTTP {status} {answer}")
            continue
        request = json.loads(sample.body)
        served = decode_images(answer)
        offline = training.generate(generator, request["digit"], request["count"], request["seed"])
        delta = int(np.abs(served.astype(int) - offline.astype(int)).max())
        worst = max(worst, delta)
        agree += delta <= PIXEL_TOLERANCE
        if delta > PIXEL_TOLERANCE:
            failures.append(f"request {index}: served images differ from offline by {delta} grey levels")
        labels, _ = judge.labels_and_features(served)
        correct += float((labels == int(sample.expected)).mean())
    return Verdict(entry.name, entry.unit, len(samples), agree, worst, correct / max(len(samples), 1), failures,
                   compared="images equal", delta="|pixel_served - pixel_offline|")


def verify_model(client: TorchServeClient, entry: ModelEntry, artifact_dir: Path, limit: int | None = None) -> Verdict:
    if entry.is_generator:
        return verify_generator(client, entry, artifact_dir, limit)
    offline = entry.training().offline_heldout(artifact_dir)
    chosen = evenly_spread(np.arange(len(offline.samples)), limit)
    samples = [offline.samples[i] for i in chosen]
    answers = send_all(client, entry.name, samples)
    agree, worst, correct, failures = 0, 0.0, 0, []
    for index, sample, (status, answer) in zip(chosen, samples, answers):
        if status != 200:
            failures.append(f"sample {index}: HTTP {status} {answer}")
            continue
        label, score = top_answer(answer)
        probabilities = offline.probabilities[index]
        offline_label = offline.class_names[int(probabilities.argmax())]
        agree += label == offline_label
        correct += label == sample.expected
        if label != offline_label:
            failures.append(f"sample {index}: served {label}, offline {offline_label}")
            continue
        delta = abs(score - float(probabilities[offline.class_names.index(label)]))
        worst = max(worst, delta)
        if delta > PROBABILITY_TOLERANCE:
            failures.append(f"sample {index}: p({label}) served {score:.6f}, offline differs by {delta:.1e}")
    return Verdict(entry.name, entry.unit, len(samples), agree, worst, correct / max(len(samples), 1), failures)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--limit", type=int, default=None, help="samples per model, spread over the test set "
                                                                "(default: all of them)")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "verify.json")
    args = parser.parse_args(argv)
    client = TorchServeClient(args.url, args.management, args.key_file, timeout=60)
    served = set(client.registered_models())
    verdicts = []
    for name, entry in CATALOG.items():
        if name not in served:
            print(f"{name:10s} not served: FAIL")
            return 1
        verdicts.append(verify_model(client, entry, args.artifacts / name, args.limit))
        print(verdicts[-1].line(), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tolerance": PROBABILITY_TOLERANCE,
        "models": [{**asdict(verdict), "failures": verdict.failures[:20], "passed": verdict.passed}
                   for verdict in verdicts]}, indent=2) + "\n")
    return 0 if all(verdict.passed for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
